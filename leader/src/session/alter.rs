//! `ALTER TABLE ... RENAME TO | ADD [COLUMN] | DROP [COLUMN]`: one catalog command per
//! statement that changes the table's definition and keeps its segments. Segments name
//! their columns, so rows written before an ADD COLUMN read NULL in it and a dropped
//! column is simply no longer read; nothing is rewritten.

use blueshift_common::error::sqlstate;
use blueshift_common::types::DistStyle;

use super::{Executor, Outcome, command, tx};
use crate::catalog::Command;
use crate::error::{Error, Result};
use crate::sql::ddl::{AlterAction, AlterTable};

impl Executor {
    pub(super) fn alter_table(&self, stmt: &AlterTable) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let Some(def) = snapshot.table_by_name("public", &stmt.name) else {
            if stmt.if_exists {
                return Ok(command("ALTER TABLE"));
            }
            return Err(Error::sql(
                sqlstate::UNDEFINED_TABLE,
                format!("relation \"{}\" does not exist", stmt.name),
            ));
        };
        let mut name = def.name.clone();
        let mut columns = def.columns.clone();
        let mut dist = def.dist.clone();
        let mut sort_key = def.sort_key.clone();
        let mut dropped = def.dropped_columns.clone();
        for action in &stmt.actions {
            match action {
                AlterAction::RenameTo(to) => {
                    if snapshot.table_by_name("public", to).is_some() {
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
}
