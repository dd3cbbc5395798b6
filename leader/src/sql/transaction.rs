//! Transaction control: `BEGIN` / `START TRANSACTION`, `COMMIT` / `END`, `ROLLBACK` /
//! `ABORT`, `SAVEPOINT`, `RELEASE [SAVEPOINT]`, `ROLLBACK TO [SAVEPOINT]`.
//!
//! Blueshift commits every statement when it completes (each DDL, COPY and INSERT is one
//! atomic catalog command), so a transaction block groups statements for the client's sake
//! (drivers and ORMs open one around everything) but cannot undo them. What it must not do
//! is pretend to: a `ROLLBACK` (or `ROLLBACK TO` a savepoint) after a statement of the block
//! changed data fails with 0A000 and says what stays committed. A rollback with nothing to
//! undo is a real rollback and succeeds.
//!
//! The block's state lives in the session settings under keys no `SET` can write.

use std::collections::HashMap;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::sql::{ident, keyword};

const IN_BLOCK: &str = "\u{0}tx";
const WRITES: &str = "\u{0}tx_writes";
/// `name=writes` pairs, oldest first, `;`-separated.
const SAVEPOINTS: &str = "\u{0}tx_savepoints";

/// A transaction-control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatement {
    Begin,
    Commit,
    Rollback,
    RollbackTo(String),
    Savepoint(String),
    Release(String),
}

/// Parses a transaction-control statement from its significant tokens.
pub fn parse(ws: &[Token]) -> Result<TxStatement> {
    let kw: Vec<String> = ws.iter().map(|t| keyword(t).unwrap_or_default()).collect();
    let name_after = |i: usize| -> Result<String> {
        let i = if kw.get(i).map(String::as_str) == Some("SAVEPOINT") {
            i + 1
        } else {
            i
        };
        ws.get(i)
            .and_then(ident)
            .ok_or_else(|| Error::sql(sqlstate::SYNTAX_ERROR, "a savepoint name is required"))
    };
    Ok(match kw.first().map(String::as_str).unwrap_or_default() {
        "BEGIN" | "START" => TxStatement::Begin,
        "COMMIT" | "END" => TxStatement::Commit,
        // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
        "ROLLBACK" | "ABORT" => match kw.iter().position(|k| k == "TO") {
            Some(at) => TxStatement::RollbackTo(name_after(at + 1)?),
            None => TxStatement::Rollback,
        },
        "SAVEPOINT" => TxStatement::Savepoint(name_after(1)?),
        "RELEASE" => TxStatement::Release(name_after(1)?),
        other => {
            return Err(Error::sql(
                sqlstate::SYNTAX_ERROR,
                format!("syntax error at or near \"{other}\""),
            ));
        }
    })
}

/// How a statement changes the session's transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxChange {
    Begin,
    End,
    /// Inside the block (SAVEPOINT, RELEASE, ROLLBACK TO).
    Within,
}

pub fn in_block(settings: &HashMap<String, String>) -> bool {
    settings.contains_key(IN_BLOCK)
}

/// Whether `key` is one of the block's internal keys (hidden from SHOW ALL and friends).
pub fn is_internal(key: &str) -> bool {
    key.starts_with('\u{0}')
}

/// Records that a statement changed data (inside a block, it can no longer be rolled back).
pub fn note_write(settings: &mut HashMap<String, String>) {
    if in_block(settings) {
        let n = writes(settings) + 1;
        settings.insert(WRITES.to_string(), n.to_string());
    }
}

