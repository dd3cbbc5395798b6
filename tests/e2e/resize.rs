//! Elastic resize: compute nodes join and leave a running cluster while clients query it.
//!
//! `nodes_join_and_drain_while_queries_run`: two clients loop over the 22 TPC-H queries
//! (answers checked against DuckDB) on a 2-node cluster on an S3 store (moto) while
//! - a third node (`blueshift compute`, started by hand) joins: it must serve slices in
//!   `stv_slices` within seconds, and read segments (its cache counts misses);
//! - one of the original nodes gets SIGTERM while a CTAS runs: it drains, leaves
//!   `stv_slices`, exits 0, `blueshift local` does not restart it, and the CTAS succeeds
//!   with every row;
//! - the added node is drained too, leaving one node to serve every slice.
//!
//! No query may fail or differ, and none may even need a retry (`stl_retries` stays empty):
//! a drain hands its work over, it does not rely on the failure path.

use std::time::{Duration, Instant};

use blueshift_tests::{Cluster, ClusterOptions, S3Server, load_tpch, pg, tpch_data};

use crate::tpch_queries::{QueryLoops, duckdb_answers, report};

/// How soon a joined node must serve, and a drained node must be gone.
const WITHIN: Duration = Duration::from_secs(15);

/// Distinct nodes in the slice map a new statement gets.
async fn serving_nodes(client: &tokio_postgres::Client) -> i64 {
    pg::query_i64(client, "select count(distinct node) from stv_slices")
        .await
        .unwrap()
}

/// Waits until new statements see `want` serving nodes; how long that took.
async fn wait_for_nodes(client: &tokio_postgres::Client, want: i64, cluster: &Cluster) -> Duration {
    let started = Instant::now();
    loop {
        let now = serving_nodes(client).await;
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WITHIN,
            "stv_slices shows {now} nodes, not {want}, after {WITHIN:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn nodes_join_and_drain_while_queries_run() {
    let data = tpch_data().unwrap();
    let expected = duckdb_answers(&data);
    let s3 = S3Server::start().unwrap();
    s3.create_bucket("resize").unwrap();
    let cluster = Cluster::start_with(2, 2, &ClusterOptions::s3(&s3, "resize", "wh"))
        .await
        .unwrap();
    let _logs = cluster.logs_on_panic();
    let admin = cluster.client().await.unwrap();
    load_tpch(&admin, &data).await.unwrap();
    assert_eq!(serving_nodes(&admin).await, 2);

    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(cluster.client().await.unwrap());
    }
    let workload = QueryLoops::start(clients, expected);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A node joins.
    let mut extra = cluster.add_compute("compute-extra").unwrap();
    let joined = wait_for_nodes(&admin, 3, &cluster).await;
    eprintln!(
        "the added node serves slices {:.2} s after it started",
        joined.as_secs_f64()
    );
    let slices_of_new = pg::query_i64(
        &admin,
        "select count(*) from stv_slices where node = (select max(node) from stv_slices)",
    )
    .await
    .unwrap();
    assert!(slices_of_new >= 1, "the new node got no slice");
    // It really serves: its cache fetches segments for the queries it runs.
    let started = Instant::now();
    loop {
        let misses = pg::query_i64(
            &admin,
            "select misses from stv_node_cache where node = (select max(node) from stv_slices)",
        )
        .await
        .unwrap();
        if misses > 0 {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "the new node read no segment in {WITHIN:?}: it did not really serve"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An original node drains (SIGTERM to the process `blueshift local` started) while a
    // write runs, which must complete.
    let writer = cluster.client().await.unwrap();
    let write = tokio::spawn(async move {
        pg::execute(
            &writer,
            "create table lineitem_copy as select * from lineitem",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.signal("compute-0", "TERM").unwrap();
    let drained = wait_for_nodes(&admin, 2, &cluster).await;
    let started = Instant::now();
    while cluster.is_running("compute-0") {
        assert!(
            started.elapsed() < WITHIN,
            "compute-0 still runs {WITHIN:?} after it left stv_slices\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "compute-0 left stv_slices {:.2} s after SIGTERM and exited {:.2} s later",
        drained.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    write
        .await
        .unwrap()
        .expect("a write that ran while its node drained must succeed");
    assert_eq!(
        pg::query_i64(&admin, "select count(*) from lineitem_copy")
            .await
            .unwrap(),
        pg::query_i64(&admin, "select count(*) from lineitem")
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !cluster.is_running("compute-0"),
        "blueshift local restarted a drained node"
    );
    let log = std::fs::read_to_string(cluster.root().join("cluster.log")).unwrap();
    assert!(
        log.contains("compute-0 drained and left the cluster"),
        "blueshift local did not report the drain"
    );

    // The added node drains too: one node serves every slice.
    let status = extra.terminate(WITHIN).await.unwrap();
    assert!(status.success(), "a drained node exits 0, not {status}");
    assert_eq!(serving_nodes(&admin).await, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (runs, failures) = workload.finish().await;
    let retries = pg::query_i64(&admin, "select count(*) from stl_retries")
        .await
        .unwrap();
    eprintln!("{runs} queries while a node joined and two drained; {retries} retries");
    report("queries while nodes joined and drained", runs, &failures);
    assert_eq!(retries, 0, "a drain must not cost a retry");
    let slices = pg::query_i64(&admin, "select count(*) from stv_slices where state = 'up'")
        .await
        .unwrap();
    assert_eq!(slices, 4, "the last node serves all 4 slices");
}
