//! `CREATE [OR REPLACE] VIEW name [(columns)] AS query [WITH NO SCHEMA BINDING]` (Redshift's
//! late-binding views). sqlparser reads the binding clause only in its Redshift dialect, so
//! it is lifted off the statement's tokens first; the rest is parsed as PostgreSQL.

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::ast::{Query, Statement};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::keyword;
use super::names::{RelationName, normalize_ident};
use super::statement::parse_ast;
use crate::error::{Error, Result};

/// A parsed `CREATE VIEW`.
#[derive(Debug, Clone)]
pub struct CreateView {
    pub name: RelationName,
    pub or_replace: bool,
    /// `CREATE VIEW v (a, b)`: the names of its columns.
    pub columns: Vec<String>,
    pub query: Box<Query>,
    /// `WITH NO SCHEMA BINDING`.
    pub late_binding: bool,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

pub fn parse_create_view(tokens: &[Token]) -> Result<CreateView> {
    const BINDING: [&str; 4] = ["WITH", "NO", "SCHEMA", "BINDING"];
    let late_binding = tokens.len() > BINDING.len()
        && tokens[tokens.len() - BINDING.len()..]
            .iter()
            .zip(BINDING)
            .all(|(t, k)| keyword(t).as_deref() == Some(k));
    let rest = if late_binding {
        tokens[..tokens.len() - BINDING.len()].to_vec()
    } else {
        tokens.to_vec()
    };
    let Statement::CreateView(cv) = parse_ast(rest)? else {
        return Err(syntax("expected CREATE VIEW ... AS query"));
    };
    if cv.materialized {
        return Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "materialized views are not supported yet",
        ));
    }
    if cv.temporary {
        return Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "temporary views are not supported",
        ));
    }
    Ok(CreateView {
        name: RelationName::parse(&cv.name)?,
        or_replace: cv.or_replace,
        columns: cv
            .columns
            .iter()
            .map(|c| normalize_ident(&c.name))
            .collect(),
        query: cv.query,
        late_binding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> CreateView {
        parse_create_view(&crate::sql::words(sql).unwrap()).unwrap()
    }

    #[test]
    fn late_binding_and_columns() {
        let v =
            parse("create or replace view s.V (a, \"B\") as select 1, 2 with no schema binding");
        assert!(v.or_replace && v.late_binding);
        assert_eq!(v.name, RelationName::qualified("s", "v"));
        assert_eq!(v.columns, vec!["a", "B"]);
        let v = parse("create view v as select * from t");
        assert!(!v.late_binding && !v.or_replace);
    }
}
