//! `COMMENT ON { TABLE | VIEW | COLUMN | SCHEMA } name IS 'text' | $tag$text$tag$ | NULL`
//! (Redshift's form; dbt's `persist_docs` sends dollar-quoted text). The comment itself is
//! kept by the catalog and listed by `pg_description`.

use blueshift_common::error::sqlstate;
use datafusion::sql::sqlparser::ast::{CommentObject, ObjectName, Statement};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::names::{RelationName, normalize_ident, schema_name};
use super::statement::parse_ast;
use crate::error::{Error, Result};

/// What a comment is on, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOn {
    /// `TABLE` (a view too, as Redshift takes it) or, with `view`, `VIEW` (views only).
    Relation {
        name: RelationName,
        view: bool,
    },
    Column {
        relation: RelationName,
        column: String,
    },
    Schema(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub on: CommentOn,
    /// None (`IS NULL`) removes the comment.
    pub text: Option<String>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::sql(sqlstate::SYNTAX_ERROR, msg)
}

pub fn parse_comment(mut tokens: Vec<Token>) -> Result<Comment> {
    // sqlparser reads the text after IS as a quoted string only; a dollar-quoted one is the
    // same value.
    if let Some(at) = tokens
        .iter()
        .rposition(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("is")))
        && let Some(next) = tokens[at + 1..]
            .iter()
            .position(|t| !matches!(t, Token::Whitespace(_)))
        && let Token::DollarQuotedString(s) = &tokens[at + 1 + next]
    {
        tokens[at + 1 + next] = Token::SingleQuotedString(s.value.clone());
    }
    let Statement::Comment {
        object_type,
        object_name,
        comment,
        ..
    } = parse_ast(tokens)?
    else {
        return Err(syntax("expected COMMENT ON ... IS ..."));
    };
    let on = match object_type {
        CommentObject::Table => CommentOn::Relation {
            name: RelationName::parse(&object_name)?,
            view: false,
        },
        CommentObject::View => CommentOn::Relation {
            name: RelationName::parse(&object_name)?,
            view: true,
        },
        CommentObject::Column => column(&object_name)?,
        CommentObject::Schema => CommentOn::Schema(schema_name(&object_name)?),
        other => {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "COMMENT ON {} is not supported: comments are kept on tables, views, \
                     columns and schemas",
                    other.to_string().to_ascii_uppercase()
                ),
            ));
        }
    };
    Ok(Comment { on, text: comment })
}

/// `t.c`, `s.t.c` or `db.s.t.c`.
fn column(name: &ObjectName) -> Result<CommentOn> {
    let (last, relation) = name
        .0
        .split_last()
        .ok_or_else(|| syntax("COMMENT ON COLUMN needs table.column"))?;
    if relation.is_empty() {
        return Err(syntax(format!(
            "COMMENT ON COLUMN {name}: the column must be qualified by its table"
        )));
    }
    let column = last
        .as_ident()
        .map(normalize_ident)
        .ok_or_else(|| syntax(format!("invalid column name {name}")))?;
    Ok(CommentOn::Column {
        relation: RelationName::parse(&ObjectName(relation.to_vec()))?,
        column,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<Comment> {
        parse_comment(crate::sql::words(sql).unwrap())
    }

    #[test]
    fn tables_columns_schemas_and_dollar_quotes() {
        assert_eq!(
            parse("comment on table s.T is 'rows'").unwrap(),
            Comment {
                on: CommentOn::Relation {
                    name: RelationName::qualified("s", "t"),
                    view: false
                },
                text: Some("rows".into())
            }
        );
        assert_eq!(
            parse("comment on column \"dev\".\"s\".\"t\".\"Id\" is $dbt$it's $1$dbt$").unwrap(),
            Comment {
                on: CommentOn::Column {
                    relation: RelationName::qualified("s", "t"),
                    column: "Id".into()
                },
                text: Some("it's $1".into())
            }
        );
        assert_eq!(
            parse("COMMENT ON SCHEMA mart IS NULL").unwrap(),
            Comment {
                on: CommentOn::Schema("mart".into()),
                text: None
            }
        );
        assert_eq!(
            parse("comment on column c is 'x'").unwrap_err().sqlstate(),
            "42601"
        );
        assert_eq!(
            parse("comment on function f is 'x'")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
    }
}
