//! A compute node killed with SIGKILL: queries right after it must return either the correct
//! answer or a clear connection error (SQLSTATE 08006 / 57P03), never a wrong count or a hang,
//! and the cluster recovers (local mode restarts the node; the shared store keeps its slices).

use std::time::{Duration, Instant};

use blueshift_tests::{Cluster, pg};

#[tokio::test]
async fn killed_compute_node_gives_an_error_or_the_right_answer_then_recovers() {
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

    let pattern = format!("{}.*compute-1", cluster.root().display());
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "no compute process matched {pattern}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut errors = 0;
    loop {
        match client.query_one("select count(*) from f", &[]).await {
            Ok(row) => {
                let n: i64 = row.get(0);
                assert_eq!(
                    n, 5000,
                    "a query during a node failure returned a wrong count"
                );
                break;
            }
            Err(e) => {
                let db = e
                    .as_db_error()
                    .unwrap_or_else(|| panic!("not a server error: {e}"));
                pg::assert_sqlstate(db, &["08006", "57P03"], "query while a node is down");
                errors += 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not recover within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The session stays usable and answers stay right after recovery.
    assert_eq!(
        pg::query_i64(&client, "select sum(v) from f")
            .await
            .unwrap(),
        (1..=5000i64).map(|x| x % 7).sum::<i64>()
    );
    eprintln!("queries that failed cleanly while the node was down: {errors}");
}