fn writes(settings: &HashMap<String, String>) -> u64 {
    settings
        .get(WRITES)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn savepoints(settings: &HashMap<String, String>) -> Vec<(String, u64)> {
    settings
        .get(SAVEPOINTS)
        .map(|v| {
            v.split(';')
                .filter_map(|p| p.split_once('='))
                .map(|(n, w)| (n.to_string(), w.parse().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn set_savepoints(settings: &mut HashMap<String, String>, sps: &[(String, u64)]) {
    let v = sps
        .iter()
        .map(|(n, w)| format!("{n}={w}"))
        .collect::<Vec<_>>()
        .join(";");
    settings.insert(SAVEPOINTS.to_string(), v);
}

fn end_block(settings: &mut HashMap<String, String>) {
    settings.remove(IN_BLOCK);
    settings.remove(WRITES);
    settings.remove(SAVEPOINTS);
}

fn cannot_undo(n: u64, what: &str) -> Error {
    Error::sql(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "{what} cannot undo the {n} statement(s) of this transaction that changed data: \
             Blueshift commits each statement when it completes, and they stay committed"
        ),
    )
}

/// Runs a transaction-control statement; returns its command tag and what it does to the
/// block.
pub fn execute(
    statement: &TxStatement,
    settings: &mut HashMap<String, String>,
) -> Result<(&'static str, TxChange)> {
    match statement {
        TxStatement::Begin => {
            settings.insert(IN_BLOCK.to_string(), "on".to_string());
            Ok(("BEGIN", TxChange::Begin))
        }
        TxStatement::Commit => {
            end_block(settings);
            Ok(("COMMIT", TxChange::End))
        }
        TxStatement::RollbackTo(name) => {
            let mut sps = savepoints(settings);
            let Some(pos) = sps.iter().rposition(|(n, _)| n == name) else {
                return Err(Error::sql(
                    sqlstate::INVALID_SAVEPOINT,
                    format!("savepoint \"{name}\" does not exist"),
                ));
            };
            let since = writes(settings) - sps[pos].1;
            if since > 0 {
                return Err(cannot_undo(since, "ROLLBACK TO SAVEPOINT"));
            }
            sps.truncate(pos + 1);
            set_savepoints(settings, &sps);
            Ok(("ROLLBACK", TxChange::Within))
        }
        TxStatement::Rollback => {
            let n = writes(settings);
            end_block(settings);
            if n > 0 {
                return Err(cannot_undo(n, "ROLLBACK"));
            }
            Ok(("ROLLBACK", TxChange::End))
        }
        TxStatement::Savepoint(name) => {
            if !in_block(settings) {
                return Err(Error::sql(
                    sqlstate::NO_ACTIVE_TRANSACTION,
                    "SAVEPOINT can only be used in transaction blocks",
                ));
            }
            let mut sps = savepoints(settings);
            sps.push((name.clone(), writes(settings)));
            set_savepoints(settings, &sps);
            Ok(("SAVEPOINT", TxChange::Within))
        }
        TxStatement::Release(name) => {
            let mut sps = savepoints(settings);
            let Some(pos) = sps.iter().rposition(|(n, _)| n == name) else {
                return Err(Error::sql(
                    sqlstate::INVALID_SAVEPOINT,
                    format!("savepoint \"{name}\" does not exist"),
                ));
            };
            sps.truncate(pos);
            set_savepoints(settings, &sps);
            Ok(("RELEASE", TxChange::Within))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(sql: &str, s: &mut HashMap<String, String>) -> Result<(&'static str, TxChange)> {
        super::execute(&parse(&crate::sql::words(sql)?)?, s)
    }

    #[test]
    fn a_rollback_with_nothing_to_undo_succeeds() {
        let mut s = HashMap::new();
        assert_eq!(
            execute("begin", &mut s).unwrap(),
            ("BEGIN", TxChange::Begin)
        );
        assert_eq!(execute("savepoint a", &mut s).unwrap().0, "SAVEPOINT");
        assert_eq!(
            execute("rollback to savepoint a", &mut s).unwrap(),
            ("ROLLBACK", TxChange::Within)
        );
        assert_eq!(execute("release a", &mut s).unwrap().0, "RELEASE");
        assert_eq!(
            execute("rollback", &mut s).unwrap(),
            ("ROLLBACK", TxChange::End)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_rollback_after_a_write_fails_and_says_so() {
        let mut s = HashMap::new();
        execute("begin", &mut s).unwrap();
        execute("savepoint a", &mut s).unwrap();
        note_write(&mut s);
        let e = execute("rollback to a", &mut s).unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        let e = execute("rollback", &mut s).unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        assert!(
            e.user_message().contains("stay committed"),
            "{}",
            e.user_message()
        );
        assert!(!in_block(&s), "the block ends anyway");
    }

    #[test]
    fn writes_outside_a_block_are_not_counted() {
        let mut s = HashMap::new();
        note_write(&mut s);
        assert_eq!(execute("rollback", &mut s).unwrap().0, "ROLLBACK");
        let e = execute("release nope", &mut s).unwrap_err();
        assert_eq!(e.sqlstate(), "3B001");
    }
}
