//! TPC-H SF 0.01 loaded into a 2-node x 2-slice cluster with `COPY ... FORMAT AS PARQUET`:
//! every table's row count, TPC-H Q1 and Q6 must equal DuckDB's answers on the same Parquet
//! files, and the KEY-distributed `lineitem` must be spread over every slice.

use blueshift_tests::tpch::{Q1, Q6, TPCH_TABLES};
use blueshift_tests::{DuckDb, assert_rows_eq, pg};

use crate::common::{rows_per_slice, tpch_cluster};

#[tokio::test]
async fn every_table_count_matches_duckdb() {
    let tpch = tpch_cluster().await;
    let _logs = tpch.cluster.logs_on_panic();
    let client = tpch.cluster.client().await.unwrap();

    let queries: Vec<String> = TPCH_TABLES
        .iter()
        .map(|t| format!("select count(*) from {t}"))
        .collect();
    let oracle = DuckDb::new()
        .unwrap()
        .with_tpch_views(&tpch.data)
        .query_all(&queries)
        .unwrap();
    for (query, expected) in queries.iter().zip(oracle) {
        let expected = expected.unwrap_or_else(|e| panic!("DuckDB failed on {query}: {e}"));
        let actual = pg::query(&client, query).await.unwrap();
        assert_rows_eq(query, &actual, &expected);
    }
    // SF 0.01 is a known size: guard against both engines reading an empty or partial file.
    let lineitem = pg::query_i64(&client, "select count(*) from lineitem")
        .await
        .unwrap();
    assert_eq!(lineitem, 60_175, "lineitem rows at SF 0.01");
}

#[tokio::test]
async fn q1_matches_duckdb() {
    let tpch = tpch_cluster().await;
    let _logs = tpch.cluster.logs_on_panic();
    let client = tpch.cluster.client().await.unwrap();

    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&tpch.data)
        .query(Q1)
        .unwrap();
    assert_eq!(
        expected.len(),
        4,
        "Q1 has four (returnflag, linestatus) groups"
    );
    let actual = pg::query(&client, Q1).await.unwrap();
    assert_rows_eq("TPC-H Q1", &actual, &expected);
}

#[tokio::test]
async fn q6_matches_duckdb() {
    let tpch = tpch_cluster().await;
    let _logs = tpch.cluster.logs_on_panic();
    let client = tpch.cluster.client().await.unwrap();

    let expected = DuckDb::new()
        .unwrap()
        .with_tpch_views(&tpch.data)
        .query(Q6)
        .unwrap();
    let actual = pg::query(&client, Q6).await.unwrap();
    // `between .06 - 0.01 and .06 + 0.01` must be exact decimal arithmetic (as in
    // PostgreSQL and Redshift): with binary floats `.06 + 0.01` is 0.06999999999999999 and
    // the rows with discount 0.07 drop out, which changes the revenue.
    assert_rows_eq("TPC-H Q6", &actual, &expected);
}

#[tokio::test]
async fn lineitem_rows_are_spread_over_every_slice() {
    let tpch = tpch_cluster().await;
    let _logs = tpch.cluster.logs_on_panic();
    let client = tpch.cluster.client().await.unwrap();

    let rows = pg::query(
        &client,
        "select slice, rows from stv_tbl_perm where trim(name) = 'lineitem'",
    )
    .await
    .unwrap();
    let per_slice = rows_per_slice(&rows, tpch.cluster.slices());
    let total: i64 = per_slice.iter().sum();
    assert_eq!(
        total, 60_175,
        "stv_tbl_perm rows of lineitem: {per_slice:?}"
    );
    assert!(
        per_slice.iter().all(|&n| n > 0),
        "lineitem (DISTKEY l_orderkey) has an empty slice: {per_slice:?}"
    );
}
