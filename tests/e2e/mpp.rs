//! The MPP planner on a 2-node x 2-slice cluster of its own with TPC-H SF 0.01:
//!
//! - `EXPLAIN` of TPC-H Q3 labels the lineitem-orders join `DS_DIST_NONE` (both `DISTKEY`
//!   on the order key); with lineitem copied into a `DISTSTYLE EVEN` table the same join
//!   redistributes rows, and both answers equal DuckDB's.
//! - A join with a `DISTSTYLE ALL` table reads it locally (`DS_DIST_ALL_NONE`); a small
//!   EVEN table is broadcast (`DS_BCAST_INNER`); joins on non-key columns redistribute.
//! - An error raised inside a stage on a compute node reaches the client with its SQLSTATE,
//!   and the session keeps working.

use blueshift_tests::{Cluster, DuckDb, TpchData, assert_rows_eq, load_tpch, pg, tpch_data};
use tokio::sync::OnceCell;

struct MppCluster {
    cluster: Cluster,
    data: TpchData,
}

static MPP: OnceCell<Result<MppCluster, String>> = OnceCell::const_new();

async fn mpp_cluster() -> &'static MppCluster {
    let started = MPP
        .get_or_init(|| async {
            async {
                let data = tpch_data()?;
                let cluster = Cluster::start(2, 2).await?;
                let client = cluster.client().await?;
                if let Err(e) = load_tpch(&client, &data).await {
                    anyhow::bail!("{e:#}\n{}", cluster.logs());
                }
                pg::execute(
                    &client,
                    "create table lineitem_even diststyle even as select * from lineitem",
                )
                .await?;
                Ok(MppCluster { cluster, data })
            }
            .await
            .map_err(|e: anyhow::Error| format!("{e:#}"))
        })
        .await;
    match started {
        Ok(c) => c,
        Err(e) => panic!("the MPP test cluster failed: {e}"),
    }
}

/// TPC-H Q3 (shipping priority), validation parameters, over `lineitem_table`.
fn q3(lineitem_table: &str) -> String {
    format!(
        "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, \
                o_orderdate, o_shippriority \
         from customer, orders, {lineitem_table} \
         where c_mktsegment = 'BUILDING' and c_custkey = o_custkey \
           and l_orderkey = o_orderkey \
           and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' \
         group by l_orderkey, o_orderdate, o_shippriority \
         order by revenue desc, o_orderdate, l_orderkey \
         limit 10"
    )
}

async fn explain(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    pg::query(client, &format!("explain {sql}"))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.into_iter().next().flatten().unwrap_or_default())
        .collect()
}

/// The plan lines of the hash join whose keys mention both `a` and `b`.
fn join_lines<'a>(plan: &'a [String], a: &str, b: &str) -> Vec<&'a str> {
    plan.iter()
        .map(String::as_str)
        .filter(|l| l.contains("Join") && l.contains(a) && l.contains(b))
        .collect()
}

#[tokio::test]
async fn q3_join_on_the_distkey_is_collocated() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    let plan = explain(&client, &q3("lineitem")).await;
    let joins = join_lines(&plan, "l_orderkey", "o_orderkey");
    assert_eq!(
        joins.len(),
        1,
        "one lineitem-orders join in:\n{}",
        plan.join("\n")
    );
    assert!(
        joins[0].contains("DS_DIST_NONE"),
        "collocated join expected:\n{}",
        plan.join("\n")
    );

    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&mpp.data)
        .query(&q3("lineitem"))
        .unwrap();
    let actual = pg::query(&client, &q3("lineitem")).await.unwrap();
    assert_rows_eq("TPC-H Q3", &actual, &expected);
}

#[tokio::test]
async fn q3_on_an_even_lineitem_redistributes() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    let plan = explain(&client, &q3("lineitem_even")).await;
    let joins = join_lines(&plan, "l_orderkey", "o_orderkey");
    assert_eq!(
        joins.len(),
        1,
        "one lineitem-orders join in:\n{}",
        plan.join("\n")
    );
    assert!(
        [
            "DS_DIST_INNER",
            "DS_DIST_OUTER",
            "DS_DIST_BOTH",
            "DS_BCAST_INNER"
        ]
        .iter()
        .any(|l| joins[0].contains(l)),
        "an EVEN lineitem must move rows for the join:\n{}",
        plan.join("\n")
    );
    assert!(
        plan.iter().any(|l| l.contains("redistributes its rows")),
        "a redistribution stage:\n{}",
        plan.join("\n")
    );

    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&mpp.data)
        .query(&q3("lineitem"))
        .unwrap();
    let actual = pg::query(&client, &q3("lineitem_even")).await.unwrap();
    assert_rows_eq("TPC-H Q3 over an EVEN lineitem", &actual, &expected);
}

