//! The SQL front end: splitting a query string into statements, recognising the statements
//! Blueshift handles itself (Redshift DDL, COPY), and parsing them. Everything else
//! (SELECT, INSERT, EXPLAIN, ...) is planned by DataFusion.
//!
//! * [`ddl`]: `CREATE TABLE` with `DISTSTYLE` / `DISTKEY` / `[COMPOUND] SORTKEY`, `DROP TABLE`.
//! * [`copy_out`]: `COPY { table | (query) } TO STDOUT`.
//! * [`copy`]: `COPY table FROM 'path' [options]`.
//! * [`show`]: Redshift's `SHOW DATABASES | SCHEMAS | TABLES | COLUMNS`.
//! * [`compat`]: PostgreSQL syntax from client tools, rewritten for DataFusion.
//! * [`scalar_subquery`]: correlated scalar subqueries in forms DataFusion decorrelates.
//! * [`transaction`]: BEGIN / COMMIT / ROLLBACK / SAVEPOINT over statements that each commit.
//! * [`users`]: CREATE / ALTER / DROP USER.
//! * [`cursor`]: DECLARE / FETCH / CLOSE.
//! * [`guard`]: queries the engine would answer wrongly, refused with 0A000.

pub mod compat;
pub mod copy;
pub mod copy_out;
pub mod cursor;
pub mod ddl;
pub mod guard;
pub mod scalar_subquery;
pub mod show;
pub mod transaction;
pub mod users;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
pub use datafusion::sql::sqlparser::tokenizer::Token;
use datafusion::sql::sqlparser::tokenizer::{Tokenizer, Whitespace};

use crate::error::{Error, Result};
use blueshift_common::error::sqlstate;

pub fn tokenize(sql: &str) -> Result<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::sql(sqlstate::SYNTAX_ERROR, format!("syntax error: {e}")))
}

/// Splits a query string into statements at top-level semicolons, dropping empty ones.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = tokenize(sql)?;
    let mut out = Vec::new();
    let mut current = String::new();
    for t in tokens {
        if t == Token::SemiColon {
            push_statement(&mut out, &mut current);
        } else {
            current.push_str(&t.to_string());
        }
    }
    push_statement(&mut out, &mut current);
    Ok(out)
}

fn push_statement(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() && !is_only_comments(s) {
        out.push(s.to_string());
    }
    current.clear();
}

fn is_only_comments(s: &str) -> bool {
    tokenize(s)
        .map(|ts| ts.iter().all(is_blank))
        .unwrap_or(false)
}

pub fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Tokens without whitespace and comments.
pub fn words(sql: &str) -> Result<Vec<Token>> {
    Ok(tokenize(sql)?
        .into_iter()
        .filter(|t| !is_blank(t))
        .collect())
}

/// Upper-cased keyword of a word token (unquoted words only).
pub fn keyword(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// An identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub fn ident(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// What kind of statement a string is, by its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    CreateTable,
    DropTable,
    Copy,
    Insert,
    Query,
    Explain,
    Set,
    Show,
    Transaction,
    User,
    Other,
}

pub fn classify(sql: &str) -> Result<StatementKind> {
    let ws = words(sql)?;
    let k0 = ws.first().and_then(keyword).unwrap_or_default();
    let k1 = ws.get(1).and_then(keyword).unwrap_or_default();
    let k2 = ws.get(2).and_then(keyword).unwrap_or_default();
    Ok(match k0.as_str() {
        "CREATE" if k1 == "TABLE" => StatementKind::CreateTable,
        "CREATE" if matches!(k1.as_str(), "TEMP" | "TEMPORARY") && k2 == "TABLE" => {
            StatementKind::CreateTable
        }
        "DROP" if k1 == "TABLE" => StatementKind::DropTable,
        "CREATE" | "ALTER" | "DROP" if k1 == "USER" => StatementKind::User,
        "COPY" => StatementKind::Copy,
        "INSERT" => StatementKind::Insert,
        "SELECT" | "WITH" | "VALUES" | "TABLE" => StatementKind::Query,
        "" if matches!(ws.first(), Some(Token::LParen)) => StatementKind::Query,
        "EXPLAIN" => StatementKind::Explain,
        "SET" | "RESET" => StatementKind::Set,
        "SHOW" => StatementKind::Show,
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" => {
            StatementKind::Transaction
        }
        _ => StatementKind::Other,
    })
}

/// Joins tokens back into SQL text.
pub fn untokenize(tokens: &[Token]) -> String {
    let mut s = String::new();
    for t in tokens {
        s.push_str(&t.to_string());
    }
    s
}

/// A single space token, for rebuilding statements from filtered tokens.
pub fn space() -> Token {
    Token::Whitespace(Whitespace::Space)
}

/// Joins significant tokens back into SQL text with single spaces.
pub fn untokenize_words(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let s = split_statements("select 1; select ';' ; -- c\n ;").unwrap();
        assert_eq!(s, vec!["select 1", "select ';'"]);
    }

    #[test]
    fn classifies_statements() {
        assert_eq!(
            classify("  create table t (a int)").unwrap(),
            StatementKind::CreateTable
        );
        assert_eq!(classify("COPY t FROM '/x'").unwrap(), StatementKind::Copy);
        assert_eq!(classify("(select 1)").unwrap(), StatementKind::Query);
        assert_eq!(
            classify("explain select 1").unwrap(),
            StatementKind::Explain
        );
    }
}
