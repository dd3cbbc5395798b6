//! Redshift's metadata commands (`SHOW DATABASES | SCHEMAS | TABLES | COLUMNS`), through the
//! simple protocol and through the extended protocol (where the described columns must
//! match the rows).

use blueshift_tests::pg;

use crate::common::scratch_cluster;

#[tokio::test]
async fn show_lists_databases_schemas_tables_and_columns() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "create table show_meta_t (a integer not null, b varchar(20), c decimal(10,2)) distkey(a) sortkey(a)",
    )
    .await
    .unwrap();

    let dbs = pg::query(&client, "show databases").await.unwrap();
    assert_eq!(dbs[0][0].as_deref(), Some("dev"));
    let schemas = pg::query(&client, "show schemas from database dev")
        .await
        .unwrap();
    assert!(schemas.iter().any(|r| r[1].as_deref() == Some("public")));
    let tables = pg::query(
        &client,
        "show tables from schema dev.public like 'show\\_meta%'",
    )
    .await
    .unwrap();
    assert_eq!(
        tables,
        vec![vec![
            Some("dev".to_string()),
            Some("public".to_string()),
            Some("show_meta_t".to_string()),
            Some("TABLE".to_string()),
            None,
            None,
            None,
            None,
            None,
            Some("KEY(a)".to_string()),
            Some("REGULAR TABLE".to_string()),
        ]]
    );
    let columns = pg::query(&client, "show columns from table dev.public.show_meta_t")
        .await
        .unwrap();
    // sort_key_type, sort_key and dist_key of the key column and of another
    assert_eq!(
        (
            columns[0][12].as_deref(),
            columns[0][13].as_deref(),
            columns[0][14].as_deref()
        ),
        (Some("COMPOUND"), Some("1"), Some("1"))
    );
    assert_eq!(
        (
            columns[1][12].as_deref(),
            columns[1][13].as_deref(),
            columns[1][14].as_deref()
        ),
        (None, Some("0"), Some("0"))
    );
    let summary: Vec<(String, String, String, String)> = columns
        .iter()
        .map(|r| {
            (
                r[3].clone().unwrap(),
                r[4].clone().unwrap(),
                r[6].clone().unwrap(),
                r[7].clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".into(), "1".into(), "NO".into(), "integer".into()),
            (
                "b".into(),
                "2".into(),
                "YES".into(),
                "character varying(20)".into()
            ),
            ("c".into(), "3".into(), "YES".into(), "numeric(10,2)".into()),
        ]
    );

    // Extended protocol: the statement is described before it runs.
    let rows = client
        .query(
            "show columns from table dev.public.show_meta_t like 'c'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Option<i32>>("numeric_precision"), Some(10));
    assert_eq!(rows[0].get::<_, Option<i32>>("numeric_scale"), Some(2));

    let err = pg::expect_db_error(&client, "show tables from schema public")
        .await
        .unwrap();
    pg::assert_sqlstate(&err, &["42601"], "SHOW TABLES needs database.schema");
    pg::execute(&client, "drop table show_meta_t")
        .await
        .unwrap();
}

#[tokio::test]
async fn information_schema_speaks_sql_types_and_has_the_constraint_views() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "create table info_schema_t (a integer not null, b varchar(20), c decimal(10,2), \
         d timestamp, e boolean)",
    )
    .await
    .unwrap();
    let rows = pg::query(
        &client,
        "select column_name, data_type, character_maximum_length, is_nullable \
         from information_schema.columns where table_name = 'info_schema_t' \
         order by ordinal_position",
    )
    .await
    .unwrap();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![s("a"), s("integer"), None, s("NO")],
            vec![s("b"), s("character varying"), s("20"), s("YES")],
            vec![s("c"), s("numeric"), None, s("YES")],
            vec![s("d"), s("timestamp without time zone"), None, s("YES")],
            vec![s("e"), s("boolean"), None, s("YES")],
        ]
    );
    for view in [
        "table_constraints",
        "key_column_usage",
        "referential_constraints",
        "constraint_column_usage",
    ] {
        let n = pg::query_i64(
            &client,
            &format!("select count(*) from information_schema.{view}"),
        )
        .await
        .unwrap();
        assert_eq!(n, 0, "{view}: no table has constraints");
    }
}

#[tokio::test]
async fn current_setting_reads_and_set_config_changes_the_session() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let one = |sql: &'static str| {
        let client = &client;
        async move { pg::query_one_value(client, sql).await.unwrap() }
    };
    assert_eq!(
        one("select current_setting('server_version_num')")
            .await
            .as_deref(),
        Some("150004")
    );
    assert_eq!(
        one("select set_config('statement_timeout', '7s', false)")
            .await
            .as_deref(),
        Some("7s")
    );
    assert_eq!(one("show statement_timeout").await.as_deref(), Some("7s"));
    assert_eq!(
        one("select current_setting('statement_timeout')")
            .await
            .as_deref(),
        Some("7s")
    );
    let err = pg::expect_db_error(&client, "select current_setting('no_such_setting')")
        .await
        .unwrap();
    pg::assert_sqlstate(&err, &["42704"], "unknown setting");
    let err = pg::expect_db_error(
        &client,
        "select set_config('x', v::text, false) from generate_series(1, 3) t(v)",
    )
    .await
    .unwrap();
    pg::assert_sqlstate(&err, &["0A000"], "set_config with per-row arguments");
}