#[tokio::test]
async fn all_tables_are_joined_locally_and_small_tables_broadcast() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();
    let duck = DuckDb::new().unwrap().with_tpch_views(&mpp.data);

    let all = "select n_name, count(*) as customers from customer, nation \
               where c_nationkey = n_nationkey group by n_name order by n_name";
    let plan = explain(&client, all).await;
    let joins = join_lines(&plan, "c_nationkey", "n_nationkey");
    assert!(
        joins.len() == 1 && joins[0].contains("DS_DIST_ALL_NONE"),
        "nation is DISTSTYLE ALL:\n{}",
        plan.join("\n")
    );
    assert_rows_eq(
        "join with an ALL table",
        &pg::query(&client, all).await.unwrap(),
        &duck.query(all).unwrap(),
    );

    let bcast = "select s_name, count(*) as lines from lineitem, supplier \
                 where l_suppkey = s_suppkey and s_acctbal > 9000 \
                 group by s_name order by lines desc, s_name limit 20";
    let plan = explain(&client, bcast).await;
    let joins = join_lines(&plan, "l_suppkey", "s_suppkey");
    assert!(
        joins.len() == 1 && joins[0].contains("DS_BCAST_INNER"),
        "a small EVEN table is broadcast:\n{}",
        plan.join("\n")
    );
    assert_rows_eq(
        "broadcast join",
        &pg::query(&client, bcast).await.unwrap(),
        &duck.query(bcast).unwrap(),
    );

    // A full join is never broadcast (each side's unmatched rows must be emitted once):
    // lineitem_even is redistributed on the order key to meet orders where its DISTKEY put
    // it, and orders does not move.
    let inner = "select count(*), count(o_orderkey), count(l_orderkey) from lineitem_even \
                 full join orders on l_orderkey = o_orderkey and o_orderstatus = 'F'";
    let plan = explain(&client, inner).await;
    let joins = join_lines(&plan, "l_orderkey", "o_orderkey");
    assert!(
        joins.len() == 1
            && (joins[0].contains("DS_DIST_INNER") || joins[0].contains("DS_DIST_OUTER")),
        "one side moves, orders stays:\n{}",
        plan.join("\n")
    );
    assert_rows_eq(
        "full join redistributing one side",
        &pg::query(&client, inner).await.unwrap(),
        &duck
            .query(&inner.replace("lineitem_even", "lineitem"))
            .unwrap(),
    );

    // Neither side is distributed on the join columns and neither is small.
    let both = "select count(*), sum(l.l_quantity) from lineitem_even l, lineitem m \
                where l.l_partkey = m.l_partkey and l.l_suppkey = m.l_suppkey \
                  and l.l_linenumber = 1";
    let plan = explain(&client, both).await;
    assert!(
        plan.iter().any(|l| l.contains("DS_DIST_BOTH")
            || l.contains("DS_DIST_INNER")
            || l.contains("DS_DIST_OUTER")
            || l.contains("DS_BCAST_INNER")),
        "a join on non-key columns moves rows:\n{}",
        plan.join("\n")
    );
    let duck_both = both.replace("lineitem_even", "lineitem");
    assert_rows_eq(
        "self-join on non-key columns",
        &pg::query(&client, both).await.unwrap(),
        &duck.query(&duck_both).unwrap(),
    );
}

#[tokio::test]
async fn an_error_in_a_stage_keeps_its_sqlstate() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    let err = pg::expect_db_error(
        &client,
        "select o_orderkey, sum(l_quantity / (l_linenumber - l_linenumber)) \
         from orders, lineitem_even where o_orderkey = l_orderkey group by o_orderkey",
    )
    .await
    .unwrap();
    pg::assert_sqlstate(&err, &["22012"], "division by zero inside a stage");

    let n = pg::query_i64(&client, "select count(*) from lineitem_even")
        .await
        .unwrap();
    assert_eq!(n, 60_175, "the session still works");
    let panics = mpp.cluster.panics_in_log();
    assert!(panics.is_empty(), "a process panicked: {panics:#?}");
}

/// A query that runs for about a minute at SF 0.01: a nested-loop join of lineitem,
/// lineitem and nation (9e10 combinations).
const LONG_QUERY: &str = "select count(*) from lineitem a, lineitem_even b, nation c \
                          where a.l_partkey + b.l_suppkey + c.n_nationkey < 0";

