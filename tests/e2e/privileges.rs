//! The privilege matrix: for each privilege and object kind, a user without it gets 42501
//! and with it succeeds, through three clients nobody here wrote: psql, psycopg 3 and ADBC
//! Flight SQL (tests/clients/privilege_client.py). A view runs with its owner's rights (the
//! user reads the view, not the table under it), a column-level grant covers its columns
//! only, and a REVOKE takes effect on the next statement of a session that is already open
//! (tokio-postgres). COPY from server files: refused to users (even with INSERT), and to
//! superusers outside `allowed_paths` and inside the data dir.

use std::process::{Command, Stdio};

use blueshift_tests::paths::{python, workspace_root};
use blueshift_tests::{Cluster, pg};

use crate::common::scratch_cluster;

const USER: &str = "pm_user";
const PASSWORD: &str = "PrivMatrix2026";

/// Objects owned by the superuser, and the user's baseline: USAGE on schema `pm_s` (so the
/// table cases fail on the table, not the schema), SELECT on `pm_s2.t` (so its case fails
/// on the schema), no TEMP for PUBLIC.
const RESET: &str = "
    drop schema if exists pm_s cascade;
    drop schema if exists pm_s2 cascade;
    drop schema if exists pm_new cascade;
    create schema pm_s;
    create table pm_s.t (a int, b varchar(10));
    insert into pm_s.t values (1, 'one'), (2, 'two');
    create view pm_s.v as select a from pm_s.t;
    create schema pm_s2;
    create table pm_s2.t (a int);
    grant usage on schema pm_s to pm_user;
    grant select on pm_s2.t to pm_user;
    revoke temp on database dev from public;
    revoke all on database dev from pm_user";

/// (case, statement): each needs exactly the privilege its case names.
const CASES: [(&str, &str); 11] = [
    ("SELECT on a view (owner's rights)", "select * from pm_s.v"),
    ("column-level SELECT", "select a from pm_s.t"),
    ("SELECT on a table", "select * from pm_s.t"),
    ("INSERT", "insert into pm_s.t values (3, 'three')"),
    ("UPDATE", "update pm_s.t set b = 'u'"),
    ("DELETE", "delete from pm_s.t"),
    ("TRUNCATE", "truncate pm_s.t"),
    ("USAGE on a schema", "select * from pm_s2.t"),
    ("CREATE on a schema", "create table pm_s.made (a int)"),
    ("CREATE on the database", "create schema pm_new"),
    ("TEMP on the database", "create temp table pm_tmp (a int)"),
];

/// The grants of each case, in order (the first two leave the table itself ungranted).
const GRANTS: [&str; 11] = [
    "grant select on pm_s.v to pm_user",
    "grant select (a) on pm_s.t to pm_user",
    "grant select on pm_s.t to pm_user",
    "grant insert on pm_s.t to pm_user",
    "grant update on pm_s.t to pm_user",
    "grant delete on pm_s.t to pm_user",
    "grant truncate on pm_s.t to pm_user",
    "grant usage on schema pm_s2 to pm_user",
    "grant create on schema pm_s to pm_user",
    "grant create on database dev to pm_user",
    "grant temp on database dev to pm_user",
];

