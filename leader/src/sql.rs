//! SQL: the statement front end ([`statement`]: a query string tokenized and parsed once
//! into typed statements) and, per statement family, its parser and helpers. Queries and
//! INSERT are planned by DataFusion from sqlparser's AST.
//!
//! * [`statement`]: the front end: statements, their text, parsing.
//! * [`names`]: relation and schema names, the search path.
//! * [`schemas`]: `CREATE` / `DROP SCHEMA`.
//! * [`views`]: `CREATE [OR REPLACE] VIEW`, late binding.
//! * [`ddl`]: `CREATE TABLE` with `DISTSTYLE` / `DISTKEY` / `[COMPOUND] SORTKEY`, `ALTER TABLE`,
//!   `DROP TABLE | VIEW`.
//! * [`copy_out`]: `COPY { table | (query) } TO STDOUT`.
//! * [`copy`]: `COPY table FROM 'path' [options]`.
//! * [`show`]: Redshift's `SHOW DATABASES | SCHEMAS | TABLES | COLUMNS`.
//! * [`settings`]: `SET` / `RESET` / `SHOW` of a setting.
//! * [`compat`]: PostgreSQL syntax from client tools, rewritten (on the AST) for DataFusion.
//! * [`scalar_subquery`]: correlated scalar subqueries in forms DataFusion decorrelates.
//! * [`transaction`]: BEGIN / COMMIT / ROLLBACK / SAVEPOINT over statements that each commit.
//! * [`users`]: CREATE / ALTER / DROP USER.
//! * [`cluster`]: `ALTER CLUSTER REMOVE REPLICA n` (the leader replicas).
//! * [`cursor`]: DECLARE / FETCH / CLOSE.
//! * [`guard`]: queries the engine would answer wrongly, refused with 0A000.

pub mod cluster;
pub mod comment;
pub mod compat;
pub mod copy;
pub mod copy_out;
pub mod cursor;
pub mod ddl;
pub mod grant;
pub mod guard;
pub mod names;
pub mod scalar_subquery;
pub mod schemas;
pub mod settings;
pub mod show;
pub mod statement;
pub mod transaction;
pub mod users;
pub mod views;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
pub use datafusion::sql::sqlparser::tokenizer::Token;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;

use crate::error::{Error, Result};
use blueshift_common::error::sqlstate;

/// The tokens of SQL text, whitespace and comments included: for the `blueshift sql` client,
/// which reads statements as they are typed (the server parses with [`statement::parse`]).
pub fn tokenize(sql: &str) -> Result<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::sql(sqlstate::SYNTAX_ERROR, format!("syntax error: {e}")))
}

pub fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Tokens without whitespace and comments (for tests, which parse one family's statement
/// directly).
#[cfg(test)]
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
