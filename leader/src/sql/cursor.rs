//! Cursor statements (Tableau and psql's `FETCH_COUNT` use them):
//!
//! ```text
//! DECLARE name [ASENSITIVE | INSENSITIVE] [NO SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query
//! FETCH [NEXT | FORWARD | count | FORWARD count | ALL | FORWARD ALL] [FROM | IN] name
//! CLOSE { name | ALL }
//! ```
//!
//! Cursors only move forward: `SCROLL`, `BINARY`, `PRIOR`, `ABSOLUTE` and friends are refused
//! with 0A000. This module parses; the session keeps the open cursors
//! ([`crate::pgwire`]).

use datafusion::sql::sqlparser::tokenizer::Token;

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};
use crate::sql::statement::{Ast, parse_ast};
use crate::sql::{ident, keyword};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorStatement {
    Declare {
        name: String,
        hold: bool,
        query: Box<Ast>,
    },
    /// `count` rows, or all that are left.
    Fetch { name: String, count: Option<u64> },
    /// One cursor, or all (`CLOSE ALL`).
    Close { name: Option<String> },
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

fn unsupported(what: &str) -> Error {
    Error::sql(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{what} is not supported: cursors only move forward"),
    )
}

/// Parses DECLARE / FETCH / CLOSE (and refuses MOVE) from the statement's significant
/// tokens.
pub fn parse_cursor_statement(all: &[Token]) -> Result<CursorStatement> {
    let significant: Vec<(usize, &Token)> = all.iter().enumerate().collect();
    let kw = |i: usize| {
        significant
            .get(i)
            .and_then(|(_, t)| keyword(t))
            .unwrap_or_default()
    };
    match kw(0).as_str() {
        "DECLARE" => {
            let name = significant
                .get(1)
                .and_then(|(_, t)| ident(t))
                .ok_or_else(|| syntax("DECLARE needs a cursor name"))?;
            let mut i = 2;
            let mut hold = false;
            loop {
                match kw(i).as_str() {
                    "ASENSITIVE" | "INSENSITIVE" => i += 1,
                    "NO" if kw(i + 1) == "SCROLL" => i += 2,
                    "SCROLL" => return Err(unsupported("SCROLL")),
                    "BINARY" => return Err(unsupported("a BINARY cursor")),
                    "CURSOR" => {
                        i += 1;
                        break;
                    }
                    _ => return Err(syntax("DECLARE needs CURSOR")),
                }
            }
            if matches!(kw(i).as_str(), "WITH" | "WITHOUT") && kw(i + 1) == "HOLD" {
                hold = kw(i) == "WITH";
                i += 2;
            }
            if kw(i) != "FOR" {
                return Err(syntax("DECLARE ... CURSOR needs FOR query"));
            }
            let start = significant
                .get(i + 1)
                .map(|(at, _)| *at)
                .ok_or_else(|| syntax("DECLARE ... CURSOR FOR needs a query"))?;
            let query = parse_ast(all[start..].to_vec())?;
            if !matches!(query, Ast::Query(_)) {
                return Err(Error::sql(
                    sqlstate::INVALID_CURSOR_DEFINITION,
                    "DECLARE CURSOR needs a query that returns rows",
                ));
            }
            Ok(CursorStatement::Declare {
                name,
                hold,
                query: Box::new(query),
            })
        }
        "FETCH" => {
            let mut i = 1;
            let mut count = Some(1);
            match kw(i).as_str() {
                "NEXT" => i += 1,
                "ALL" => (count, i) = (None, i + 1),
                "FORWARD" => {
                    i += 1;
                    match significant.get(i).map(|(_, t)| *t) {
                        Some(Token::Number(n, _)) => {
                            count = Some(n.parse().map_err(|_| syntax("bad FETCH count"))?);
                            i += 1;
                        }
                        Some(t) if keyword(t).as_deref() == Some("ALL") => {
                            count = None;
                            i += 1;
                        }
                        _ => {}
                    }
                }
                "PRIOR" | "FIRST" | "LAST" | "ABSOLUTE" | "RELATIVE" | "BACKWARD" => {
                    return Err(unsupported(&format!("FETCH {}", kw(i))));
                }
                _ => {
                    if let Some((_, Token::Number(n, _))) = significant.get(i) {
                        count = Some(n.parse().map_err(|_| syntax("bad FETCH count"))?);
                        i += 1;
                    }
                }
            }
            if matches!(kw(i).as_str(), "FROM" | "IN") {
                i += 1;
            }
            let name = significant
                .get(i)
                .and_then(|(_, t)| ident(t))
                .ok_or_else(|| syntax("FETCH needs a cursor name"))?;
            Ok(CursorStatement::Fetch { name, count })
        }
        "CLOSE" => {
            if kw(1) == "ALL" {
                return Ok(CursorStatement::Close { name: None });
            }
            let name = significant
                .get(1)
                .and_then(|(_, t)| ident(t))
                .ok_or_else(|| syntax("CLOSE needs a cursor name or ALL"))?;
            Ok(CursorStatement::Close { name: Some(name) })
        }
        "MOVE" => Err(unsupported("MOVE")),
        other => Err(syntax(format!("syntax error at or near \"{other}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_cursor_statement(sql: &str) -> Result<Option<CursorStatement>> {
        let ws = crate::sql::words(sql)?;
        if !matches!(
            ws.first().and_then(keyword).as_deref(),
            Some("DECLARE" | "FETCH" | "CLOSE" | "MOVE")
        ) {
            return Ok(None);
        }
        super::parse_cursor_statement(&ws).map(Some)
    }

    #[test]
    fn parses_declare_fetch_close() {
        assert_eq!(
            parse_cursor_statement(
                "declare C1 no scroll cursor with hold for select a from t where b = 'x;y'"
            )
            .unwrap()
            .unwrap(),
            CursorStatement::Declare {
                name: "c1".into(),
                hold: true,
                query: Box::new(
                    crate::sql::statement::parse_ast(
                        crate::sql::words("select a from t where b = 'x;y'").unwrap()
                    )
                    .unwrap()
                ),
            }
        );
        for (sql, count) in [
            ("fetch c1", Some(1)),
            ("fetch next from c1", Some(1)),
            ("fetch 5 in c1", Some(5)),
            ("fetch forward 7 from c1", Some(7)),
            ("fetch all from c1", None),
            ("fetch forward all c1", None),
        ] {
            assert_eq!(
                parse_cursor_statement(sql).unwrap().unwrap(),
                CursorStatement::Fetch {
                    name: "c1".into(),
                    count
                },
                "{sql}"
            );
        }
        assert_eq!(
            parse_cursor_statement("close all").unwrap().unwrap(),
            CursorStatement::Close { name: None }
        );
        assert_eq!(parse_cursor_statement("select 1").unwrap(), None);
    }

    #[test]
    fn backward_motion_is_refused() {
        for sql in [
            "declare c scroll cursor for select 1",
            "fetch prior from c",
            "move 1 in c",
        ] {
            assert_eq!(
                parse_cursor_statement(sql).unwrap_err().sqlstate(),
                "0A000",
                "{sql}"
            );
        }
    }
}
