//! `CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION user]` and `DROP SCHEMA [IF EXISTS]
//! name [, ...] [CASCADE | RESTRICT]`.

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::ast::{ObjectType, SchemaName, Statement};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::names::{normalize_ident, schema_name};
use super::statement::parse_ast;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatement {
    Create {
        name: String,
        if_not_exists: bool,
        /// `AUTHORIZATION user`: the schema's owner (else the current user).
        owner: Option<String>,
    },
    Drop {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

pub fn parse_schema_statement(tokens: Vec<Token>) -> Result<SchemaStatement> {
    match parse_ast(tokens)? {
        Statement::CreateSchema {
            schema_name: name,
            if_not_exists,
            ..
        } => {
            let (name, owner) = match name {
                SchemaName::Simple(n) => (schema_name(&n)?, None),
                SchemaName::NamedAuthorization(n, user) => {
                    (schema_name(&n)?, Some(normalize_ident(&user)))
                }
                // `CREATE SCHEMA AUTHORIZATION u` names the schema after the user.
                SchemaName::UnnamedAuthorization(user) => {
                    let user = normalize_ident(&user);
                    (user.clone(), Some(user))
                }
            };
            Ok(SchemaStatement::Create {
                name,
                if_not_exists,
                owner,
            })
        }
        Statement::Drop {
            object_type: ObjectType::Schema,
            if_exists,
            names,
            cascade,
            ..
        } => Ok(SchemaStatement::Drop {
            names: names.iter().map(schema_name).collect::<Result<_>>()?,
            if_exists,
            cascade,
        }),
        _ => Err(syntax("expected CREATE SCHEMA or DROP SCHEMA")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> SchemaStatement {
        parse_schema_statement(crate::sql::words(sql).unwrap()).unwrap()
    }

    #[test]
    fn create_and_drop() {
        assert_eq!(
            parse("create schema if not exists Staging authorization ann"),
            SchemaStatement::Create {
                name: "staging".into(),
                if_not_exists: true,
                owner: Some("ann".into())
            }
        );
        assert_eq!(
            parse("drop schema if exists a, \"B\" cascade"),
            SchemaStatement::Drop {
                names: vec!["a".into(), "B".into()],
                if_exists: true,
                cascade: true
            }
        );
    }
}
