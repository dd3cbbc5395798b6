//! Redshift's metadata commands, which `redshift_connector` and other Redshift tools use to
//! browse a cluster: `SHOW DATABASES`, `SHOW SCHEMAS FROM DATABASE d`,
//! `SHOW TABLES FROM SCHEMA d.s`, `SHOW COLUMNS FROM TABLE d.s.t`, each with an optional
//! `LIKE 'pattern'` and `LIMIT n`. Parsing only; the rows come from the catalog
//! ([`crate::session`]). Any other `SHOW x` is a setting.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{ident, keyword};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowObjects {
    Databases,
    Schemas {
        database: String,
    },
    Tables {
        database: String,
        schema: String,
    },
    Columns {
        database: String,
        schema: String,
        table: String,
    },
}

impl ShowObjects {
    /// The result columns, as Redshift names them: `(name, integer?)` (others are text).
    pub fn columns(&self) -> &'static [(&'static str, bool)] {
        match self {
            ShowObjects::Databases => &[
                ("database_name", false),
                ("database_owner", false),
                ("database_type", false),
                ("database_acl", false),
                ("parameters", false),
                ("database_isolation_level", false),
            ],
            ShowObjects::Schemas { .. } => &[
                ("database_name", false),
                ("schema_name", false),
                ("schema_owner", false),
                ("schema_type", false),
                ("schema_acl", false),
                ("source_database", false),
                ("schema_option", false),
            ],
            ShowObjects::Tables { .. } => &[
                ("database_name", false),
                ("schema_name", false),
                ("table_name", false),
                ("table_type", false),
                ("table_acl", false),
                ("remarks", false),
                ("owner", false),
                ("last_altered_time", false),
                ("last_modified_time", false),
                ("dist_style", false),
                ("table_subtype", false),
            ],
            ShowObjects::Columns { .. } => &[
                ("database_name", false),
                ("schema_name", false),
                ("table_name", false),
                ("column_name", false),
                ("ordinal_position", true),
                ("column_default", false),
                ("is_nullable", false),
                ("data_type", false),
                ("character_maximum_length", true),
                ("numeric_precision", true),
                ("numeric_scale", true),
                ("remarks", false),
                ("sort_key_type", false),
                ("sort_key", true),
                ("dist_key", true),
                ("encoding", false),
                ("collation", false),
            ],
        }
    }
}

/// The Arrow schema of a listing with `columns`.
pub fn result_schema(columns: &[(&str, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, int)| {
                Field::new(
                    *n,
                    if *int {
                        DataType::Int32
                    } else {
                        DataType::Utf8
                    },
                    true,
                )
            })
            .collect::<Vec<_>>(),
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowCommand {
    pub objects: ShowObjects,
    /// SQL `LIKE` pattern on the listed names (case-sensitive, `%` and `_`).
    pub like: Option<String>,
    pub limit: Option<usize>,
    /// Bind parameters (`SHOW TABLES FROM SCHEMA $1.$2 LIKE $3`, as `redshift_connector`
    /// sends it): which value takes which parameter's value.
    parameters: Vec<(Slot, usize)>,
}

/// A value of a SHOW that a bind parameter gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The n-th part of the dotted name.
    Name(usize),
    Like,
}

impl ShowCommand {
    /// How many bind parameters the statement takes.
    pub fn parameter_count(&self) -> usize {
        self.parameters.iter().map(|(_, n)| *n).max().unwrap_or(0)
    }

    /// The command with its parameters' values: a parameter is a name, exactly as given (no
    /// case folding), or after `LIKE` the pattern.
    pub fn bind(&self, values: &[String]) -> Result<ShowCommand> {
        let mut cmd = self.clone();
        for (slot, n) in std::mem::take(&mut cmd.parameters) {
            let value = values
                .get(n.wrapping_sub(1))
                .cloned()
                .ok_or_else(|| syntax(format!("no value for parameter ${n}")))?;
            match slot {
                Slot::Like => cmd.like = Some(value),
                Slot::Name(i) => {
                    let parts: Vec<&mut String> = match &mut cmd.objects {
                        ShowObjects::Databases => vec![],
                        ShowObjects::Schemas { database } => vec![database],
                        ShowObjects::Tables { database, schema } => vec![database, schema],
                        ShowObjects::Columns {
                            database,
                            schema,
                            table,
                        } => vec![database, schema, table],
                    };
                    if let Some(part) = parts.into_iter().nth(i) {
                        *part = value;
                    }
                }
            }
        }
        Ok(cmd)
    }
}

/// The number of a `$n` parameter token.
fn parameter(t: &Token) -> Result<Option<usize>> {
    match t {
        Token::Placeholder(p) => p
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| syntax(format!("unexpected parameter {p}"))),
        _ => Ok(None),
    }
}

