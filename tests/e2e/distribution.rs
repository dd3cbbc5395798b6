//! How rows are placed on a 2-node x 2-slice cluster: `stv_slices` lists 2 nodes with 4
//! slices; a `DISTSTYLE KEY` table loaded from a generated CSV has rows on every slice
//! (per-slice counts from `stv_tbl_perm`) summing to the total, and its `GROUP BY`s equal
//! DuckDB's answers on the same CSV; an EVEN table covers every slice; an ALL table holds a
//! full copy on every node and is still counted once by queries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use blueshift_tests::paths::sql_literal;
use blueshift_tests::{Cluster, DuckDb, assert_rows_eq, pg};
use tokio_postgres::Client;

use crate::common::{cell, rows_per_slice, scratch_cluster, write_file};

async fn table_rows_per_slice(client: &Client, cluster: &Cluster, table: &str) -> Vec<i64> {
    let rows = pg::query(
        client,
        &format!("select slice, rows from stv_tbl_perm where trim(name) = '{table}'"),
    )
    .await
    .unwrap();
    rows_per_slice(&rows, cluster.slices())
}

/// `slice -> node` from `stv_slices`.
async fn slice_nodes(client: &Client) -> BTreeMap<usize, String> {
    pg::query(client, "select slice, node from stv_slices")
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                cell(row, 0).parse().expect("slice is an integer"),
                cell(row, 1).to_owned(),
            )
        })
        .collect()
}

/// A CSV `k,g,v` with a header: `rows` rows, keys 1..=2000 repeating, 7 groups, and an
/// empty (NULL) `v` on every 50th row.
fn key_csv(rows: usize) -> String {
    let groups = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    let mut csv = String::from("k,g,v\n");
    for i in 0..rows {
        let k = i % 2000 + 1;
        let g = groups[i % groups.len()];
        if i % 50 == 49 {
            writeln!(csv, "{k},{g},").unwrap();
        } else {
            let cents = (i * 7919) % 100_000;
            writeln!(csv, "{k},{g},{}.{:02}", cents / 100, cents % 100).unwrap();
        }
    }
    csv
}

#[tokio::test]
async fn stv_slices_shows_two_nodes_with_two_slices_each() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();

    let rows = pg::query(
        &client,
        "select count(distinct node), count(*) from stv_slices",
    )
    .await
    .unwrap();
    assert_eq!(rows, vec![vec![Some("2".into()), Some("4".into())]]);

    let nodes = slice_nodes(&client).await;
    assert_eq!(
        nodes.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3],
        "slices are numbered 0..4"
    );
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in nodes.values() {
        *per_node.entry(node).or_default() += 1;
    }
    assert!(
        per_node.values().all(|&n| n == 2),
        "each node owns 2 slices: {per_node:?}"
    );
}

#[tokio::test]
async fn key_distributed_table_covers_every_slice_and_groups_like_duckdb() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    const ROWS: usize = 5000;
    let (_dir, csv) = write_file("dist_key.csv", &key_csv(ROWS));
    let csv = csv.to_string_lossy().into_owned();

    pg::execute(
        &client,
        "CREATE TABLE dist_key (k INTEGER NOT NULL, g VARCHAR(10) NOT NULL, v DECIMAL(12,2)) \
         DISTSTYLE KEY DISTKEY(k) SORTKEY(k)",
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        &format!(
            "COPY dist_key FROM {} FORMAT AS CSV IGNOREHEADER 1 DELIMITER ',' NULL AS ''",
            sql_literal(&csv)
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        pg::query_i64(&client, "select count(*) from dist_key")
            .await
            .unwrap(),
        ROWS as i64
    );

    let per_slice = table_rows_per_slice(&client, cluster, "dist_key").await;
    assert_eq!(
        per_slice.iter().sum::<i64>(),
        ROWS as i64,
        "stv_tbl_perm rows of dist_key: {per_slice:?}"
    );
    // 2000 distinct keys over 4 slices: each slice gets a fair share (~25%), not just one row.
    assert!(
        per_slice.iter().all(|&n| n >= ROWS as i64 / 10),
        "dist_key rows are badly skewed over the slices: {per_slice:?}"
    );

    let duckdb = DuckDb::new().unwrap().with_setup(format!(
        "CREATE VIEW dist_key AS SELECT * FROM read_csv({}, header = true, delim = ',', \
         nullstr = '', columns = {{'k': 'INTEGER', 'g': 'VARCHAR', 'v': 'DECIMAL(12,2)'}})",
        sql_literal(&csv)
    ));
    let queries = [
        // A group-by on another column: needs a shuffle between nodes.
        "select g, count(*), count(v), sum(v), min(k), max(k), min(v), max(v) \
         from dist_key group by g order by g",
        // A group-by on the distribution key: every group lives on one slice.
        "select k, count(*), sum(v) from dist_key group by k order by k",
        "select count(distinct k), count(distinct g), sum(v) from dist_key",
        "select g, count(distinct k) from dist_key where v > 500 group by g \
         having count(*) > 10 order by g",
    ];
    let expected = duckdb.query_all(&queries.map(str::to_owned)).unwrap();
    for (query, expected) in queries.iter().zip(expected) {
        let expected = expected.unwrap_or_else(|e| panic!("DuckDB failed on {query}: {e}"));
        let actual = pg::query(&client, query).await.unwrap();
        assert_rows_eq(query, &actual, &expected);
    }
}

