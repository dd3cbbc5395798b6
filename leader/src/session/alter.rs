//! `ALTER TABLE ... RENAME TO | ADD [COLUMN] | DROP [COLUMN]`: one catalog command per
//! statement that changes the table's definition and keeps its segments. Segments name
//! their columns, so rows written before an ADD COLUMN read NULL in it and a dropped
//! column is simply no longer read; nothing is rewritten.

use blueshift_common::error::sqlstate;
use blueshift_common::types::DistStyle;

use super::{Executor, Outcome, command, search_path, tx};
use crate::catalog::{Command, Relation, ViewDef};
use crate::error::{Error, Result};
use crate::sql::ddl::{AlterAction, AlterTable};
use crate::sql::names::RelationName;

impl Executor {
    pub(super) fn alter_table(&self, stmt: &AlterTable) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let def = match snapshot.relation(&stmt.name, &search_path()) {
            Some(Relation::Table(def)) => def,
            Some(Relation::View(view)) => return self.alter_view(view, stmt),
            None if stmt.if_exists => return Ok(command("ALTER TABLE")),
            None => return Err(snapshot.missing(&stmt.name)),
        };
        let mut name = def.name.clone();
        let mut columns = def.columns.clone();
        let mut dist = def.dist.clone();
        let mut sort_key = def.sort_key.clone();
        let mut dropped = def.dropped_columns.clone();
        for action in &stmt.actions {
            match action {
                AlterAction::RenameTo(to) => {
                    if snapshot
                        .relation(&RelationName::qualified(&def.schema, to), &[])
                        .is_some()
                    {
                        return Err(Error::sql(
                            sqlstate::DUPLICATE_TABLE,
                            format!("relation \"{to}\" already exists"),
                        ));
                    }
                    name = to.clone();
                }
                AlterAction::AddColumn {
                    column,
                    if_not_exists,
                } => {
                    if columns.iter().any(|c| c.name == column.name) {
                        if *if_not_exists {
                            continue;
                        }
                        return Err(Error::sql(
                            sqlstate::DUPLICATE_COLUMN,
                            format!(
                                "column \"{}\" of relation \"{name}\" already exists",
                                column.name
                            ),
                        ));
                    }
                    if dropped.contains(&column.name) {
                        return Err(Error::sql(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!(
                                "column \"{}\" was dropped from \"{name}\" and its old values are \
                                 still stored: choose another name",
                                column.name
                            ),
                        ));
                    }
                    columns.push(column.clone());
                }
                AlterAction::DropColumn { names, if_exists } => {
                    if let Some(view) = snapshot.dependents(def.id).next() {
                        return Err(Error::sql(
                            sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                            format!(
                                "cannot drop a column of table {name} because other objects \
                                 depend on it: view {} reads it (drop the view first)",
                                view.name
                            ),
                        ));
                    }
                    for column in names {
                        let Some(i) = columns.iter().position(|c| c.name == *column) else {
                            if *if_exists {
                                continue;
                            }
                            return Err(Error::sql(
                                sqlstate::UNDEFINED_COLUMN,
                                format!(
                                    "column \"{column}\" of relation \"{name}\" does not exist"
                                ),
                            ));
                        };
                        if matches!(dist, DistStyle::Key { column: c } if c == i)
                            || sort_key.contains(&i)
                        {
                            return Err(Error::sql(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                format!(
                                    "column \"{column}\" is the table's distribution or sort \
                                     key and cannot be dropped"
                                ),
                            ));
                        }
                        if columns.len() == 1 {
                            return Err(Error::sql(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "cannot drop the last column of a table",
                            ));
                        }
                        dropped.push(columns.remove(i).name);
                        // Key indexes after the dropped column move down by one.
                        if let DistStyle::Key { column: c } = &mut dist
                            && *c > i
                        {
                            *c -= 1;
                        }
                        for k in &mut sort_key {
                            if *k > i {
                                *k -= 1;
                            }
                        }
                    }
                }
            }
        }
        let id = def.id;
        tx::execute(&self.leader, |_| {
            Ok(Command::AlterTable {
                id,
                name: name.clone(),
                columns: columns.clone(),
                dist: dist.clone(),
                sort_key: sort_key.clone(),
                dropped_columns: dropped.clone(),
            })
        })?;
        Ok(command("ALTER TABLE"))
    }

    /// `ALTER TABLE | VIEW v RENAME TO w` of a view (the only change a view takes).
    fn alter_view(&self, view: &ViewDef, stmt: &AlterTable) -> Result<Outcome> {
        let mut name = view.name.clone();
        for action in &stmt.actions {
            match action {
                AlterAction::RenameTo(to) => name = to.clone(),
                _ => {
                    return Err(Error::sql(
                        sqlstate::WRONG_OBJECT_TYPE,
                        format!("\"{}\" is a view: only RENAME TO changes it", view.name),
                    ));
                }
            }
        }
        let id = view.id;
        tx::execute(&self.leader, |_| Ok(Command::RenameView { id, name }))?;
        Ok(command("ALTER TABLE"))
    }
}
