//! Looking a relation name up in one catalog version: a qualified name in its schema, an
//! unqualified one in the first schema of the session's search path that has it (as
//! PostgreSQL and Redshift do). Tables and views share one namespace per schema.

use blueshift_common::error::sqlstate;
use blueshift_common::types::TableDef;

use super::{CatalogState, ViewDef, undefined_schema};
use crate::error::{Error, Result};
use crate::sql::names::RelationName;

/// What a name refers to.
#[derive(Debug, Clone, Copy)]
pub enum Relation<'a> {
    Table(&'a TableDef),
    View(&'a ViewDef),
}

impl Relation<'_> {
    pub fn id(&self) -> u64 {
        match self {
            Relation::Table(t) => t.id,
            Relation::View(v) => v.id,
        }
    }
}

impl CatalogState {
    /// The relation `name` refers to for a session whose search path is `path`.
    pub fn relation(&self, name: &RelationName, path: &[String]) -> Option<Relation<'_>> {
        let in_schema = |schema: &str| {
            self.table_by_name(schema, &name.name)
                .map(Relation::Table)
                .or_else(|| self.view_by_name(schema, &name.name).map(Relation::View))
        };
        match &name.schema {
            Some(schema) => in_schema(schema),
            None => path.iter().find_map(|schema| in_schema(schema)),
        }
    }

    /// The table `name` refers to: 42P01 if there is none, 42809 if it is a view.
    pub fn table(&self, name: &RelationName, path: &[String]) -> Result<&TableDef> {
        match self.relation(name, path) {
            Some(Relation::Table(t)) => Ok(t),
            Some(Relation::View(_)) => Err(Error::sql(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not a table"),
            )),
            None => Err(self.missing(name)),
        }
    }

    /// The error for a relation that is not there: a missing schema says so.
    pub fn missing(&self, name: &RelationName) -> Error {
        match &name.schema {
            Some(s) if !self.schema_exists(s) && !is_system(s) => undefined_schema(s),
            _ => Error::sql(
                sqlstate::UNDEFINED_TABLE,
                format!("relation \"{name}\" does not exist"),
            ),
        }
    }

    /// The schema a new relation called `name` goes into: the one it names, or the first
    /// existing schema of the search path.
    pub fn creation_schema(&self, name: &RelationName, path: &[String]) -> Result<String> {
        match &name.schema {
            Some(s) if is_system(s) => Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to create \"{name}\": {s} is a system schema"),
            )),
            Some(s) if self.schema_exists(s) => Ok(s.clone()),
            Some(s) => Err(undefined_schema(s)),
            None => path
                .iter()
                .find(|s| self.schema_exists(s))
                .cloned()
                .ok_or_else(|| {
                    Error::sql(
                        sqlstate::INVALID_SCHEMA_NAME,
                        "no schema has been selected to create in",
                    )
                }),
        }
    }

    /// The first existing schema of the search path (`current_schema()`), if any.
    pub fn current_schema(&self, path: &[String]) -> Option<String> {
        path.iter().find(|s| self.schema_exists(s)).cloned()
    }
}

fn is_system(schema: &str) -> bool {
    crate::sql::names::SYSTEM_SCHEMAS.contains(&schema)
}

impl CatalogState {
    /// The commands that drop relations `ids` and, with `cascade`, every view that reads
    /// them (directly or through other views), dependents first. Without `cascade` a
    /// relation with dependents fails to drop when the command applies (2BP01).
    pub fn drop_commands(&self, ids: &[u64], cascade: bool) -> Vec<super::Command> {
        let mut doomed: Vec<u64> = ids.to_vec();
        if cascade {
            let mut i = 0;
            while i < doomed.len() {
                let id = doomed[i];
                for v in self.dependents(id) {
                    if !doomed.contains(&v.id) {
                        doomed.push(v.id);
                    }
                }
                i += 1;
            }
        }
        // Dependents first: repeatedly take a relation no remaining one depends on.
        let mut ordered = Vec::with_capacity(doomed.len());
        while !doomed.is_empty() {
            let pos = doomed
                .iter()
                .position(|id| !self.dependents(*id).any(|v| doomed.contains(&v.id)))
                .unwrap_or(0);
            ordered.push(doomed.remove(pos));
        }
        ordered
            .into_iter()
            .map(|id| {
                if self.views.contains_key(&id) {
                    super::Command::DropView { id }
                } else {
                    super::Command::DropTable { id }
                }
            })
            .collect()
    }

    /// Whether view `id` is among the relations `start` reads, directly or through views.
    pub fn reads_through_views(&self, start: &[u64], id: u64) -> bool {
        let mut seen: Vec<u64> = Vec::new();
        let mut todo: Vec<u64> = start.to_vec();
        while let Some(next) = todo.pop() {
            if next == id {
                return true;
            }
            if seen.contains(&next) {
                continue;
            }
            seen.push(next);
            if let Some(v) = self.views.get(&next) {
                todo.extend(v.depends_on.iter().copied());
            }
        }
        false
    }
}

impl CatalogState {
    /// [`CatalogState::drop_commands`] as one command (None when there is nothing to drop).
    pub fn drop_command(&self, ids: &[u64], cascade: bool) -> Option<super::Command> {
        let mut commands = self.drop_commands(ids, cascade);
        match commands.len() {
            0 => None,
            1 => commands.pop(),
            _ => Some(super::Command::Transaction {
                base_version: self.version,
                commands,
            }),
        }
    }
}