#[tokio::test]
async fn even_distributed_table_covers_every_slice() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    const ROWS: usize = 1000;
    let csv: String = (0..ROWS).map(|i| format!("{i},row {i}\n")).collect();
    let (_dir, path) = write_file("dist_even.csv", &csv);

    pg::execute(
        &client,
        "CREATE TABLE dist_even (id INTEGER NOT NULL, label VARCHAR(20)) DISTSTYLE EVEN",
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        &format!(
            "COPY dist_even FROM {} FORMAT AS CSV DELIMITER ','",
            sql_literal(&path.to_string_lossy())
        ),
    )
    .await
    .unwrap();

    let per_slice = table_rows_per_slice(&client, cluster, "dist_even").await;
    assert_eq!(per_slice.iter().sum::<i64>(), ROWS as i64, "{per_slice:?}");
    assert!(
        per_slice.iter().all(|&n| n > 0),
        "an EVEN table leaves no slice empty: {per_slice:?}"
    );
    let rows = pg::query(&client, "select count(*), sum(id) from dist_even")
        .await
        .unwrap();
    let sum = (ROWS * (ROWS - 1) / 2).to_string();
    assert_eq!(rows, vec![vec![Some(ROWS.to_string()), Some(sum)]]);
}

#[tokio::test]
async fn all_distributed_table_is_on_every_node_and_counted_once() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    const ROWS: usize = 300;
    let csv: String = (0..ROWS)
        .map(|i| format!("{i},name {}\n", i % 17))
        .collect();
    let (_dir, path) = write_file("dist_all.csv", &csv);

    pg::execute(
        &client,
        "CREATE TABLE dist_all (id INTEGER NOT NULL, name VARCHAR(20)) DISTSTYLE ALL",
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        &format!(
            "COPY dist_all FROM {} FORMAT AS CSV DELIMITER ','",
            sql_literal(&path.to_string_lossy())
        ),
    )
    .await
    .unwrap();

    // Every node holds a full copy: summed over each node's slices, stv_tbl_perm shows all
    // rows (like Redshift, a node's copy is counted once, not once per slice).
    let per_slice = table_rows_per_slice(&client, cluster, "dist_all").await;
    let nodes = slice_nodes(&client).await;
    let mut per_node: BTreeMap<&str, i64> = BTreeMap::new();
    for (slice, node) in &nodes {
        *per_node.entry(node.as_str()).or_default() += per_slice[*slice];
    }
    assert_eq!(per_node.len(), cluster.nodes(), "nodes in stv_slices");
    assert!(
        per_node.values().all(|&n| n == ROWS as i64),
        "every node must hold all {ROWS} rows of an ALL table: per node {per_node:?}, \
         per slice {per_slice:?}"
    );

    // ...but a query sees each row once.
    let rows = pg::query(
        &client,
        "select count(*), count(distinct id), sum(id) from dist_all",
    )
    .await
    .unwrap();
    let sum = (ROWS * (ROWS - 1) / 2).to_string();
    assert_eq!(
        rows,
        vec![vec![
            Some(ROWS.to_string()),
            Some(ROWS.to_string()),
            Some(sum)
        ]]
    );
    let groups = pg::query(
        &client,
        "select name, count(*) from dist_all group by name order by name limit 2",
    )
    .await
    .unwrap();
    assert_eq!(
        groups,
        vec![
            vec![Some("name 0".into()), Some("18".into())],
            vec![Some("name 1".into()), Some("18".into())],
        ]
    );
}
