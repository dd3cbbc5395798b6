//! `COPY ... FROM STDIN` through tokio-postgres's COPY sub-protocol: PostgreSQL's text format
//! by default, CSV with PostgreSQL's option list; a bad row names `STDIN` and its line and
//! commits nothing.

use blueshift_tests::pg;
use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;

use crate::common::scratch_cluster;

async fn copy_in(
    client: &Client,
    sql: &str,
    data: &'static [u8],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from_static(data)).await?;
    sink.as_mut().finish().await
}

#[tokio::test]
async fn rows_sent_by_the_client_are_loaded() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "create table stdin_t (a integer, b varchar(20)) distkey(a)",
    )
    .await
    .unwrap();

    let n = copy_in(
        &client,
        "COPY stdin_t FROM STDIN",
        b"1\talpha\n2\tbeta\n3\t\\N\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let n = copy_in(
        &client,
        "COPY stdin_t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true)",
        b"a,b\n4,gamma\n5,\"de,lta\"\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let rows = pg::query(&client, "select a, b from stdin_t order by a")
        .await
        .unwrap();
    let expected: Vec<Vec<Option<String>>> = vec![
        vec![Some("1".into()), Some("alpha".into())],
        vec![Some("2".into()), Some("beta".into())],
        vec![Some("3".into()), None],
        vec![Some("4".into()), Some("gamma".into())],
        vec![Some("5".into()), Some("de,lta".into())],
    ];
    assert_eq!(rows, expected);

    let err = copy_in(
        &client,
        "COPY stdin_t FROM STDIN (FORMAT csv)",
        b"6,x\nseven,y\n",
    )
    .await
    .expect_err("a bad row fails the COPY");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(
        db.message().contains("STDIN") && db.message().contains("line 2"),
        "{db:?}"
    );
    let n = pg::query_i64(&client, "select count(*) from stdin_t")
        .await
        .unwrap();
    assert_eq!(n, 5, "nothing of the failed COPY is committed");
    pg::execute(&client, "drop table stdin_t").await.unwrap();
}

/// A client killed in the middle of `COPY ... FROM STDIN` (psql, SIGKILL after 5,000 rows
/// went out) commits nothing: only CopyDone ends the data.
#[tokio::test]
async fn a_client_killed_mid_copy_commits_nothing() {
    use std::io::Write;
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "create table stdin_killed (a integer, b varchar(20))",
    )
    .await
    .unwrap();
    let mut psql = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &cluster.pg_port().to_string()])
        .args([
            "-U",
            "blueshift",
            "-d",
            "dev",
            "-c",
            "COPY stdin_killed FROM STDIN",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = psql.stdin.take().unwrap();
    for i in 0..5_000 {
        writeln!(stdin, "{i}\trow {i}").unwrap();
    }
    stdin.flush().unwrap();
    // psql forwards what it read as CopyData; give the leader time to receive it all.
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(psql.try_wait().unwrap().is_none(), "psql ended early");
    psql.kill().unwrap();
    let _ = psql.wait();
    drop(stdin);
    // Whatever the leader does with the broken load, it must not commit any of it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let rows = pg::query_i64(&client, "select count(*) from stdin_killed")
        .await
        .unwrap();
    assert_eq!(
        rows,
        0,
        "rows of a killed COPY were committed ({:?} after they were sent)",
        started.elapsed()
    );
}
