//! The client matrix: real PostgreSQL-protocol clients nobody here wrote, against a live
//! cluster, each logging in with a password, creating a table, loading rows, querying with
//! parameters and browsing the metadata, asserting the values they get:
//!
//! * tokio-postgres (here): SCRAM login, COPY FROM STDIN, a prepared query, pg_catalog;
//!   a wrong password and an unknown user both fail with 28P01;
//! * psql 15: `\dt`, `\d table`, `version()`, a cursor, `\copy`; TLS (`sslmode=verify-ca`
//!   against the certificate the leader generated);
//! * Python (tests/clients/python_clients.py): psycopg 3, SQLAlchemy with
//!   `postgresql+psycopg` and with `sqlalchemy-redshift`, pandas `to_sql(method="multi")` /
//!   `read_sql` round trip, `redshift_connector` with and without TLS;
//! * pgjdbc (tests/clients/JdbcClient.java, Debian's libpostgresql-jdbc-java);
//! * `blueshift sql -c` (CSV, JSON and aligned output, `\d`, errors with their SQLSTATE);
//! * ADBC Flight SQL for Python on the Flight SQL port (tests/clients/adbc_client.py):
//!   Basic login and a wrong password, DDL, a parameterized INSERT and query to Arrow,
//!   `adbc_get_info`, `adbc_get_objects`, `adbc_get_table_schema`; with pyarrow's Flight
//!   client, GetSchema and one ticket fetched twice.
//!
//! `tests/run-all.sh` installs the Python packages (tests/requirements.txt), psql, Java and
//! the JDBC driver; a missing client fails its test rather than skipping it.

use std::path::Path;
use std::process::Command;

use blueshift_tests::paths::{python, workspace_root};
use blueshift_tests::{Cluster, pg};
use tokio_postgres::NoTls;

use crate::common::scratch_cluster;

const USER: &str = "matrix_user";
const PASSWORD: &str = "Matrix2024pw";
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// The matrix user (a superuser, so that clients may create tables), once per cluster.
async fn matrix_user(cluster: &Cluster) {
    let admin = cluster.client().await.unwrap();
    let exists = pg::query(
        &admin,
        &format!("select count(*) from pg_catalog.pg_user where usename = '{USER}'"),
    )
    .await
    .unwrap();
    if exists[0][0].as_deref() == Some("0") {
        // redshift_connector logs in with MD5: the user needs an MD5 secret too.
        pg::execute(&admin, "set password_encryption = 'md5'")
            .await
            .unwrap();
        // Two tests may race to create it; one wins and the other sees 42710.
        let _ = pg::execute(
            &admin,
            &format!("create user {USER} with password '{PASSWORD}' createuser"),
        )
        .await;
    }
}

async fn connect_as(
    cluster: &Cluster,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=dev connect_timeout=30",
        cluster.pg_port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (tests/run-all.sh installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

#[tokio::test]
async fn tokio_postgres_logs_in_with_scram_and_wrong_passwords_fail_with_28p01() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;

    for (user, password) in [(USER, "wrong-Password1"), ("no_such_user", PASSWORD)] {
        let err = match connect_as(cluster, user, password).await {
            Ok(_) => panic!("{user} logged in with a wrong password"),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("not a server error: {err}"));
        assert_eq!(db.code().code(), "28P01", "{user}: {}", db.message());
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{user}\"")
        );
    }

    let client = connect_as(cluster, USER, PASSWORD).await.unwrap();
    client
        .batch_execute(
            "drop table if exists tp_t; \
             create table tp_t (id integer not null, name varchar(20), amount decimal(10,2)) distkey(id)",
        )
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY tp_t FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    {
        use futures::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"1,one,1.50\n2,two,2.25\n3,,\n"))
            .await
            .unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 3);
    }
    let stmt = client
        .prepare("select name, amount::text from tp_t where id = $1")
        .await
        .unwrap();
    for (id, name, amount) in [(1, Some("one"), Some("1.50")), (3, None, None)] {
        let rows = client.query(&stmt, &[&id]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, Option<&str>>(0), name);
        assert_eq!(rows[0].get::<_, Option<&str>>(1), amount);
    }
    let columns = client
        .query(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
             from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid \
             where c.relname = $1 and a.attnum > 0 order by a.attnum",
            &[&"tp_t"],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, bool)> = columns
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let col = |n: &str, t: &str, not_null| (n.to_string(), t.to_string(), not_null);
    assert_eq!(
        got,
        vec![
            col("id", "integer", true),
            col("name", "character varying(20)", false),
            col("amount", "numeric(10,2)", false)
        ]
    );
    let me: String = client
        .query_one("select current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(me, USER);
}

#[tokio::test]
async fn psql_lists_describes_queries_and_uses_a_cursor() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "1,alpha\n2,beta\n3,gamma\n").unwrap();
    let script = format!(
        "drop table if exists psql_t;\n\
         create table psql_t (id integer not null, name varchar(20)) distkey(id) sortkey(id);\n\
         \\copy psql_t from '{}' with (format csv)\n\
         \\dt psql_t\n\
         \\d psql_t\n\
         select version();\n\
         \\copy (select id, name from psql_t order by id) to '{}' with (format csv, header)\n\
         begin;\n\
         declare c cursor for select id, name from psql_t order by id;\n\
         fetch 2 from c;\n\
         fetch all from c;\n\
         close c;\n\
         commit;\n",
        csv.display(),
        dir.path().join("out.csv").display()
    );
    // From a file, so that psql runs the backslash commands itself.
    let file = dir.path().join("script.sql");
    std::fs::write(&file, &script).unwrap();
    let out = run(
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &cluster.pg_port().to_string(),
                "-U",
                USER,
                "-d",
                "dev",
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "30")
            .arg("-f")
            .arg(&file),
        "psql",
    );
    assert!(out.contains("COPY 3"), "{out}");
    // \dt
    assert!(
        out.lines()
            .any(|l| l.contains("public") && l.contains("psql_t") && l.contains("table")),
        "{out}"
    );
    // \d psql_t
    assert!(out.contains("Table \"public.psql_t\""), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" id ") && l.contains("integer") && l.contains("not null")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" name ") && l.contains("character varying(20)")),
        "{out}"
    );
    assert!(out.contains("PostgreSQL 15"), "{out}");
    // the cursor: two rows, then the rest
    assert!(out.contains("(2 rows)") && out.contains("(1 row)"), "{out}");
    assert!(out.contains("gamma"), "{out}");
    // \copy ... to: COPY TO STDOUT written by psql
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "id,name\n1,alpha\n2,beta\n3,gamma\n"
    );
}