#[tokio::test]
async fn a_cancel_request_stops_a_long_query() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();
    let token = client.cancel_token();

    let running = tokio::spawn(async move {
        let result = client.simple_query(LONG_QUERY).await;
        (client, result)
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !running.is_finished(),
        "the long query finished before the cancel"
    );
    let cancelled_at = std::time::Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (client, result) = tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .expect("the cancelled query returns")
        .unwrap();
    let waited = cancelled_at.elapsed();
    let err = result.expect_err("a cancelled query fails");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "57014", "{db:?}");
    assert_eq!(db.message(), "canceling statement due to user request");
    // A liveness bound, not a speed goal: the query must not run on to its end.
    assert!(
        waited < std::time::Duration::from_secs(5),
        "cancel took {waited:?}"
    );
    eprintln!("cancel answered after {waited:?}");

    let n = pg::query_i64(&client, "select count(*) from orders")
        .await
        .unwrap();
    assert_eq!(n, 15_000, "the same session works after the cancel");
}

#[tokio::test]
async fn statement_timeout_stops_a_long_query() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    pg::execute(&client, "set statement_timeout = 300")
        .await
        .unwrap();
    let err = pg::expect_db_error(&client, LONG_QUERY).await.unwrap();
    pg::assert_sqlstate(&err, &["57014"], "statement_timeout");
    assert_eq!(
        err.message(),
        "canceling statement due to statement timeout"
    );
    // A CREATE TABLE AS stopped the same way leaves no table behind.
    let err = pg::expect_db_error(
        &client,
        &format!("create table ctas_stopped as {LONG_QUERY}"),
    )
    .await
    .unwrap();
    pg::assert_sqlstate(&err, &["57014"], "statement_timeout of a CTAS");
    let gone = pg::expect_db_error(&client, "select * from ctas_stopped")
        .await
        .unwrap();
    pg::assert_sqlstate(&gone, &["42P01"], "the stopped CTAS's table");

    let bad = pg::expect_db_error(&client, "set statement_timeout = 'soon'")
        .await
        .unwrap();
    pg::assert_sqlstate(&bad, &["22023"], "a bad statement_timeout");

    pg::execute(&client, "set statement_timeout = 0")
        .await
        .unwrap();
    let n = pg::query_i64(&client, "select count(*) from customer")
        .await
        .unwrap();
    assert_eq!(n, 1_500, "queries run again without the timeout");
}

#[tokio::test]
async fn a_join_over_the_memory_limit_fails_with_53200() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    let bad = pg::expect_db_error(&client, "set query_memory_limit = 'plenty'")
        .await
        .unwrap();
    pg::assert_sqlstate(&bad, &["22023"], "a bad query_memory_limit");

    pg::execute(&client, "set query_memory_limit = '256kB'")
        .await
        .unwrap();
    // Every lineitem row with its comment as the build side: several MB per node.
    let join = "select count(*) from lineitem a, lineitem_even b \
                where a.l_comment = b.l_comment and a.l_orderkey = b.l_orderkey";
    let err = pg::expect_db_error(&client, join).await.unwrap();
    pg::assert_sqlstate(&err, &["53200"], "a build side over the memory limit");

    // NOT IN runs on the leader (it needs the whole subquery in one place): the limit holds
    // there too.
    let not_in = "select count(*) from lineitem where l_comment not in \
                  (select l_comment from lineitem_even where l_comment is not null)";
    let err = pg::expect_db_error(&client, not_in).await.unwrap();
    pg::assert_sqlstate(
        &err,
        &["53200"],
        "a NOT IN on the leader over the memory limit",
    );

    pg::execute(&client, "reset query_memory_limit")
        .await
        .unwrap();
    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&mpp.data)
        .query(&join.replace("lineitem_even", "lineitem"))
        .unwrap();
    let actual = pg::query(&client, join).await.unwrap();
    assert_rows_eq("the same join without the limit", &actual, &expected);
    let panics = mpp.cluster.panics_in_log();
    assert!(panics.is_empty(), "a process panicked: {panics:#?}");
}

#[tokio::test]
async fn explain_analyze_reports_rows_bytes_and_time_per_stage() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();

    let plan = explain(&client, &format!("analyze {}", q3("lineitem_even"))).await;
    let text = plan.join("\n");
    assert!(
        plan[0].starts_with("Leader (runs on the leader node): 10 rows in "),
        "{text}"
    );
    let sent: Vec<&String> = plan.iter().filter(|l| l.contains("sent: rows=")).collect();
    assert!(sent.len() >= 2, "a summary line per stage:\n{text}");
    assert!(
        sent.iter()
            .all(|l| l.contains("max slice") && l.contains("producer time")),
        "{text}"
    );
    assert!(
        text.contains("output_rows="),
        "operator metrics from the nodes:\n{text}"
    );
    assert!(
        join_lines(&plan, "l_orderkey", "o_orderkey")
            .iter()
            .any(|l| l.contains("DS_")),
        "labels are kept:\n{text}"
    );
    let err = pg::expect_db_error(
        &client,
        "explain analyze insert into lineitem_even select * from lineitem_even",
    )
    .await
    .unwrap();
    pg::assert_sqlstate(&err, &["0A000"], "EXPLAIN ANALYZE of an INSERT");
    let n = pg::query_i64(&client, "select count(*) from lineitem_even")
        .await
        .unwrap();
    assert_eq!(n, 60_175, "EXPLAIN ANALYZE of an INSERT wrote nothing");
}