/// Parses a Redshift metadata `SHOW` from its significant tokens; `Ok(None)` when it is a
/// `SHOW` of a setting.
pub fn parse_show(t: &[Token]) -> Result<Option<ShowCommand>> {
    let mut parameters = Vec::new();
    let second = t.get(1).and_then(keyword);
    let objects_kw = match second.as_deref() {
        Some(k @ ("DATABASES" | "SCHEMAS" | "TABLES" | "COLUMNS")) => k.to_string(),
        _ => return Ok(None),
    };
    let mut i = 2;
    let expect = |kw: &str, i: &mut usize| -> Result<()> {
        if t.get(*i).and_then(keyword).as_deref() == Some(kw) {
            *i += 1;
            Ok(())
        } else {
            Err(syntax(format!("SHOW {objects_kw} needs {kw}")))
        }
    };
    let objects = match objects_kw.as_str() {
        "DATABASES" => ShowObjects::Databases,
        "SCHEMAS" => {
            expect("FROM", &mut i)?;
            expect("DATABASE", &mut i)?;
            let [database] = dotted::<1>(t, &mut i, &mut parameters)?;
            ShowObjects::Schemas { database }
        }
        "TABLES" => {
            expect("FROM", &mut i)?;
            expect("SCHEMA", &mut i)?;
            let [database, schema] = dotted::<2>(t, &mut i, &mut parameters)?;
            ShowObjects::Tables { database, schema }
        }
        _ => {
            expect("FROM", &mut i)?;
            expect("TABLE", &mut i)?;
            let [database, schema, table] = dotted::<3>(t, &mut i, &mut parameters)?;
            ShowObjects::Columns {
                database,
                schema,
                table,
            }
        }
    };
    let mut like = None;
    let mut limit = None;
    while let Some(tok) = t.get(i) {
        i += 1;
        match keyword(tok).as_deref() {
            Some("LIKE") => match t.get(i) {
                Some(Token::SingleQuotedString(p)) => {
                    like = Some(p.clone());
                    i += 1;
                }
                Some(p @ Token::Placeholder(_)) => {
                    if let Some(n) = parameter(p)? {
                        parameters.push((Slot::Like, n));
                        like = Some(String::new());
                    }
                    i += 1;
                }
                _ => return Err(syntax("LIKE needs a quoted pattern")),
            },
            Some("LIMIT") => match t.get(i) {
                Some(Token::Number(n, _)) => {
                    limit = Some(n.parse().map_err(|_| syntax("LIMIT needs a row count"))?);
                    i += 1;
                }
                _ => return Err(syntax("LIMIT needs a row count")),
            },
            _ => return Err(syntax(format!("unexpected {tok} in SHOW {objects_kw}"))),
        }
    }
    Ok(Some(ShowCommand {
        objects,
        like,
        limit,
        parameters,
    }))
}

/// `a.b.c` with exactly `N` parts (a part may be a bind parameter).
fn dotted<const N: usize>(
    t: &[Token],
    i: &mut usize,
    parameters: &mut Vec<(Slot, usize)>,
) -> Result<[String; N]> {
    let mut parts = Vec::with_capacity(N);
    loop {
        let tok = t
            .get(*i)
            .ok_or_else(|| syntax(format!("expected a name with {N} part(s)")))?;
        let part = match parameter(tok)? {
            Some(n) => {
                parameters.push((Slot::Name(parts.len()), n));
                String::new()
            }
            None => {
                ident(tok).ok_or_else(|| syntax(format!("expected a name with {N} part(s)")))?
            }
        };
        parts.push(part);
        *i += 1;
        if t.get(*i) == Some(&Token::Period) {
            *i += 1;
        } else {
            break;
        }
    }
    parts
        .try_into()
        .map_err(|p: Vec<String>| syntax(format!("expected {N} name part(s), got {}", p.len())))
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

/// SQL `LIKE`: `%` any run, `_` one character, `\` makes the next character literal (the
/// default escape, as in PostgreSQL), everything else literal.
pub fn like_matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|k| go(rest, &t[k..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', [c, rest @ ..])) => t.first() == Some(c) && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_show(sql: &str) -> Result<Option<ShowCommand>> {
        super::parse_show(&crate::sql::words(sql)?)
    }

    #[test]
    fn redshift_show_commands_parse() {
        assert_eq!(
            parse_show("SHOW DATABASES").unwrap().unwrap().objects,
            ShowObjects::Databases
        );
        assert_eq!(
            parse_show("show schemas from database dev like 'pub%'")
                .unwrap()
                .unwrap(),
            ShowCommand {
                objects: ShowObjects::Schemas {
                    database: "dev".into()
                },
                like: Some("pub%".into()),
                limit: None,
                parameters: vec![],
            }
        );
        let bound = parse_show("SHOW TABLES FROM SCHEMA $1.$2 LIKE $3")
            .unwrap()
            .unwrap();
        assert_eq!(bound.parameter_count(), 3);
        let bound = bound
            .bind(&["dev".into(), "Public".into(), "o%".into()])
            .unwrap();
        assert_eq!(
            bound.objects,
            ShowObjects::Tables {
                database: "dev".into(),
                schema: "Public".into()
            }
        );
        assert_eq!(bound.like.as_deref(), Some("o%"));
        assert_eq!(
            parse_show("SHOW TABLES FROM SCHEMA dev.public LIMIT 5")
                .unwrap()
                .unwrap()
                .limit,
            Some(5)
        );
        assert_eq!(
            parse_show("SHOW COLUMNS FROM TABLE dev.public.orders")
                .unwrap()
                .unwrap()
                .objects,
            ShowObjects::Columns {
                database: "dev".into(),
                schema: "public".into(),
                table: "orders".into()
            }
        );
        assert_eq!(parse_show("SHOW search_path").unwrap(), None);
        assert!(parse_show("SHOW TABLES FROM SCHEMA public").is_err());
        assert!(parse_show("SHOW COLUMNS FROM orders").is_err());
    }

    #[test]
    fn like_patterns() {
        assert!(like_matches("o%", "orders"));
        assert!(like_matches("%item", "lineitem"));
        assert!(like_matches("_ation", "nation"));
        assert!(!like_matches("O%", "orders"));
        assert!(like_matches("%", ""));
        assert!(!like_matches("a_", "a"));
        assert!(like_matches("show\\_m%", "show_meta"));
        assert!(!like_matches("show\\_m%", "showxmeta"));
    }
}
