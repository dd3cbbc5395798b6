//! Names of relations and schemas as statements write them (`t`, `schema.t`,
//! `database.schema.t`; unquoted names fold to lower case) and the session's `search_path`
//! that an unqualified name is looked up through. Resolving a name against the catalog is
//! the catalog's job ([`crate::catalog::CatalogState::relation`]); this module only reads
//! names.

use std::fmt;

use blueshift_common::error::sqlstate;
use datafusion::common::TableReference;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};

use crate::error::{Error, Result};

/// The schema every database has and every search path ends up in by default.
pub const PUBLIC: &str = "public";

/// Schemas that hold the system's own relations: no user object can be created there.
pub const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// A relation's name: its schema when the statement gave one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationName {
    pub schema: Option<String>,
    pub name: String,
}

impl RelationName {
    pub fn bare(name: impl Into<String>) -> Self {
        RelationName {
            schema: None,
            name: name.into(),
        }
    }

    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        RelationName {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    /// Reads `t`, `s.t` or `db.s.t` (the database part is the one database and ignored).
    pub fn parse(name: &ObjectName) -> Result<Self> {
        match parts(name)?.as_slice() {
            [t] => Ok(RelationName::bare(t.clone())),
            [s, t] | [_, s, t] => Ok(RelationName::qualified(s.clone(), t.clone())),
            _ => Err(invalid(name)),
        }
    }

    /// A name as DataFusion's planner resolved it from the statement.
    pub fn from_reference(r: &TableReference) -> Self {
        match r.schema() {
            Some(s) => RelationName::qualified(s, r.table()),
            None => RelationName::bare(r.table()),
        }
    }
}

impl fmt::Display for RelationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn invalid(name: &ObjectName) -> Error {
    Error::sql(
        sqlstate::SYNTAX_ERROR,
        format!("invalid relation name {name}"),
    )
}

/// An identifier as PostgreSQL stores it: unquoted names fold to lower case.
pub fn normalize_ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// The parts of a dotted name, each folded as an identifier.
fn parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize_ident)
                .ok_or_else(|| invalid(name))
        })
        .collect()
}

/// A schema name (`s` or `db.s`).
pub fn schema_name(name: &ObjectName) -> Result<String> {
    match parts(name)?.as_slice() {
        [s] | [_, s] => Ok(s.clone()),
        _ => Err(invalid(name)),
    }
}

/// The schemas of a `search_path` setting, in order, for user `user`: `$user` names the
/// user's own schema; quoted names keep their case. Schemas that do not exist stay in the list: they are skipped when names are looked up.
pub fn search_path(setting: &str, user: &str) -> Vec<String> {
    let mut path = Vec::new();
    for part in setting.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let name = if let Some(quoted) = part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            quoted.replace("\"\"", "\"")
        } else if let Some(quoted) = part.strip_prefix('\'').and_then(|p| p.strip_suffix('\'')) {
            quoted.to_string()
        } else {
            part.to_ascii_lowercase()
        };
        let name = if name == "$user" {
            user.to_string()
        } else {
            name
        };
        if !name.is_empty() && !path.contains(&name) {
            path.push(name);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_reads_user_quotes_and_case() {
        assert_eq!(search_path("$user, public", "ann"), vec!["ann", "public"]);
        assert_eq!(
            search_path("\"Mixed\", Staging ,'x'", "ann"),
            vec!["Mixed", "staging", "x"]
        );
        assert_eq!(search_path("", "ann"), Vec::<String>::new());
    }

    #[test]
    fn relation_names_fold_and_qualify() {
        let parse = |sql: &str| {
            use datafusion::sql::sqlparser::{dialect::RedshiftSqlDialect, parser::Parser};
            let name = Parser::new(&RedshiftSqlDialect {})
                .try_with_sql(sql)
                .unwrap()
                .parse_object_name(false)
                .unwrap();
            RelationName::parse(&name).unwrap()
        };
        assert_eq!(parse("T"), RelationName::bare("t"));
        assert_eq!(parse("dev.S.\"T\""), RelationName::qualified("s", "T"));
    }
}
