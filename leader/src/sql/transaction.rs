//! Transaction control statements: `BEGIN` / `START TRANSACTION`, `COMMIT` / `END`,
//! `ROLLBACK` / `ABORT`, `SAVEPOINT`, `RELEASE [SAVEPOINT]`, `ROLLBACK TO [SAVEPOINT]`:
//! parsing, and the block's mark in the session settings (which cursors read: `DECLARE`
//! without `WITH HOLD` needs a block). The block itself (its snapshot and its commands) is
//! `session::tx`.

use std::collections::HashMap;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::sql::{ident, keyword};

const IN_BLOCK: &str = "\u{0}tx";
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

/// What a transaction-control statement does to the session's block, recorded in its
/// settings.
pub fn execute(statement: &TxStatement, settings: &mut HashMap<String, String>) -> TxChange {
    match statement {
        TxStatement::Begin => {
            settings.insert(IN_BLOCK.to_string(), "on".to_string());
            TxChange::Begin
        }
        TxStatement::Commit | TxStatement::Rollback => {
            settings.remove(IN_BLOCK);
            TxChange::End
        }
        TxStatement::RollbackTo(_) | TxStatement::Savepoint(_) | TxStatement::Release(_) => {
            TxChange::Within
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_statements() {
        let p = |sql: &str| parse(&crate::sql::words(sql).unwrap()).unwrap();
        assert_eq!(p("start transaction"), TxStatement::Begin);
        assert_eq!(p("end"), TxStatement::Commit);
        assert_eq!(p("abort"), TxStatement::Rollback);
        assert_eq!(
            p("rollback work to savepoint A"),
            TxStatement::RollbackTo("a".into())
        );
        assert_eq!(p("release x"), TxStatement::Release("x".into()));
        let mut s = HashMap::new();
        assert_eq!(execute(&TxStatement::Begin, &mut s), TxChange::Begin);
        assert!(in_block(&s));
        assert_eq!(execute(&TxStatement::Rollback, &mut s), TxChange::End);
        assert!(!in_block(&s));
    }
}
