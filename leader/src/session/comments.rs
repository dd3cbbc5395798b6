//! `COMMENT ON`: resolves the named object through the search path and records the comment
//! (or removes it) in one catalog command, so it commits and rolls back with its block.

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command, search_path, tx};
use crate::catalog::{Command, CommentTarget, Relation};
use crate::error::{Error, Result};
use crate::sql::comment::{Comment, CommentOn};

impl Executor {
    pub(super) async fn comment(&self, c: &Comment) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let path = search_path();
        let target = match &c.on {
            CommentOn::Relation { name, view } => match snapshot.relation(name, &path) {
                Some(Relation::Table(_)) if *view => {
                    return Err(Error::sql(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{name}\" is not a view"),
                    ));
                }
                Some(r) => {
                    self.access(&snapshot).require_owner(r)?;
                    CommentTarget::Relation(r.id())
                }
                None => return Err(snapshot.missing(name)),
            },
            CommentOn::Column { relation, column } => {
                let rel = snapshot.relation(relation, &path);
                if let Some(r) = rel {
                    self.access(&snapshot).require_owner(r)?;
                }
                let (id, columns) = match rel {
                    Some(Relation::Table(t)) => (t.id, &t.columns),
                    Some(Relation::View(v)) => (v.id, &v.columns),
                    None => return Err(snapshot.missing(relation)),
                };
                if !columns.iter().any(|c| c.name == *column) {
                    return Err(Error::sql(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{column}\" of relation \"{relation}\" does not exist"),
                    ));
                }
                CommentTarget::Column {
                    relation: id,
                    column: column.clone(),
                }
            }
            CommentOn::Schema(name) => {
                if !snapshot.schema_exists(name) {
                    return Err(crate::catalog::undefined_schema(name));
                }
                if !self.access(&snapshot).owns_schema(name) {
                    return Err(crate::privileges::not_owner("schema", name));
                }
                CommentTarget::Schema(name.clone())
            }
        };
        tx::execute(&self.leader, |_| {
            Ok(Command::Comment {
                target: target.clone(),
                text: c.text.clone(),
            })
        })
        .await?;
        Ok(command("COMMENT"))
    }
}
