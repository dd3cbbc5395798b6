//! Bad input gets a clear error with a PostgreSQL SQLSTATE, commits nothing, and leaves the
//! session usable: a CSV with an unparsable integer (22P02, naming the file and line 4), a
//! CSV line with the wrong number of columns (22P04 or 22P02, naming the line), unknown
//! tables (42P01) and columns (42703), a missing file (58P01), and values or files whose
//! types do not fit the table (22P02 / 42804).

use blueshift_tests::paths::sql_literal;
use blueshift_tests::pg::{self, assert_sqlstate, expect_db_error};
use tokio_postgres::Client;
use tokio_postgres::error::DbError;

use crate::common::{assert_cluster_healthy, scratch_cluster, write_file};

/// Creates `table (id INTEGER NOT NULL, name VARCHAR(20), qty INTEGER)` holding three rows.
async fn table_with_three_rows(client: &Client, table: &str) {
    pg::execute(
        client,
        &format!(
            "CREATE TABLE {table} (id INTEGER NOT NULL, name VARCHAR(20), qty INTEGER) \
             DISTSTYLE KEY DISTKEY(id)"
        ),
    )
    .await
    .unwrap();
    let (_dir, good) = write_file("good.csv", "id,name,qty\n1,one,10\n2,two,20\n3,three,30\n");
    pg::execute(client, &copy_csv(table, &good.to_string_lossy(), true))
        .await
        .unwrap();
    assert_unchanged(client, table).await;
}

/// The table still holds exactly the three rows of [`table_with_three_rows`].
async fn assert_unchanged(client: &Client, table: &str) {
    let rows = pg::query(
        client,
        &format!("select count(*), sum(id), sum(qty) from {table}"),
    )
    .await
    .expect("the session is still usable");
    assert_eq!(
        rows,
        vec![vec![Some("3".into()), Some("6".into()), Some("60".into())]],
        "{table} must hold exactly its three original rows"
    );
}

fn copy_csv(table: &str, path: &str, header: bool) -> String {
    format!(
        "COPY {table} FROM {} FORMAT AS CSV {}DELIMITER ',' NULL AS ''",
        sql_literal(path),
        if header { "IGNOREHEADER 1 " } else { "" }
    )
}

/// Message, detail and context of a server error, for "does it name X" checks.
fn full_text(err: &DbError) -> String {
    [Some(err.message()), err.detail(), err.where_()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" | ")
}

#[track_caller]
fn assert_names_line(err: &DbError, line: usize, file: &str) {
    let text = full_text(err).to_lowercase();
    assert!(
        text.contains(&format!("line {line}")),
        "the error must name line {line}: {}",
        full_text(err)
    );
    assert!(
        text.contains(&file.to_lowercase()),
        "the error must name the file {file}: {}",
        full_text(err)
    );
}