/// Runs `statements` as the user through `client`; one outcome ("ok" or a SQLSTATE) each.
fn run_as_user(cluster: &Cluster, client: &str, statements: &[&str]) -> Vec<String> {
    if client == "psql" {
        return statements
            .iter()
            .map(|sql| {
                let out = Command::new("psql")
                    .args(["-X", "-At", "-h", "127.0.0.1"])
                    .args([
                        "-p",
                        &cluster.pg_port().to_string(),
                        "-U",
                        USER,
                        "-d",
                        "dev",
                    ])
                    .args([
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-v",
                        "VERBOSITY=verbose",
                        "-c",
                        sql,
                    ])
                    .env("PGPASSWORD", PASSWORD)
                    .env("PGCONNECT_TIMEOUT", "30")
                    .output()
                    .expect("running psql (tests/run-all.sh installs it)");
                if out.status.success() {
                    return "ok".to_string();
                }
                // `ERROR:  42501: permission denied ...`
                let err = String::from_utf8_lossy(&out.stderr);
                err.split("ERROR:")
                    .nth(1)
                    .and_then(|rest| rest.trim().split(':').next())
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|| format!("unreadable: {err}"))
            })
            .collect();
    }
    let script = workspace_root().join("tests/clients/privilege_client.py");
    let mut child = Command::new(python())
        .arg(script)
        .args([client, "127.0.0.1"])
        .arg(cluster.pg_port().to_string())
        .arg(cluster.flight_sql_port().to_string())
        .args([USER, PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the venv's Python (tests/run-all.sh makes it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(serde_json::to_string(statements).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "privilege_client.py {client}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "privilege_client.py {client} printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn each_privilege_is_refused_without_it_and_granted_with_it_through_three_clients() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let admin = cluster.client().await.unwrap();
    let _ = admin
        .batch_execute(&format!("drop user if exists {USER}"))
        .await;
    admin
        .batch_execute(&format!("create user {USER} password '{PASSWORD}'"))
        .await
        .unwrap();
    for client in ["psql", "psycopg", "adbc"] {
        admin.batch_execute(RESET).await.unwrap();
        let cases: Vec<(&str, &str)> = CASES
            .iter()
            .copied()
            // Temporary tables belong to a PostgreSQL session (Flight SQL has none).
            .filter(|(case, _)| client != "adbc" || !case.starts_with("TEMP"))
            .collect();
        let statements: Vec<&str> = cases.iter().map(|(_, sql)| *sql).collect();
        let denied = run_as_user(cluster, client, &statements);
        for ((case, sql), got) in cases.iter().zip(&denied) {
            assert_eq!(got, "42501", "{client}, without {case}: {sql}");
        }
        // Granted one case at a time: each statement succeeds right after its grant.
        for (i, (case, sql)) in cases.iter().enumerate() {
            let grant = GRANTS[CASES.iter().position(|c| c.0 == *case).unwrap()];
            admin.batch_execute(grant).await.unwrap();
            let mut batch = vec![*sql];
            // Owner's rights and column grants: the table itself stays closed.
            if i < 2 {
                batch.push("select b from pm_s.t");
            }
            let got = run_as_user(cluster, client, &batch);
            assert_eq!(got[0], "ok", "{client}, with {case} ({grant}): {sql}");
            if i < 2 {
                assert_eq!(got[1], "42501", "{client}, after {grant}: select b");
            }
        }
        println!("privilege matrix: {client}: {} cases", cases.len());
    }

    // REVOKE reaches a session that is already open, on its next statement.
    admin.batch_execute(RESET).await.unwrap();
    admin
        .batch_execute("grant select on pm_s.t to pm_user")
        .await
        .unwrap();
    let config = format!(
        "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=dev",
        cluster.pg_port()
    );
    let (user, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    pg::query(&user, "select count(*) from pm_s.t")
        .await
        .unwrap();
    admin
        .batch_execute("revoke select on pm_s.t from pm_user")
        .await
        .unwrap();
    let err = pg::expect_db_error(&user, "select count(*) from pm_s.t")
        .await
        .unwrap();
    pg::assert_sqlstate(&err, &["42501"], "a revoked SELECT in an open session");
    assert_eq!(err.message(), "permission denied for relation t");

    // Server files: a user's COPY from /etc/passwd or from the data dir is refused even with
    // INSERT on the table; a superuser's too (outside allowed_paths, inside a data dir),
    // while a file under allowed_paths (the temp dir, in local mode) loads.
    admin
        .batch_execute("grant insert, select on pm_s.t to pm_user")
        .await
        .unwrap();
    let catalog_file = walk_files(&cluster.root().join("data/leader"))
        .into_iter()
        .next()
        .expect("a file in the leader's data dir");
    let passwd = "copy pm_s.t from '/etc/passwd' delimiter ':'".to_string();
    let data_dir = format!("copy pm_s.t from '{}'", catalog_file.display());
    for (who, client) in [("pm_user", &user), ("the superuser", &admin)] {
        for sql in [&passwd, &data_dir] {
            let err = pg::expect_db_error(client, sql).await.unwrap();
            pg::assert_sqlstate(&err, &["42501"], &format!("{who}: {sql}"));
        }
    }
    let (_dir, csv) = crate::common::write_file("pm.csv", "7,seven\n");
    let loaded = pg::execute(&admin, &format!("copy pm_s.t from '{}' csv", csv.display()))
        .await
        .unwrap();
    assert_eq!(
        loaded, 1,
        "a superuser's COPY of a file under allowed_paths"
    );
    let err = pg::expect_db_error(&user, &format!("copy pm_s.t from '{}' csv", csv.display()))
        .await
        .unwrap();
    pg::assert_sqlstate(&err, &["42501"], "a user's COPY of a server file");
    // A non-superuser cannot take another identity either.
    let err = pg::expect_db_error(&user, "set session authorization blueshift")
        .await
        .unwrap();
    pg::assert_sqlstate(&err, &["42501"], "SET SESSION AUTHORIZATION by a user");

    admin
        .batch_execute(&format!(
            "drop schema pm_s cascade; drop schema pm_s2 cascade; \
             drop schema if exists pm_new cascade; grant temp on database dev to public; \
             drop user {USER}"
        ))
        .await
        .unwrap();
}

/// Every file below `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Nothing the cluster writes under its data dir is open to other OS users: the catalog and
/// raft log (users' secrets), the TLS key, segments and caches are 0600, directories 0700.
#[tokio::test]
async fn data_dirs_are_closed_to_other_os_users() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = scratch_cluster().await;
    let admin = cluster.client().await.unwrap();
    let _ = admin.batch_execute("drop user if exists pm_secret").await;
    admin
        .batch_execute(
            "create user pm_secret password 'Secret2026pw'; \
             create table if not exists pm_rest (a int); insert into pm_rest values (1)",
        )
        .await
        .unwrap();
    let data = cluster.root().join("data");
    let mut open = Vec::new();
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        checked += 1;
        if meta.permissions().mode() & 0o077 != 0 {
            open.push(format!(
                "{} {:o}",
                p.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    assert!(
        checked > 10,
        "only {checked} entries under {}",
        data.display()
    );
    assert!(open.is_empty(), "open to other OS users: {open:?}");
    // Nor does anything in the log show the password (statement spans carry the text with
    // secrets masked: sql::statement's unit test pins the masking itself).
    assert!(
        !cluster.logs().contains("Secret2026pw"),
        "a password in the cluster log"
    );
    admin
        .batch_execute("drop table pm_rest; drop user pm_secret")
        .await
        .unwrap();
}
