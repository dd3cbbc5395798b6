//! PostgreSQL-protocol helpers over `tokio-postgres`: connect to a cluster's leader, run SQL
//! with the simple query protocol and get text rows back, and capture server errors with
//! their SQLSTATE.
//!
//! Every call is bounded by [`QUERY_TIMEOUT`], so a hung server fails the test instead of
//! hanging it.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::Rows;

/// Upper bound for one statement (a COPY of TPC-H SF 0.01 takes seconds).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Connects to the leader on `127.0.0.1:port` as user `blueshift`, database `dev`, and
/// drives the connection on the current tokio runtime.
pub async fn connect(port: u16) -> Result<Client> {
    connect_to("127.0.0.1", port, None).await
}

/// Connects to the leader at `host:port` as user `blueshift`, database `dev`, with
/// `password` if given (a login from another host needs one).
pub async fn connect_to(host: &str, port: u16, password: Option<&str>) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user("blueshift")
        .dbname("dev")
        .connect_timeout(Duration::from_secs(30));
    if let Some(p) = password {
        config.password(p);
    }
    let (client, connection) = tokio::time::timeout(QUERY_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| anyhow!("timed out connecting to {host}:{port}"))?
        .map_err(|e| anyhow!("connecting to {host}:{port}: {}", describe(&e)))?;
    let peer = format!("{host}:{port}");
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection to {peer} ended: {}", describe(&e));
        }
    });
    Ok(client)
}

/// Runs `sql` (one statement) with the simple query protocol and returns its rows as text
/// (SQL NULL as `None`). A statement without a result set returns no rows.
pub async fn query(client: &Client, sql: &str) -> Result<Rows> {
    let messages = simple(client, sql)
        .await?
        .map_err(|e| anyhow!("{}\n  in: {sql}", describe(&e)))?;
    Ok(rows_of(&messages))
}

/// Runs `sql` and returns the count of its command tag (`INSERT 0 n`, `COPY n`, ...).
pub async fn execute(client: &Client, sql: &str) -> Result<u64> {
    let messages = simple(client, sql)
        .await?
        .map_err(|e| anyhow!("{}\n  in: {sql}", describe(&e)))?;
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no CommandComplete for: {sql}"))
}

/// Runs a query expected to return exactly one value and returns it as text.
pub async fn query_one_value(client: &Client, sql: &str) -> Result<Option<String>> {
    let rows = query(client, sql).await?;
    match rows.as_slice() {
        [row] if row.len() == 1 => Ok(row[0].clone()),
        _ => bail!("expected one row with one column, got {rows:?}\n  in: {sql}"),
    }
}

/// Runs a query expected to return a single integer (e.g. `select count(*) ...`).
pub async fn query_i64(client: &Client, sql: &str) -> Result<i64> {
    let value = query_one_value(client, sql)
        .await?
        .ok_or_else(|| anyhow!("got NULL\n  in: {sql}"))?;
    value
        .trim()
        .parse()
        .with_context(|| format!("not an integer: {value:?}\n  in: {sql}"))
}

/// Runs `sql`, which must fail with a server error, and returns that error. Fails if the
/// statement succeeds or the failure is not a server error (e.g. a dropped connection).
pub async fn expect_db_error(client: &Client, sql: &str) -> Result<DbError> {
    match simple(client, sql).await? {
        Ok(messages) => bail!(
            "expected an error, but it succeeded with {:?}\n  in: {sql}",
            rows_of(&messages)
        ),
        Err(e) => match e.as_db_error() {
            Some(db) => Ok(db.clone()),
            None => bail!(
                "expected a server error, got: {}\n  in: {sql}",
                describe(&e)
            ),
        },
    }
}

/// Asserts that `err` has one of the SQLSTATEs in `codes`, with a readable message.
pub fn assert_sqlstate(err: &DbError, codes: &[&str], context: &str) {
    assert!(
        codes.contains(&err.code().code()),
        "{context}: expected SQLSTATE {}, got {}: {}",
        codes.join(" or "),
        err.code().code(),
        err.message()
    );
}

/// A one-line description of a client error, with SQLSTATE, message, detail and hint for
/// server errors (`tokio_postgres::Error`'s Display only says "db error").
pub fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!(" (hint: {hint})"));
            }
            s
        }
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

async fn simple(
    client: &Client,
    sql: &str,
) -> Result<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> {
    tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(sql))
        .await
        .map_err(|_| anyhow!("no answer within {QUERY_TIMEOUT:?}\n  in: {sql}"))
}

fn rows_of(messages: &[SimpleQueryMessage]) -> Rows {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
