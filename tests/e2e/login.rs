//! Login and secrets. Secrets at rest and how a password is proven: the catalog and raft files hold a user's
//! SCRAM `StoredKey` / `ServerKey`, never the salted password or the client key (either logs
//! in by itself), nor the password; an MD5 secret only for a user whose password was set
//! under `password_encryption = 'md5'`. The files are searched by
//! tests/clients/secrets_at_rest.py with Python's own PBKDF2 and HMAC. Which method a login
//! takes is checked with libpq's `require_auth` (psycopg, tests/clients/login_method.py),
//! and `md5_auth = false` turns MD5 off altogether. Flight SQL bearer tokens (pyarrow's
//! Flight client, tests/clients/flight_token.py) die with the password they were issued
//! against, with their user, and when they expire. `max_connections` and a user's
//! `CONNECTION LIMIT` refuse sessions past them with 53300 (superusers have 3 reserved).
//! An address with `auth_failure_limit` failed logins in a minute is refused (28000), and
//! `stl_connection_log` shows the logins, failures and disconnections.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use blueshift_tests::paths::{python, workspace_root};
use blueshift_tests::{Cluster, ClusterOptions, pg};

use crate::common::scratch_cluster;

const PASSWORD: &str = "AtRest2026pw";

fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("running the venv's Python (tests/run-all.sh makes it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

/// `ok <user>` or `refused <message>`: a psycopg login allowing `method` only.
fn login(port: u16, user: &str, method: &str) -> String {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/clients/login_method.py"))
        .args(["127.0.0.1", &port.to_string(), user, PASSWORD, method])
        .output()
        .expect("running the venv's Python (tests/run-all.sh makes it)");
    assert!(
        out.status.success(),
        "login_method.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_catalog_holds_no_secret_that_logs_in_by_itself() {
    let cluster = scratch_cluster().await;
    let admin = cluster.client().await.unwrap();
    let _ = admin
        .batch_execute("drop user if exists sr_scram; drop user if exists sr_md5")
        .await;
    admin
        .batch_execute(&format!(
            "create user sr_scram password '{PASSWORD}'; \
             set password_encryption = 'md5'; \
             create user sr_md5 password '{PASSWORD}'; \
             reset password_encryption"
        ))
        .await
        .unwrap();
    let data = cluster.root().join("data");
    let data = data.to_str().unwrap();
    let scram = python_json("secrets_at_rest.py", &[data, "sr_scram", PASSWORD]);
    assert_eq!(
        scram["stored_key"], true,
        "the StoredKey was not found: {scram}"
    );
    for leak in ["salted", "client_key", "md5", "password"] {
        assert_eq!(scram[leak], false, "sr_scram's {leak} is on disk: {scram}");
    }
    let md5 = python_json("secrets_at_rest.py", &[data, "sr_md5", PASSWORD]);
    assert_eq!(md5["stored_key"], true, "{md5}");
    assert_eq!(
        md5["md5"], true,
        "the MD5 secret asked for is missing: {md5}"
    );
    for leak in ["salted", "client_key", "password"] {
        assert_eq!(md5[leak], false, "sr_md5's {leak} is on disk: {md5}");
    }

    // A SCRAM user logs in with SCRAM only; the MD5 user with either (MD5 when the client
    // is a Redshift driver or allows nothing else).
    let port = cluster.pg_port();
    assert_eq!(login(port, "sr_scram", "scram-sha-256"), "ok sr_scram");
    let refused = login(port, "sr_scram", "md5");
    assert!(
        refused.starts_with("refused") && refused.contains("SASL"),
        "{refused}"
    );
    assert_eq!(login(port, "sr_md5", "scram-sha-256"), "ok sr_md5");
    // An unknown user gets the same challenge as a real one, and the same refusal.
    let unknown = login(port, "sr_nobody", "scram-sha-256");
    assert!(
        unknown.contains("password authentication failed for user \"sr_nobody\""),
        "{unknown}"
    );
    let wrong = {
        let out = Command::new(python())
            .arg(workspace_root().join("tests/clients/login_method.py"))
            .args([
                "127.0.0.1",
                &port.to_string(),
                "sr_scram",
                "Wrong2026pw",
                "scram-sha-256",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(
        wrong.contains("password authentication failed for user \"sr_scram\""),
        "{wrong}"
    );
    let bad = pg::expect_db_error(&admin, "set password_encryption = 'plain'")
        .await
        .unwrap();
    pg::assert_sqlstate(&bad, &["22023"], "an unknown password_encryption");
    admin
        .batch_execute("drop user sr_scram; drop user sr_md5")
        .await
        .unwrap();
}

/// A Flight SQL session of tests/clients/flight_token.py: one token, reused.
struct FlightSession {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl FlightSession {
    fn start(port: u16) -> FlightSession {
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/clients/flight_token.py"))
            .args(["127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running the venv's Python (tests/run-all.sh makes it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        FlightSession {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }
}

impl Drop for FlightSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn flight_sql_tokens_die_with_the_password_and_the_user() {
    let cluster = scratch_cluster().await;
    let admin = cluster.client().await.unwrap();
    let _ = admin.batch_execute("drop user if exists ft_user").await;
    pg::execute(
        &admin,
        &format!("create user ft_user password '{PASSWORD}'"),
    )
    .await
    .unwrap();
    let mut session = FlightSession::start(cluster.flight_sql_port());
    assert_eq!(session.send(&format!("login ft_user {PASSWORD}")), "ok");
    assert_eq!(session.send("query select 7"), "ok 7");
    // A new password (even for this user's own session) revokes the token.
    pg::execute(&admin, "alter user ft_user password 'Changed2026pw'")
        .await
        .unwrap();
    let revoked = session.send("query select 7");
    assert!(
        revoked.starts_with("unauthenticated") && revoked.contains("revoked"),
        "{revoked}"
    );
    assert!(
        session
            .send(&format!("login ft_user {PASSWORD}"))
            .starts_with("refused")
    );
    assert_eq!(session.send("login ft_user Changed2026pw"), "ok");
    assert_eq!(session.send("query select 7"), "ok 7");
    pg::execute(&admin, "drop user ft_user").await.unwrap();
    let dropped = session.send("query select 7");
    assert!(
        dropped.starts_with("unauthenticated") && dropped.contains("revoked"),
        "{dropped}"
    );
}

/// A tokio-postgres session as `user`, or the error the server gave.
async fn connect_as(
    port: u16,
    user: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(PASSWORD)
        .dbname("dev");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn refused_with(result: Result<tokio_postgres::Client, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => "admitted".to_string(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{} {}", db.code().code(), db.message()),
            None => format!("{e}"),
        },
    }
}

/// On a cluster of its own: `md5_auth = false`, Flight SQL tokens of 2 s, `max_connections
/// = 4`, `auth_failure_limit = 3`.
#[tokio::test]
async fn md5_off_short_tokens_and_connection_limits() {
    let cluster = Cluster::start_with(
        1,
        1,
        &ClusterOptions {
            env: vec![
                ("BLUESHIFT_MD5_AUTH".into(), "false".into()),
                ("BLUESHIFT_FLIGHT_SQL_TOKEN_TTL_SECS".into(), "2".into()),
                ("BLUESHIFT_MAX_CONNECTIONS".into(), "4".into()),
                ("BLUESHIFT_AUTH_FAILURE_LIMIT".into(), "3".into()),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let logs = cluster.logs_on_panic();
    let admin = cluster.client().await.unwrap();
    pg::execute(&admin, "set password_encryption = 'md5'")
        .await
        .unwrap();
    let refused = pg::expect_db_error(&admin, &format!("create user m5 password '{PASSWORD}'"))
        .await
        .unwrap();
    pg::assert_sqlstate(&refused, &["0A000"], "an MD5 secret with md5_auth = false");
    assert!(refused.message().contains("md5_auth"), "{refused:?}");
    let hashed = format!("md5{:032x}", md5_of(&format!("{PASSWORD}m5")));
    let refused = pg::expect_db_error(&admin, &format!("create user m5 password '{hashed}'"))
        .await
        .unwrap();
    pg::assert_sqlstate(
        &refused,
        &["0A000"],
        "an md5... password with md5_auth = false",
    );
    pg::execute(&admin, "reset password_encryption")
        .await
        .unwrap();
    pg::execute(&admin, &format!("create user m5 password '{PASSWORD}'"))
        .await
        .unwrap();
    let port = cluster.pg_port();
    assert_eq!(login(port, "m5", "scram-sha-256"), "ok m5");
    assert!(login(port, "m5", "md5").starts_with("refused"));

    // flight_sql_token_ttl = 2 s: a token works, then expires.
    let mut session = FlightSession::start(cluster.flight_sql_port());
    assert_eq!(session.send(&format!("login m5 {PASSWORD}")), "ok");
    assert_eq!(session.send("query select 8"), "ok 8");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let expired = session.send("query select 8");
    assert!(
        expired.starts_with("unauthenticated") && expired.contains("expired"),
        "{expired}"
    );
    assert_eq!(session.send(&format!("login m5 {PASSWORD}")), "ok");
    assert_eq!(session.send("query select 8"), "ok 8");
    drop(session);

    // CONNECTION LIMIT 1, then UNLIMITED; then max_connections = 4 (the admin's session
    // counts), with superusers' reserved places beyond it.
    pg::execute(
        &admin,
        &format!("create user cl password '{PASSWORD}' connection limit 1"),
    )
    .await
    .unwrap();
    let shown = pg::query(
        &admin,
        "select rolconnlimit from pg_roles where rolname = 'cl'",
    )
    .await
    .unwrap();
    assert_eq!(shown[0][0].as_deref(), Some("1"));
    let cl1 = connect_as(port, "cl").await.unwrap();
    let over = refused_with(connect_as(port, "cl").await);
    assert!(
        over.starts_with("53300 too many connections for role \"cl\""),
        "{over}"
    );
    pg::execute(&admin, "alter user cl connection limit unlimited")
        .await
        .unwrap();
    let cl2 = connect_as(port, "cl").await.unwrap();
    let m5 = connect_as(port, "m5").await.unwrap();
    // admin + cl1 + cl2 + m5 = 4 = max_connections.
    let full = refused_with(connect_as(port, "m5").await);
    assert!(
        full.starts_with("53300 sorry, too many clients already"),
        "{full}"
    );
    let operator = pg::connect(port).await.unwrap();
    assert_eq!(
        pg::query(&operator, "select 1").await.unwrap()[0][0].as_deref(),
        Some("1"),
        "a superuser logs in to a full cluster"
    );
    drop((cl1, cl2, m5, operator));
    // Places are given back when sessions end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match connect_as(port, "m5").await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Three wrong passwords from 127.0.0.1: the next login from there is refused, even
    // with the right password, before any password is checked.
    let watcher = connect_as(port, "cl").await.unwrap();
    for _ in 0..3 {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("m5")
            .password("Wrong2026pw")
            .dbname("dev");
        let wrong = refused_with(
            config
                .connect(tokio_postgres::NoTls)
                .await
                .map(|(client, _)| client),
        );
        assert!(wrong.starts_with("28P01"), "{wrong}");
    }
    let throttled = refused_with(connect_as(port, "m5").await);
    assert!(
        throttled.starts_with("28000 too many failed logins from 127.0.0.1"),
        "{throttled}"
    );
    let log = pg::query(
        &admin,
        "select event, username, authmethod, duration from stl_connection_log \
         where username in ('m5', 'cl') order by recordtime",
    )
    .await
    .unwrap();
    let count = |event: &str, user: &str| {
        log.iter()
            .filter(|r| r[0].as_deref() == Some(event) && r[1].as_deref() == Some(user))
            .count()
    };
    assert_eq!(count("authentication failure", "m5"), 3, "{log:?}");
    assert!(count("authenticated", "cl") >= 3, "{log:?}");
    assert!(
        log.iter()
            .any(|r| r[0].as_deref() == Some("disconnecting session")
                && r[1].as_deref() == Some("cl")
                && r[2].as_deref() == Some("scram-sha-256")
                && r[3].as_deref().is_some_and(|d| d != "0")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|r| r[1].as_deref() == Some("m5") && r[2].as_deref() == Some("flight-sql")),
        "{log:?}"
    );
    // A user sees their own rows only.
    let own = pg::query(&watcher, "select distinct username from stl_connection_log")
        .await
        .unwrap();
    assert_eq!(own, vec![vec![Some("cl".to_string())]]);
    drop(logs);
    cluster.stop().await.unwrap();
}

/// MD5 as PostgreSQL's `md5` secret is made, with Python's hashlib (not the server's code).
fn md5_of(text: &str) -> u128 {
    let out = Command::new(python())
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.md5(sys.argv[1].encode()).hexdigest())",
            text,
        ])
        .output()
        .unwrap();
    u128::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap()
}