#[tokio::test]
async fn a_partitioned_join_with_a_values_list_meets_the_distkey() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();
    // A left join keeps the VALUES side whole (it is never broadcast), so both sides are
    // hash-partitioned: the VALUES rows must be routed by the slice hash that placed the
    // lineitem rows, or matches are lost.
    let sql = "select v.k, count(l_orderkey) as lines \
               from (values (1), (2), (3), (7), (32), (33), (59874), (999999999)) as v(k) \
               left join lineitem on l_orderkey = v.k \
               group by v.k order by v.k";
    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&mpp.data)
        .query(sql)
        .unwrap();
    let actual = pg::query(&client, sql).await.unwrap();
    assert_rows_eq("VALUES left join lineitem", &actual, &expected);
}

/// Query directories (`spill/q-<query>`) left on the compute nodes under `root`.
fn leftover_query_dirs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let in_spill = dir.file_name().is_some_and(|n| n == "spill");
            if in_spill && entry.file_name().to_string_lossy().starts_with("q-") {
                found.push(path);
            } else {
                stack.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_cancelled_query_leaves_nothing_behind_on_the_nodes() {
    let cluster = Cluster::start(2, 1).await.unwrap();
    let logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(&client, "create table leftover_t (k bigint) diststyle even")
        .await
        .unwrap();
    pg::execute(
        &client,
        "insert into leftover_t select value from generate_series(1, 3000)",
    )
    .await
    .unwrap();

    let token = client.cancel_token();
    let running = tokio::spawn(async move {
        let result = client
            .simple_query(
                "select count(*) from leftover_t a, leftover_t b, leftover_t c \
                 where a.k + b.k + c.k < 0",
            )
            .await;
        (client, result)
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !running.is_finished(),
        "the long query finished before the cancel"
    );
    assert!(
        !leftover_query_dirs(cluster.root()).is_empty(),
        "a running query has a directory on the nodes"
    );
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (client, result) = tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .expect("the cancelled query returns")
        .unwrap();
    assert!(result.is_err(), "the query was cancelled");

    // The leader releases the query on every node right after the cancel.
    let mut left = leftover_query_dirs(cluster.root());
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = leftover_query_dirs(cluster.root());
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    let n = pg::query_i64(&client, "select count(*) from leftover_t")
        .await
        .unwrap();
    assert_eq!(n, 3000);
    drop(logs);
    cluster.stop().await.unwrap();
}

#[tokio::test]
async fn a_not_in_next_to_distributed_tables_runs_in_one_place() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();
    let duck = DuckDb::new().unwrap().with_tpch_views(&mpp.data);
    // The NOT IN (null-aware: lineitem_even's columns are nullable) must see the whole
    // subquery in one process even when a UNION ALL or a join with distributed tables would
    // otherwise pull it into a stage that runs per slice.
    for sql in [
        "select count(*), sum(k) from ( \
           select o_orderkey as k from orders where o_orderkey not in \
             (select l_orderkey from lineitem_even where l_linenumber > 6) \
           union all select l_orderkey from lineitem_even) x",
        "select count(*), sum(l_quantity) from lineitem_even, ( \
           select o_orderkey from orders where o_orderkey not in \
             (select l_orderkey from lineitem_even where l_linenumber > 6)) x \
         where l_orderkey = x.o_orderkey",
        "select count(*) from orders o left join lineitem_even l \
           on l.l_orderkey = o.o_orderkey and l.l_quantity > o.o_totalprice / 1000",
    ] {
        let expected = duck
            .query(&sql.replace("lineitem_even", "lineitem"))
            .unwrap();
        let actual = pg::query(&client, sql).await.unwrap();
        assert_rows_eq(sql, &actual, &expected);
    }
}

#[tokio::test]
async fn statements_of_one_query_string_run_in_order_and_stop_at_an_error() {
    let mpp = mpp_cluster().await;
    let _logs = mpp.cluster.logs_on_panic();
    let client = mpp.cluster.client().await.unwrap();
    let err = pg::expect_db_error(
        &client,
        "select o_orderkey / (o_shippriority - o_shippriority) from orders; \
         create table made_after_an_error (a integer)",
    )
    .await
    .unwrap();
    pg::assert_sqlstate(&err, &["22012"], "the first statement's error");
    let missing = pg::expect_db_error(&client, "select * from made_after_an_error")
        .await
        .unwrap();
    pg::assert_sqlstate(
        &missing,
        &["42P01"],
        "the statement after the error never ran",
    );
}