#[tokio::test]
async fn python_drivers_psycopg_sqlalchemy_and_redshift_connector_with_and_without_tls() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    let script = workspace_root().join("tests/clients/python_clients.py");
    let out = run(
        Command::new(python())
            .arg(&script)
            .args(["127.0.0.1", &cluster.pg_port().to_string(), USER, PASSWORD])
            .args([
                "psycopg",
                "sqlalchemy-psycopg",
                "sqlalchemy-redshift",
                "pandas",
            ])
            .args(["redshift-connector", "redshift-connector-tls"])
            // redshift_connector always verifies the server's certificate: trust the
            // cluster's generated one (OpenSSL reads SSL_CERT_FILE).
            .env("SSL_CERT_FILE", server_certificate(cluster)),
        "python_clients.py",
    );
    for client in [
        "psycopg",
        "sqlalchemy-psycopg",
        "sqlalchemy-redshift",
        "pandas",
        "redshift-connector",
        "redshift-connector-tls",
    ] {
        assert!(out.contains(&format!("ok {client}")), "{out}");
    }
}

/// The self-signed certificate the leader generated on first start.
fn server_certificate(cluster: &Cluster) -> std::path::PathBuf {
    let cert = cluster.root().join("data/leader/tls/server.crt");
    assert!(
        cert.exists(),
        "no generated certificate at {}",
        cert.display()
    );
    cert
}

#[tokio::test]
async fn psql_over_tls_verifies_the_generated_certificate() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    let conninfo = format!(
        "host=127.0.0.1 port={} user={USER} dbname=dev sslmode=verify-ca sslrootcert={}",
        cluster.pg_port(),
        server_certificate(cluster).display()
    );
    let out = run(
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", &conninfo])
            .env("PGPASSWORD", PASSWORD)
            .args(["-c", "\\conninfo", "-c", "select 41 + 1"]),
        "psql (TLS)",
    );
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    assert!(out.contains("42"), "{out}");
}

#[tokio::test]
async fn pgjdbc_prepares_fetches_one_row_at_a_time_and_reads_metadata() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    assert!(
        Path::new(JDBC_JAR).exists(),
        "{JDBC_JAR} is missing: tests/run-all.sh installs libpostgresql-jdbc-java"
    );
    let source = workspace_root().join("tests/clients/JdbcClient.java");
    let out = run(
        Command::new("java")
            .args(["-cp", JDBC_JAR])
            .arg(&source)
            .args(["127.0.0.1", &cluster.pg_port().to_string(), USER, PASSWORD]),
        "java JdbcClient.java",
    );
    assert!(out.contains("ok pgjdbc"), "{out}");
}

#[tokio::test]
async fn blueshift_sql_runs_commands_and_prints_csv_json_and_tables() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    let sql = |args: &[&str]| {
        run(
            Command::new(blueshift_tests::paths::blueshift_bin())
                .args(["sql", "-p", &cluster.pg_port().to_string(), "-U", USER])
                .env("PGPASSWORD", PASSWORD)
                .args(args),
            "blueshift sql",
        )
    };
    sql(&[
        "-c",
        "drop table if exists cli_t",
        "-c",
        "create table cli_t (id integer, name varchar(10)) distkey(id)",
        "-c",
        "insert into cli_t values (1, 'one'), (2, null), (3, 'a,b')",
    ]);
    let csv = sql(&["--csv", "-c", "select id, name from cli_t order by id"]);
    assert_eq!(csv, "id,name\n1,one\n2,\n3,\"a,b\"\n");
    let json = sql(&["--json", "-c", "select id, name from cli_t where id = 2"]);
    assert_eq!(json, "[{\"id\":\"2\",\"name\":null}]\n");
    let table = sql(&["-c", "select count(*) from cli_t", "-c", "\\d cli_t"]);
    assert!(table.contains(" count\n-------\n 3\n(1 row)"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("id") && l.contains("integer") && l.trim_end().ends_with('1')),
        "{table}"
    );
    // A failing statement: SQLSTATE on stderr, exit status 1.
    let out = Command::new(blueshift_tests::paths::blueshift_bin())
        .args(["sql", "-p", &cluster.pg_port().to_string(), "-U", USER])
        .env("PGPASSWORD", PASSWORD)
        .args(["-c", "select 1/0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SQLSTATE 22012"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn adbc_flight_sql_queries_to_arrow_with_parameters_and_browses_objects() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    matrix_user(cluster).await;
    let script = workspace_root().join("tests/clients/adbc_client.py");
    let out = run(
        Command::new(python()).arg(&script).args([
            "127.0.0.1",
            &cluster.flight_sql_port().to_string(),
            USER,
            PASSWORD,
        ]),
        "adbc_client.py",
    );
    assert!(out.contains("ok adbc"), "{out}");
}
