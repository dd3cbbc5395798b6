//! A compute node killed with SIGKILL: queries right after it are run again on the live node
//! (the store keeps every slice, so any node can serve it) and return the correct answer,
//! never an error, a wrong count or a hang; local mode restarts the node.

use std::time::{Duration, Instant};

use blueshift_tests::{Cluster, pg};

#[tokio::test]
async fn queries_right_after_a_compute_node_is_killed_are_retried_and_right() {
    let cluster = Cluster::start(2, 2).await.unwrap();
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(&client, "create table f (k bigint, v integer) distkey(k)")
        .await
        .unwrap();
    pg::execute(
        &client,
        "insert into f select value, value % 7 from generate_series(1, 5000)",
    )
    .await
    .unwrap();
    assert_eq!(
        pg::query_i64(&client, "select count(*) from f")
            .await
            .unwrap(),
        5000
    );

    cluster.signal("compute-1", "KILL").unwrap();

    // The next queries are planned on a node that is gone (its heartbeat has not timed
    // out yet): the leader notices, plans again on the live node and answers.
    for _ in 0..5 {
        let started = Instant::now();
        let n = pg::query_i64(&client, "select count(*) from f")
            .await
            .unwrap_or_else(|e| panic!("a query right after a node was killed failed: {e:#}"));
        assert_eq!(
            n, 5000,
            "a query during a node failure returned a wrong count"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a retried query took {:?}",
            started.elapsed()
        );
    }
    // The session stays usable and answers stay right after recovery.
    assert_eq!(
        pg::query_i64(&client, "select sum(v) from f")
            .await
            .unwrap(),
        (1..=5000i64).map(|x| x % 7).sum::<i64>()
    );
    let retries = pg::query_i64(&client, "select count(*) from stl_retries")
        .await
        .unwrap();
    eprintln!("retries after the node was killed: {retries}");
}
