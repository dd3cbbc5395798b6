//! All 22 TPC-H queries (`blueshift_tests::tpch_queries`, validation parameters, SF 0.01)
//! must return DuckDB's answers on the same Parquet files: on the shared 2-node x 2-slice
//! cluster, and on clusters of other shapes (one slice in all; several nodes of one slice;
//! one node of several slices; several of both), so that answers cannot depend on how rows
//! are spread over slices and nodes.
//!
//! Every query runs even after a failure; a test fails once, at the end, listing every query
//! that errored or differed (with its diff). Rows that tie on a query's ORDER BY columns may
//! come back in any order ([`compare_rows_ordered_by`]).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use blueshift_tests::tpch_queries::{TPCH_QUERIES, order_by_columns};
use blueshift_tests::{
    Cluster, DuckDb, Rows, TpchData, compare_rows_ordered_by, load_tpch, pg, tpch_data,
};

use crate::common::tpch_cluster;

/// `(compute nodes, slices per node)` of the clusters in
/// [`answers_are_the_same_on_every_cluster_shape`].
const SHAPES: [(usize, usize); 6] = [(1, 1), (2, 1), (3, 1), (1, 4), (2, 4), (3, 4)];

/// Rows of `lineitem` at SF 0.01: guards against a partial load.
const LINEITEM_ROWS: u64 = 60_175;

/// DuckDB's answer to each of [`TPCH_QUERIES`], computed once per test binary.
static ORACLE: OnceLock<Result<Vec<Result<Rows, String>>, String>> = OnceLock::new();

/// DuckDB's answers, in the order of [`TPCH_QUERIES`]; an answer is the rows or DuckDB's
/// error. Panics if the oracle itself cannot run.
pub fn duckdb_answers(data: &TpchData) -> &'static [Result<Rows, String>] {
    let answers = ORACLE.get_or_init(|| {
        let queries: Vec<String> = TPCH_QUERIES
            .iter()
            .map(|(_, sql)| sql.to_string())
            .collect();
        DuckDb::new()
            .and_then(|duckdb| duckdb.with_tpch_views(data).query_all(&queries))
            .map_err(|e| format!("{e:#}"))
    });
    match answers {
        Ok(answers) => answers,
        Err(e) => panic!("the DuckDB oracle failed: {e}"),
    }
}

/// Runs all 22 queries on `cluster` and compares each with `expected`. Returns one message
/// per failing query, prefixed with `label` and the query's name. If a failure closed the
/// connection, the next query gets a new one.
pub async fn run_all(
    cluster: &Cluster,
    label: &str,
    expected: &[Result<Rows, String>],
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut client = match cluster.client().await {
        Ok(client) => client,
        Err(e) => return vec![format!("{label}: cannot connect: {e:#}")],
    };
    let mut timings = Vec::new();
    let started = Instant::now();
    for ((name, sql), expected) in TPCH_QUERIES.iter().zip(expected) {
        let query_started = Instant::now();
        let actual = pg::query(&client, sql).await;
        timings.push(format!("{name} {}ms", query_started.elapsed().as_millis()));
        match (actual, expected) {
            (_, Err(e)) => failures.push(format!("{label} {name}: DuckDB rejected it: {e}")),
            (Err(e), _) => {
                // The error ends with the statement's text; the name says which it was.
                let e = format!("{e:#}");
                let e = e.strip_suffix(&format!("\n  in: {sql}")).unwrap_or(&e);
                failures.push(format!("{label} {name}: Blueshift failed: {e}"));
                if client.is_closed() {
                    match cluster.client().await {
                        Ok(new) => client = new,
                        Err(e) => {
                            failures.push(format!("{label}: cannot reconnect: {e:#}"));
                            return failures;
                        }
                    }
                }
            }
            (Ok(actual), Ok(expected)) => {
                if let Err(diff) =
                    compare_rows_ordered_by(&actual, expected, order_by_columns(name))
                {
                    failures.push(format!("{label} {name}: {diff}"));
                }
            }
        }
    }
    eprintln!(
        "{label}: 22 TPC-H queries in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        timings.join(", ")
    );
    let panics = cluster.panics_in_log();
    if !panics.is_empty() {
        failures.push(format!("{label}: a cluster process panicked: {panics:#?}"));
    }
    failures
}

/// Panics with every failure, if there are any.
pub fn report(what: &str, runs: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failures in {runs} query runs:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn all_22_queries_match_duckdb() {
    let tpch = tpch_cluster().await;
    let _logs = tpch.cluster.logs_on_panic();
    let expected = duckdb_answers(&tpch.data);

    let failures = run_all(&tpch.cluster, "2x2 (shared)", expected).await;
    report("TPC-H on the shared cluster", TPCH_QUERIES.len(), &failures);
}

/// Starts a `nodes` x `slices_per_node` cluster, loads TPC-H, runs all 22 queries; returns
/// the failures of the shape (the cluster's logs are printed if there are any).
async fn check_shape(
    nodes: usize,
    slices_per_node: usize,
    data: &TpchData,
    expected: &[Result<Rows, String>],
) -> Vec<String> {
    let label = format!("{nodes}x{slices_per_node}");
    let started = Instant::now();
    let cluster = match Cluster::start(nodes, slices_per_node).await {
        Ok(cluster) => cluster,
        Err(e) => return vec![format!("{label}: the cluster did not start: {e:#}")],
    };
    let mut failures = Vec::new();
    {
        let _logs = cluster.logs_on_panic();
        match load_and_check_shape(&cluster, data).await {
            Ok(()) => {
                let load_time = started.elapsed();
                failures.extend(run_all(&cluster, &label, expected).await);
                eprintln!(
                    "{label}: started and loaded in {:.1}s, total {:.1}s",
                    load_time.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => failures.push(format!("{label}: {e:#}")),
        }
        if !failures.is_empty() {
            eprintln!("logs of the {label} cluster:\n{}", cluster.logs());
        }
    }
    if let Err(e) = cluster.stop().await {
        failures.push(format!("{label}: stopping the cluster: {e:#}"));
    }
    failures
}

/// Loads TPC-H into `cluster` and checks that it has the slices it was started with and
/// every `lineitem` row.
async fn load_and_check_shape(cluster: &Cluster, data: &TpchData) -> anyhow::Result<()> {
    let client = cluster.client().await?;
    let slices = pg::query_i64(&client, "select count(*) from stv_slices").await?;
    anyhow::ensure!(
        usize::try_from(slices)? == cluster.slices(),
        "stv_slices has {slices} slices, expected {}",
        cluster.slices()
    );
    let loaded = tokio::time::timeout(Duration::from_secs(600), load_tpch(&client, data))
        .await
        .map_err(|_| anyhow::anyhow!("loading TPC-H took over 10 minutes"))??;
    let lineitem = loaded
        .iter()
        .find(|(t, _)| *t == "lineitem")
        .map(|(_, n)| *n);
    anyhow::ensure!(
        lineitem == Some(LINEITEM_ROWS),
        "COPY lineitem loaded {lineitem:?} rows, expected {LINEITEM_ROWS}"
    );
    Ok(())
}

#[tokio::test]
async fn answers_are_the_same_on_every_cluster_shape() {
    let data = tpch_data().unwrap();
    let expected = duckdb_answers(&data);

    let mut failures = Vec::new();
    for (nodes, slices_per_node) in SHAPES {
        failures.extend(check_shape(nodes, slices_per_node, &data, expected).await);
    }
    report(
        &format!("TPC-H on cluster shapes {SHAPES:?}"),
        SHAPES.len() * TPCH_QUERIES.len(),
        &failures,
    );
}
