//! Durability across restarts: a cluster stopped with SIGTERM (which must stop every process
//! and exit 0) and started again on the same data dir still has every table and row; a COPY
//! that fails afterwards changes nothing, before or after another restart.

use blueshift_tests::paths::sql_literal;
use blueshift_tests::{Cluster, Rows, pg};
use tokio_postgres::Client;

use crate::common::{NODES, SLICES_PER_NODE, write_file};

const ROWS: usize = 500;

/// A fingerprint of the contents of both tables.
async fn snapshot(client: &Client) -> Rows {
    let mut rows = pg::query(
        client,
        "select count(*), sum(id), sum(amount), min(day), max(day), count(label), \
         count(distinct label) from kept",
    )
    .await
    .unwrap();
    rows.extend(
        pg::query(client, "select * from kept where id > 1000 order by id")
            .await
            .unwrap(),
    );
    rows.extend(
        pg::query(client, "select count(*), sum(k) from kept_all")
            .await
            .unwrap(),
    );
    rows
}

#[tokio::test]
async fn tables_and_rows_survive_a_restart_and_a_failed_copy_changes_nothing() {
    let root = tempfile::Builder::new()
        .prefix("blueshift-e2e-restart-")
        .tempdir()
        .unwrap();
    let csv: String = (1..=ROWS)
        .map(|i| {
            format!(
                "{i},label {},{}.{:02},1995-{:02}-{:02}\n",
                i % 13,
                i * 3,
                i % 100,
                i % 12 + 1,
                i % 28 + 1
            )
        })
        .collect();
    let (_input, csv_path) = write_file("kept.csv", &csv);
    let (_bad_input, bad_path) = write_file(
        "kept_bad.csv",
        "2001,fine,1.00,1996-01-01\n2002,also fine,2.00,1996-01-02\n2003,bad,2.00,not a date\n",
    );

    // First life: create, load, fingerprint, stop cleanly.
    let cluster = Cluster::start_in(root.path(), NODES, SLICES_PER_NODE)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "CREATE TABLE kept (id INTEGER NOT NULL, label VARCHAR(20), amount DECIMAL(10,2), \
         day DATE) DISTSTYLE KEY DISTKEY(id) SORTKEY(day)",
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        &format!(
            "COPY kept FROM {} FORMAT AS CSV DELIMITER ','",
            sql_literal(&csv_path.to_string_lossy())
        ),
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        "INSERT INTO kept VALUES (1001, 'inserted', 12.34, '2024-02-29'), \
         (1002, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    pg::execute(&client, "CREATE TABLE kept_all (k INTEGER) DISTSTYLE ALL")
        .await
        .unwrap();
    pg::execute(&client, "INSERT INTO kept_all VALUES (1), (2), (3)")
        .await
        .unwrap();
    let before = snapshot(&client).await;
    assert_eq!(
        before[0][0].as_deref(),
        Some("502"),
        "rows in kept: {before:?}"
    );
    assert_eq!(
        before[1],
        vec![
            Some("1001".into()),
            Some("inserted".into()),
            Some("12.34".into()),
            Some("2024-02-29".into())
        ]
    );
    drop(client);
    cluster.stop().await.expect("a clean stop on SIGTERM");

    // Second life: everything is back; a bad COPY is rejected and changes nothing.
    let cluster = Cluster::start_in(root.path(), NODES, SLICES_PER_NODE)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    let after = snapshot(&client).await;
    assert_eq!(after, before, "contents after a restart");
    let slices = pg::query_i64(&client, "select count(*) from stv_slices")
        .await
        .unwrap();
    assert_eq!(slices as usize, cluster.slices(), "slices after a restart");

    let err = pg::expect_db_error(
        &client,
        &format!(
            "COPY kept FROM {} FORMAT AS CSV DELIMITER ','",
            sql_literal(&bad_path.to_string_lossy())
        ),
    )
    .await
    .unwrap();
    assert!(
        err.message().contains("line 3"),
        "the error names line 3: {}",
        err.message()
    );
    assert_eq!(snapshot(&client).await, before, "after a failed COPY");
    drop(client);
    cluster.stop().await.expect("a clean stop on SIGTERM");

    // Third life: the failed COPY left nothing behind on disk either.
    let cluster = Cluster::start_in(root.path(), NODES, SLICES_PER_NODE)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    assert_eq!(
        snapshot(&client).await,
        before,
        "after a failed COPY and a restart"
    );
}

