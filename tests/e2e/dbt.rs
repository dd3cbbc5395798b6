//! dbt end to end: the project in `tests/dbt/project` run by `tests/dbt/run.sh` with the
//! dbt-postgres and the dbt-redshift adapters (redshift_connector), each against a cluster of
//! its own (2 nodes x 2 slices): seeds, views
//! (one late-binding), dist/sort tables, delete+insert and merge incremental models with
//! persist_docs, two snapshots, generic and singular tests, a second run and snapshot over
//! late-arriving rows, every model's rows compared with DuckDB rebuilding it from the same
//! seeds, and `dbt docs generate`. dbt runs from its own venv (`tests/dbt/.venv`, made by
//! `tests/run-all.sh` or by run.sh itself).

use std::process::Command;

use blueshift_tests::paths::{python, workspace_root};
use blueshift_tests::{Cluster, pg};

const USER: &str = "dbt_user";
const PASSWORD: &str = "Dbt2024password";

#[tokio::test]
async fn dbt_postgres_project_runs_and_matches_duckdb() {
    run_project("postgres").await;
}

#[tokio::test]
async fn dbt_redshift_project_runs_and_matches_duckdb() {
    run_project("redshift").await;
}

/// Runs every step of the project with the adapter `target` on a fresh cluster.
async fn run_project(target: &str) {
    let cluster = Cluster::start(2, 2).await.unwrap();
    let admin = cluster.client().await.unwrap();
    // dbt-redshift's redshift_connector logs in with MD5: the user needs an MD5 secret too.
    pg::execute(&admin, "set password_encryption = 'md5'")
        .await
        .unwrap();
    pg::execute(
        &admin,
        &format!("create user {USER} with password '{PASSWORD}' createuser"),
    )
    .await
    .unwrap();
    let root = workspace_root();
    let out = Command::new(root.join("tests/dbt/run.sh"))
        .arg(target)
        .env("DBT_HOST", "127.0.0.1")
        .env("DBT_PORT", cluster.pg_port().to_string())
        .env("DBT_USER", USER)
        .env("DBT_PASSWORD", PASSWORD)
        .env("DBT_DBNAME", "dev")
        .env("DBT_SCHEMA", "dbt_e2e")
        .env("DBT_COMPARE_PYTHON", python())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/dbt/run.sh: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("dbt: 11 passed, 0 failed"),
        "tests/dbt/run.sh {target} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("compare: 8 models match, 0 differ"),
        "the DuckDB comparison did not run:\n{stdout}"
    );
}
