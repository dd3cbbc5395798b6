//! `DROP TABLE | VIEW [IF EXISTS] name [, ...] [CASCADE]`: one catalog command drops the
//! named relations and, with CASCADE, the views that read them. Without CASCADE a relation
//! that bound views read is not dropped (2BP01), checked when the command applies so that
//! a view created concurrently is not left dangling.

use blueshift_common::error::sqlstate;

use super::{Executor, Outcome, command, search_path, tx};
use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::sql::ddl::DropRelations;

/// What a DROP statement names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Table,
    View,
}

impl Executor {
    pub(super) async fn drop_relations(&self, stmt: &DropRelations, kind: Kind) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let path = search_path();
        let (word, tag) = match kind {
            Kind::Table => ("table", "DROP TABLE"),
            Kind::View => ("view", "DROP VIEW"),
        };
        let mut ids = Vec::with_capacity(stmt.names.len());
        for name in &stmt.names {
            let rel = snapshot.relation(name, &path);
            if let Some(r) = rel {
                // Only the owner (or a superuser) drops a relation.
                self.access(&snapshot).require_owner(r)?;
            }
            match (rel, kind) {
                (Some(Relation::Table(t)), Kind::Table) => ids.push(t.id),
                (Some(Relation::View(v)), Kind::View) => ids.push(v.id),
                (Some(_), _) => {
                    return Err(Error::sql(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{name}\" is not a {word}"),
                    ));
                }
                (None, _) if stmt.if_exists => {}
                (None, _) => {
                    return Err(Error::sql(
                        sqlstate::UNDEFINED_TABLE,
                        format!("{word} \"{name}\" does not exist"),
                    ));
                }
            }
        }
        if !ids.is_empty() {
            tx::execute(&self.leader, |s| {
                s.drop_command(&ids, stmt.cascade)
                    .ok_or_else(|| Error::sql(sqlstate::UNDEFINED_TABLE, "the relations are gone"))
            })
            .await?;
        }
        Ok(command(tag))
    }
}