/// IDENTITY and DEFAULT columns through COPY (Redshift's column rules and `EXPLICIT_IDS`)
/// and across a restart: a leader that starts again hands out identity values after every
/// one it handed out before, so no two rows share one.
#[tokio::test]
async fn copy_fills_identity_and_defaults_and_identity_values_survive_a_restart() {
    let root = tempfile::Builder::new()
        .prefix("blueshift-e2e-identity-")
        .tempdir()
        .unwrap();
    let (_plain, plain) = write_file("plain.csv", "a,1,p\nb,2,p\nc,3,p\n");
    let (_listed, listed) = write_file("listed.csv", "d\ne\n");
    let (_ids, ids) = write_file("ids.csv", "500,x,9\n501,y,9\n");
    let copy = |path: &std::path::Path, columns: &str, extra: &str| {
        format!(
            "COPY ident {columns} FROM {} CSV {extra}",
            sql_literal(&path.to_string_lossy())
        )
    };
    let all = "select id, name, qty, note from ident order by id";

    let cluster = Cluster::start_in(root.path(), NODES, SLICES_PER_NODE)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "CREATE TABLE ident (id BIGINT IDENTITY(1, 1), name VARCHAR(10), qty INT DEFAULT 7, \
         note VARCHAR(10) DEFAULT 'copied') DISTKEY(id)",
    )
    .await
    .unwrap();
    // No column list: every column but the identity one, in order.
    pg::execute(&client, &copy(&plain, "", "")).await.unwrap();
    // A list: the others get their defaults.
    pg::execute(&client, &copy(&listed, "(name)", ""))
        .await
        .unwrap();
    // The identity column in a list needs EXPLICIT_IDS, and EXPLICIT_IDS needs it there.
    let err = pg::expect_db_error(&client, &copy(&ids, "(id, name, qty)", ""))
        .await
        .unwrap();
    assert_eq!(err.code().code(), "428C9", "{}", err.message());
    let err = pg::expect_db_error(&client, &copy(&listed, "(name)", "EXPLICIT_IDS"))
        .await
        .unwrap();
    assert_eq!(err.code().code(), "42601", "{}", err.message());
    pg::execute(&client, &copy(&ids, "(id, name, qty)", "EXPLICIT_IDS"))
        .await
        .unwrap();
    let rows = pg::query(&client, all).await.unwrap();
    let text = |rows: &Rows| -> Vec<String> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    assert_eq!(
        text(&rows),
        [
            "1 a 1 p",
            "2 b 2 p",
            "3 c 3 p",
            "4 d 7 copied",
            "5 e 7 copied",
            "500 x 9 copied",
            "501 y 9 copied",
        ],
    );
    drop(client);
    cluster.stop().await.expect("a clean stop on SIGTERM");

    let cluster = Cluster::start_in(root.path(), NODES, SLICES_PER_NODE)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    pg::execute(&client, "INSERT INTO ident (name) VALUES ('after')")
        .await
        .unwrap();
    // Prepared with parameters (the extended protocol), DEFAULT in VALUES.
    let inserted = client
        .execute(
            "INSERT INTO ident VALUES (DEFAULT, $1, DEFAULT, $2)",
            &[&"prepared", &"p2"],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let prepared = pg::query(
        &client,
        "select qty, note from ident where name = 'prepared' and id > 5",
    )
    .await
    .unwrap();
    assert_eq!(
        prepared,
        vec![vec![Some("7".to_string()), Some("p2".to_string())]]
    );
    let after = pg::query(
        &client,
        "select id, qty, note from ident where name = 'after'",
    )
    .await
    .unwrap();
    let id: i64 = after[0][0].as_deref().unwrap().parse().unwrap();
    assert!(
        id > 5,
        "a value after the ones handed out before the restart: {after:?}"
    );
    assert_eq!(after[0][1].as_deref(), Some("7"));
    let distinct = pg::query_i64(&client, "select count(distinct id) - count(*) from ident")
        .await
        .unwrap();
    assert_eq!(distinct, 0, "identity values are unique");
    drop(client);
    cluster.stop().await.expect("a clean stop on SIGTERM");
}
