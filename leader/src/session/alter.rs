//! `ALTER TABLE ... RENAME TO | ADD [COLUMN] [DEFAULT e] [NOT NULL] | DROP [COLUMN] | RENAME
//! [COLUMN] a TO b`: one catalog command per statement that changes the table's definition.
//! Segments name their columns, so rows written before an ADD COLUMN read NULL in it and a
//! dropped column is simply no longer read: those keep the segments. A RENAME COLUMN
//! cannot: the old segments hold the column under its old name; nor an ADD COLUMN with a
//! DEFAULT, whose existing rows must hold the default. Those statements rewrite all of the
//! table's rows into new segments and swap them in the same command as the new definition
//! (the cost is a full copy of the table, unlike Redshift's metadata-only change).

use blueshift_common::error::sqlstate;
use blueshift_common::types::DistStyle;

use super::dml::ColumnSource;
use super::{Executor, Outcome, command, search_path, tx};
use crate::catalog::{Command, CommentTarget, Relation, SegmentChange, ViewDef};
use crate::error::{Error, Result};
use crate::planner::query_context;
use crate::sql::ddl::{AlterAction, AlterTable};
use crate::sql::names::RelationName;

impl Executor {
    pub(super) async fn alter_table(&self, stmt: &AlterTable) -> Result<Outcome> {
        // A column rename, or an added column with a default, rewrites the table's rows: it
        // plans a query at the version it reads.
        let rewrites = stmt.actions.iter().any(|a| match a {
            AlterAction::RenameColumn { .. } => true,
            AlterAction::AddColumn { column, .. } => column.default.is_some(),
            _ => false,
        });
        let qc = if rewrites {
            Some(query_context(&self.leader)?)
        } else {
            None
        };
        let snapshot = match &qc {
            Some(qc) => qc.catalog.clone(),
            None => tx::snapshot(&self.leader),
        };
        let rel = snapshot.relation(&stmt.name, &search_path());
        if let Some(r) = rel {
            self.access(&snapshot).require_owner(r)?;
        }
        let def = match rel {
            Some(Relation::Table(def)) => def,
            Some(Relation::View(view)) => return self.alter_view(view, stmt).await,
            None if stmt.if_exists => return Ok(command("ALTER TABLE")),
            None => return Err(snapshot.missing(&stmt.name)),
        };
        let mut name = def.name.clone();
        let mut columns = def.columns.clone();
        let mut dist = def.dist.clone();
        let mut sort_key = def.sort_key.clone();
        let mut dropped = def.dropped_columns.clone();
        // Where each column's values are in the current segments (renames change it).
        let mut sources: Vec<ColumnSource> = def
            .columns
            .iter()
            .map(|c| ColumnSource::Column(c.name.clone()))
            .collect();
        let mut renamed_comments = Vec::new();
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
                    match (&column.default, &qc) {
                        (Some(text), Some(qc)) => {
                            // Existing rows get the default, as later inserts do.
                            crate::planner::defaults::default_value(&qc.ctx.state(), column)?;
                            sources.push(ColumnSource::Default(text.clone()));
                        }
                        _ if !column.nullable && def.total_rows() > 0 => {
                            return Err(Error::sql(
                                sqlstate::NOT_NULL_VIOLATION,
                                format!(
                                    "column \"{}\" of relation \"{name}\" contains null values: \
                                     a NOT NULL column added to a table with rows needs a DEFAULT",
                                    column.name
                                ),
                            ));
                        }
                        _ => sources.push(ColumnSource::Null),
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
                        sources.remove(i);
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
                AlterAction::RenameColumn { from, to } => {
                    let Some(i) = columns.iter().position(|c| c.name == *from) else {
                        return Err(Error::sql(
                            sqlstate::UNDEFINED_COLUMN,
                            format!("column \"{from}\" of relation \"{name}\" does not exist"),
                        ));
                    };
                    if columns.iter().any(|c| c.name == *to) {
                        return Err(Error::sql(
                            sqlstate::DUPLICATE_COLUMN,
                            format!("column \"{to}\" of relation \"{name}\" already exists"),
                        ));
                    }
                    if let Some(view) = snapshot.dependents(def.id).next() {
                        return Err(Error::sql(
                            sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                            format!(
                                "cannot rename a column of table {name} because other objects \
                                 depend on it: view {} reads it by name (drop the view first)",
                                view.name
                            ),
                        ));
                    }
                    let target = CommentTarget::Column {
                        relation: def.id,
                        column: from.clone(),
                    };
                    if let Some(text) = snapshot.comment(&target) {
                        renamed_comments.push((to.clone(), text.to_string()));
                    }
                    columns[i].name = to.clone();
                }
            }
        }
        let id = def.id;
        let Some(qc) = qc else {
            tx::execute(&self.leader, |_| {
                Ok(Command::AlterTable {
                    id,
                    name: name.clone(),
                    columns: columns.clone(),
                    dist: dist.clone(),
                    sort_key: sort_key.clone(),
                    dropped_columns: dropped.clone(),
                })
            })
            .await?;
            return Ok(command("ALTER TABLE"));
        };
        // Every row, rewritten under the new names; the new segments hold no dropped
        // columns, so their names are free again.
        let mut new_def = def.clone();
        new_def.columns = columns;
        new_def.dist = dist;
        new_def.sort_key = sort_key;
        let _pin = self.leader.pins.pin();
        let (segments, _) = self.rewrite_table(&qc, def, &new_def, &sources).await?;
        let mut commands = vec![
            Command::ReplaceSegments {
                changes: vec![SegmentChange {
                    table_id: id,
                    remove: def.segment_paths(),
                    add: segments,
                }],
            },
            Command::AlterTable {
                id,
                name,
                columns: new_def.columns.clone(),
                dist: new_def.dist.clone(),
                sort_key: new_def.sort_key.clone(),
                dropped_columns: vec![],
            },
        ];
        for (column, text) in renamed_comments {
            commands.push(Command::Comment {
                target: CommentTarget::Column {
                    relation: id,
                    column,
                },
                text: Some(text),
            });
        }
        let base_version = snapshot.version;
        tx::execute(&self.leader, |_| {
            Ok(Command::Transaction {
                base_version,
                commands,
            })
        })
        .await?;
        Ok(command("ALTER TABLE"))
    }

    /// `ALTER TABLE | VIEW v RENAME TO w` of a view (the only change a view takes).
    async fn alter_view(&self, view: &ViewDef, stmt: &AlterTable) -> Result<Outcome> {
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
        tx::execute(&self.leader, |_| Ok(Command::RenameView { id, name })).await?;
        Ok(command("ALTER TABLE"))
    }
}
