//! The per-query memory limit: how much memory one query's operators (hash joins, sorts,
//! aggregations) may hold on each compute node. Sorts and aggregations spill to disk past it;
//! a query that still does not fit fails with SQLSTATE 53200 instead of the node running
//! out of memory. The cluster default comes from the leader's config
//! (`query_memory_limit`, `--query-memory-limit`), a session changes it with
//! `SET query_memory_limit = '512MB'` (`0` for no limit).
//!
//! The statement's limit travels to the planner as a task-local ([`QUERY_MEMORY_LIMIT`]) set
//! around each statement, so plan nodes need not carry session state.

use blueshift_common::Error;
use blueshift_common::error::sqlstate;

/// The setting name.
pub const SETTING: &str = "query_memory_limit";

/// Default when neither the config nor the session sets one: 4 GiB per node.
pub const DEFAULT_QUERY_MEMORY_LIMIT: u64 = 4 << 30;

tokio::task_local! {
    /// The memory limit (bytes per node, 0 = none) of the statement running on this task.
    pub static QUERY_MEMORY_LIMIT: u64;
}

/// The limit in effect for the current statement.
pub fn current() -> u64 {
    QUERY_MEMORY_LIMIT
        .try_with(|l| *l)
        .unwrap_or(DEFAULT_QUERY_MEMORY_LIMIT)
}

/// Parses a size: bytes, or a number with `kB`, `MB`, `GB` or `TB` (powers of 1024, as in
/// PostgreSQL settings; case-insensitive, `B` optional).
pub fn parse_bytes(value: &str) -> Result<u64, Error> {
    parse_size(SETTING, value)
}

/// [`parse_bytes`] for the setting `name` (named in the error).
pub fn parse_size(name: &str, value: &str) -> Result<u64, Error> {
    let bad = || {
        Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{value}\" (use e.g. '512MB')"),
        )
    };
    let (n, unit) = number_and_unit(value).ok_or_else(bad)?;
    let scale: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Splits a setting value such as `'512 MB'` or `1.5s` into its number and its unit
/// (lower-cased, possibly empty). `None` when it does not start with a number.
pub fn number_and_unit(value: &str) -> Option<(f64, String)> {
    let v = value.trim().trim_matches('\'').trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some((n, unit.trim().to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("'64MB'").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("2 GB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[tokio::test]
    async fn the_statement_limit_is_task_local() {
        assert_eq!(current(), DEFAULT_QUERY_MEMORY_LIMIT);
        let seen = QUERY_MEMORY_LIMIT.scope(7, async { current() }).await;
        assert_eq!(seen, 7);
    }
}
