//! sqllogictest glue: [`PgSlt`], an [`AsyncDB`] over one tokio-postgres connection using the
//! simple query protocol (every value arrives as text), and the rendering rules shared with
//! the DuckDB oracle check ([`render_cell`], [`sorted_lines`]).
//!
//! Values are rendered as sqllogictest expects them: SQL NULL as `NULL`, the empty string as
//! `(empty)`, everything else as the server's text. The simple query protocol carries no
//! column types, so every column is reported as [`DefaultColumnType::Any`]; the type letters
//! in the `.slt` files document intent and are not checked.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, SortMode};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::Rows;
use crate::compare::canonical_line_order;
use crate::pg::{self, QUERY_TIMEOUT};

/// The engine name, usable as a label in `skipif` / `onlyif` records.
pub const ENGINE_NAME: &str = "blueshift";

/// A sqllogictest database: one connection to a cluster's leader.
pub struct PgSlt {
    client: Client,
}

impl PgSlt {
    /// Connects to the leader on `127.0.0.1:port`.
    pub async fn connect(port: u16) -> Result<PgSlt, SltError> {
        pg::connect(port)
            .await
            .map(|client| PgSlt { client })
            .map_err(|e| SltError {
                message: format!("{e:#}"),
                sqlstate: None,
            })
    }
}

/// An error from the server (with its SQLSTATE) or the connection.
#[derive(Debug)]
pub struct SltError {
    message: String,
    sqlstate: Option<String>,
}

impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SltError {}

impl From<tokio_postgres::Error> for SltError {
    fn from(e: tokio_postgres::Error) -> Self {
        SltError {
            message: pg::describe(&e),
            sqlstate: e.code().map(|c| c.code().to_owned()),
        }
    }
}

#[async_trait]
impl AsyncDB for PgSlt {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let messages = tokio::time::timeout(QUERY_TIMEOUT, self.client.simple_query(sql))
            .await
            .map_err(|_| SltError {
                message: format!("no answer within {QUERY_TIMEOUT:?}"),
                sqlstate: None,
            })??;
        let mut columns = None;
        let mut rows = Vec::new();
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(cols) => columns = Some(cols.len()),
                SimpleQueryMessage::Row(row) => {
                    columns.get_or_insert(row.len());
                    rows.push((0..row.len()).map(|i| render_cell(row.get(i))).collect());
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        ENGINE_NAME
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        err.sqlstate.clone()
    }
}

/// Renders one value the way sqllogictest files spell it.
pub fn render_cell(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some("") => "(empty)".to_owned(),
        Some(s) => s.to_owned(),
    }
}

/// Renders a result set as sqllogictest result lines, exactly as the runner compares them:
/// cells rendered with [`render_cell`], sorted per `sort_mode` (rows for `rowsort`, single
/// values for `valuesort`), one value per line if `value_wise`, cells joined by single
/// spaces and whitespace collapsed (sqllogictest's default normalizer).
pub fn result_lines(rows: &Rows, sort_mode: Option<SortMode>, value_wise: bool) -> Vec<String> {
    let mut rendered: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| render_cell(c.as_deref())).collect())
        .collect();
    match sort_mode {
        None | Some(SortMode::NoSort) => {}
        Some(SortMode::RowSort) => rendered.sort_unstable(),
        Some(SortMode::ValueSort) => {
            rendered = rendered.into_iter().flatten().map(|v| vec![v]).collect();
            rendered.sort_unstable();
        }
    }
    if value_wise {
        rendered = rendered.into_iter().flatten().map(|v| vec![v]).collect();
    }
    rendered
        .iter()
        .map(|row| normalize(&row.join(" ")))
        .collect()
}

/// sqllogictest's default normalizer: trim and collapse runs of whitespace.
pub fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sorts result lines by value (see [`canonical_line_order`]) for comparing unordered
/// results of two engines.
pub fn sorted_lines(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_by(|a, b| canonical_line_order(a, b));
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_sqllogictest() {
        let rows: Rows = vec![
            vec![Some("b".into()), None],
            vec![Some("a".into()), Some("".into())],
        ];
        assert_eq!(result_lines(&rows, None, false), ["b NULL", "a (empty)"]);
        assert_eq!(
            result_lines(&rows, Some(SortMode::RowSort), false),
            ["a (empty)", "b NULL"]
        );
        assert_eq!(
            result_lines(&rows, Some(SortMode::ValueSort), false),
            ["(empty)", "NULL", "a", "b"]
        );
        assert_eq!(normalize("  a   b "), "a b");
    }
}
