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
/// per failing query, prefixed with `label` and the query's name, and one if a process of
/// the cluster panicked.
pub async fn run_all(
    cluster: &Cluster,
    label: &str,
    expected: &[Result<Rows, String>],
) -> Vec<String> {
    let mut failures = run_all_with(|| cluster.client(), label, expected).await;
    let panics = cluster.panics_in_log();
    if !panics.is_empty() {
        failures.push(format!("{label}: a cluster process panicked: {panics:#?}"));
    }
    failures
}

/// [`run_all`] on connections from `connect`. If a failure closed the connection, the next
/// query gets a new one.
pub async fn run_all_with<F, Fut>(
    connect: F,
    label: &str,
    expected: &[Result<Rows, String>],
) -> Vec<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<tokio_postgres::Client>>,
{
    let mut failures = Vec::new();
    let mut client = match connect().await {
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
                    match connect().await {
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
    failures
}

/// Clients that run the 22 TPC-H queries round and round, each answer checked against
/// DuckDB's, until [`QueryLoops::finish`]: the workload of tests that change the cluster
/// underneath its queries (killed, added and drained nodes).
pub struct QueryLoops {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
}

impl QueryLoops {
    /// One loop per client; client `c` starts at query `7 * c` so they do not run in step.
    pub fn start(
        clients: Vec<tokio_postgres::Client>,
        expected: &'static [Result<Rows, String>],
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(c, client)| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut runs = 0usize;
                    let mut failures = Vec::new();
                    let mut i = c * 7;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let n = i % TPCH_QUERIES.len();
                        let ((name, sql), want) = (&TPCH_QUERIES[n], &expected[n]);
                        i += 1;
                        runs += 1;
                        match (pg::query(&client, sql).await, want) {
                            (Ok(rows), Ok(want)) => {
                                if let Err(diff) =
                                    compare_rows_ordered_by(&rows, want, order_by_columns(name))
                                {
                                    failures
                                        .push(format!("client {c} {name}: wrong answer: {diff}"));
                                }
                            }
                            (Err(e), _) => failures.push(format!("client {c} {name}: {e:#}")),
                            (_, Err(_)) => {}
                        }
                    }
                    (runs, failures)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the loops (each finishes its current query); the number of queries run and
    /// every failure.
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut runs = 0;
        let mut failures = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok((r, f)) => {
                    runs += r;
                    failures.extend(f);
                }
                Err(e) => failures.push(format!("a query loop panicked: {e}")),
            }
        }
        (runs, failures)
    }
}

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