#[tokio::test]
async fn copy_csv_with_unparsable_integer_on_line_4_fails_and_loads_nothing() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_int";
    table_with_three_rows(&client, table).await;

    // Line 1 is the header, so `three` sits on line 4 of the file.
    let (_dir, bad) = write_file(
        "bad_integer.csv",
        "id,name,qty\n4,four,40\n5,five,50\nthree,six,60\n7,seven,70\n",
    );
    let err = expect_db_error(&client, &copy_csv(table, &bad.to_string_lossy(), true))
        .await
        .unwrap();
    assert_sqlstate(&err, &["22P02"], "unparsable INTEGER in a CSV");
    assert_names_line(&err, 4, "bad_integer.csv");
    assert_unchanged(&client, table).await;

    // Without a header line the count is the same: lines are the file's lines.
    let (_dir2, bad2) = write_file(
        "bad_integer_no_header.csv",
        "4,four,40\n5,five,50\n6,six,60\n7,seven,three\n8,eight,80\n",
    );
    let err = expect_db_error(&client, &copy_csv(table, &bad2.to_string_lossy(), false))
        .await
        .unwrap();
    assert_sqlstate(&err, &["22P02"], "unparsable INTEGER in a CSV");
    assert_names_line(&err, 4, "bad_integer_no_header.csv");
    assert_unchanged(&client, table).await;

    assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn copy_csv_with_wrong_column_count_names_the_line() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_columns";
    table_with_three_rows(&client, table).await;

    let (_dir, short) = write_file("too_few.csv", "id,name,qty\n4,four,40\n5,five\n6,six,60\n");
    let err = expect_db_error(&client, &copy_csv(table, &short.to_string_lossy(), true))
        .await
        .unwrap();
    assert_sqlstate(&err, &["22P04", "22P02"], "a CSV line with too few columns");
    assert_names_line(&err, 3, "too_few.csv");
    assert_unchanged(&client, table).await;

    let (_dir2, long) = write_file("too_many.csv", "id,name,qty\n4,four,40,400\n");
    let err = expect_db_error(&client, &copy_csv(table, &long.to_string_lossy(), true))
        .await
        .unwrap();
    assert_sqlstate(
        &err,
        &["22P04", "22P02"],
        "a CSV line with too many columns",
    );
    assert_names_line(&err, 2, "too_many.csv");
    assert_unchanged(&client, table).await;

    assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn unknown_table_is_42p01() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_tables";
    table_with_three_rows(&client, table).await;
    let (_dir, good) = write_file("rows.csv", "1,one,10\n");

    for sql in [
        "select * from no_such_table".to_owned(),
        "select count(*) from bad_input_tablez".to_owned(),
        "insert into no_such_table values (1, 'x', 1)".to_owned(),
        copy_csv("no_such_table", &good.to_string_lossy(), false),
        "drop table no_such_table".to_owned(),
    ] {
        let err = expect_db_error(&client, &sql).await.unwrap();
        assert_sqlstate(&err, &["42P01"], &sql);
        assert_unchanged(&client, table).await;
    }
    // IF EXISTS makes the last one succeed.
    pg::execute(&client, "drop table if exists no_such_table")
        .await
        .unwrap();
    assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn unknown_column_is_42703() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_cols";
    table_with_three_rows(&client, table).await;

    for sql in [
        format!("select no_such_column from {table}"),
        format!("select id from {table} where no_such_column = 1"),
        format!("select name, count(*) from {table} group by no_such_column"),
        format!("insert into {table} (id, no_such_column) values (9, 1)"),
    ] {
        let err = expect_db_error(&client, &sql).await.unwrap();
        assert_sqlstate(&err, &["42703"], &sql);
        assert_unchanged(&client, table).await;
    }
    assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn missing_file_is_58p01() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_files";
    table_with_three_rows(&client, table).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does_not_exist.csv");

    let sql = copy_csv(table, &missing.to_string_lossy(), true);
    let err = expect_db_error(&client, &sql).await.unwrap();
    assert_sqlstate(&err, &["58P01"], "COPY from a missing CSV file");
    assert!(
        full_text(&err).contains("does_not_exist.csv"),
        "the error must name the file: {}",
        full_text(&err)
    );
    assert_unchanged(&client, table).await;

    let missing_parquet = dir.path().join("nothing_here.parquet");
    let sql = format!(
        "COPY {table} FROM {} FORMAT AS PARQUET",
        sql_literal(&missing_parquet.to_string_lossy())
    );
    let err = expect_db_error(&client, &sql).await.unwrap();
    assert_sqlstate(&err, &["58P01"], "COPY from a missing Parquet file");
    assert_unchanged(&client, table).await;

    assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn values_of_the_wrong_type_are_rejected() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let table = "bad_input_types";
    table_with_three_rows(&client, table).await;

    // A string that is not an integer, into an INTEGER column.
    let sql = format!("insert into {table} values ('abc', 'x', 1)");
    let err = expect_db_error(&client, &sql).await.unwrap();
    assert_sqlstate(&err, &["22P02", "42804"], &sql);
    assert_unchanged(&client, table).await;

    // A Parquet file whose text columns cannot become a DATE table's columns.
    pg::execute(
        &client,
        "CREATE TABLE bad_input_dates (a DATE, b DATE, c DATE) DISTSTYLE EVEN",
    )
    .await
    .unwrap();
    let region = blueshift_tests::tpch_data().unwrap().file("region");
    let sql = format!(
        "COPY bad_input_dates FROM {} FORMAT AS PARQUET",
        sql_literal(&region.to_string_lossy())
    );
    let err = expect_db_error(&client, &sql).await.unwrap();
    assert_sqlstate(&err, &["42804", "22P02", "22007", "42846"], &sql);
    let rows = pg::query_i64(&client, "select count(*) from bad_input_dates")
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing of the failed COPY is visible");
    assert_unchanged(&client, table).await;

    assert_cluster_healthy(cluster).await;
}
