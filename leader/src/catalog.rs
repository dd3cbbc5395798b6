//! The catalog: every table, its columns, distribution, sort key and committed segments, as a
//! deterministic state machine of [`Command`]s. The commands are replicated by the leader
//! replicas' raft group ([`crate::replica`]; a group of one by default): each is committed
//! by a majority, fsynced in the raft log under `<data-dir>/catalog/raft/`, and applied in
//! log order on every replica, whose state is snapshotted every [`SNAPSHOT_EVERY`] commands
//! (compacting the log), so a restart replays snapshot + log and loses nothing that was
//! acknowledged. Readers take an `Arc<CatalogState>`: a pinned version that later commands do
//! not change (snapshot isolation for queries). Applying a command must depend only on the
//! state and the command (no clocks, no process state): every replica must reach the same
//! state. Values a replica hands out (table ids, identity values) are reserved by commands,
//! so two replicas never hand out the same one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub mod acl;
mod comments;
mod resolve;

pub use comments::{CommentDef, CommentTarget};
pub use resolve::Relation;

use blueshift_common::error::sqlstate;
use blueshift_common::hash::SLICE_HASH_VERSION;
use blueshift_common::types::{Segment, TableDef};
use serde::{Deserialize, Serialize};

use crate::auth::UserDef;
use crate::error::{Error, Result};
use crate::replica::storage::DiskStorage;
use crate::replica::transport::{self, RaftService};
use crate::replica::{Replica, ReplicaConfig, ReplicaStatus, StateMachine, driver, membership};
use crate::sql::names::{PUBLIC, SYSTEM_SCHEMAS};

pub const SNAPSHOT_EVERY: u64 = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogState {
    /// Number of commands applied.
    pub version: u64,
    /// Total slices of the cluster, fixed when the cluster is created.
    pub slices: u32,
    pub hash_version: u32,
    pub next_table_id: u64,
    pub tables: BTreeMap<u64, TableDef>,
    /// Users with their credentials, by name (see [`crate::auth`]).
    #[serde(default)]
    pub users: BTreeMap<String, UserDef>,
    /// For each table, the version of the last command that changed it (its definition or
    /// its segments): how a committing transaction learns that another one changed a table
    /// it changed too.
    #[serde(default)]
    pub written: BTreeMap<u64, u64>,
    /// Schemas created with `CREATE SCHEMA`, by name (`public` always exists and is not
    /// listed here).
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaDef>,
    /// Views, by id (ids come from the same sequence as table ids: one relation namespace).
    #[serde(default)]
    pub views: BTreeMap<u64, ViewDef>,
    /// `COMMENT ON` texts (see [`comments`]).
    #[serde(default)]
    pub comments: Vec<CommentDef>,
    /// For each table with an identity column, how many of its values the leader has
    /// handed out at most (see [`Command::ReserveIdentity`]).
    #[serde(default)]
    pub identity_reserved: BTreeMap<u64, i64>,
    /// GRANTed privileges, per object (see [`acl`]). A catalog from before privileges
    /// existed gets the initial grants (PUBLIC may use and create in `public`).
    #[serde(default = "acl::initial_acls")]
    pub acls: Vec<acl::Acl>,
    /// User groups (`CREATE GROUP`), by name.
    #[serde(default)]
    pub groups: BTreeMap<String, acl::GroupDef>,
}

impl CatalogState {
    pub fn table_by_name(&self, schema: &str, name: &str) -> Option<&TableDef> {
        self.tables
            .values()
            .find(|t| t.schema == schema && t.name == name)
    }

    pub fn view_by_name(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.views
            .values()
            .find(|v| v.schema == schema && v.name == name)
    }

    pub fn schema_exists(&self, name: &str) -> bool {
        name == PUBLIC || self.schemas.contains_key(name)
    }

    /// The sessions' temporary schemas that hold a table (a session's exists as long as it
    /// has temporary tables; they are not created with CREATE SCHEMA).
    pub fn temp_schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tables
            .values()
            .filter(|t| t.temporary && is_temp_schema(&t.schema))
            .map(|t| t.schema.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The user schemas, `public` first.
    pub fn schema_names(&self) -> Vec<String> {
        let mut names = vec![PUBLIC.to_string()];
        names.extend(self.schemas.keys().cloned());
        names
    }

    /// Whether `schema.name` is taken by a table or a view (other than relation `except`).
    fn relation_taken(&self, schema: &str, name: &str, except: u64) -> bool {
        self.tables
            .values()
            .any(|t| t.id != except && t.schema == schema && t.name == name)
            || self
                .views
                .values()
                .any(|v| v.id != except && v.schema == schema && v.name == name)
    }

    /// Drops the grants on relations and schemas that are gone, and to users and groups
    /// that are gone (so a new object or user of the same name starts with none).
    fn forget_orphan_acls(&mut self) {
        let (tables, views, schemas, groups) =
            (&self.tables, &self.views, &self.schemas, &self.groups);
        self.acls.retain(|a| match &a.object {
            acl::AclObject::Relation(id) | acl::AclObject::Column(id, _) => {
                tables.contains_key(id) || views.contains_key(id)
            }
            acl::AclObject::Schema(s) => s == PUBLIC || schemas.contains_key(s),
            acl::AclObject::Database => true,
        });
        for a in self.acls.iter_mut() {
            // Users: DROP USER removes theirs (built-in users are not in `users`).
            a.entries.retain(|e| match &e.grantee {
                acl::Grantee::Group(g) => groups.contains_key(g),
                _ => true,
            });
        }
        self.acls.retain(|a| !a.entries.is_empty());
    }

    /// The bound views that read relation `id` directly.
    pub fn dependents(&self, id: u64) -> impl Iterator<Item = &ViewDef> {
        self.views
            .values()
            .filter(move |v| v.depends_on.contains(&id))
    }
}

/// A schema made with `CREATE SCHEMA`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDef {
    pub name: String,
    pub owner: String,
}

/// A view: its query as SQL text (sqlparser's rendering of the parsed query), planned again
/// by every statement that reads it, with the columns it had when it was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: u64,
    pub schema: String,
    pub name: String,
    pub owner: String,
    pub query: String,
    /// The column names given in `CREATE VIEW v (a, b)`; empty: the query's own names.
    pub column_names: Vec<String>,
    /// The view's columns when it was created (for catalog listings; empty for a
    /// late-binding view whose query could not be planned then).
    pub columns: Vec<blueshift_common::types::ColumnDef>,
    /// `WITH NO SCHEMA BINDING`: no dependencies are recorded, so the relations it reads
    /// may be dropped and recreated under it.
    pub late_binding: bool,
    /// Tables and views a bound view reads: they cannot be dropped without CASCADE.
    pub depends_on: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// First command of every cluster: fixes the slice count and hash scheme.
    Bootstrap {
        slices: u32,
        hash_version: u32,
    },
    CreateTable(TableDef),
    DropTable {
        id: u64,
    },
    /// Makes segments written by a load visible, all at once.
    CommitSegments {
        table_id: u64,
        segments: Vec<Segment>,
    },
    /// Changes a table's name and columns (ALTER TABLE); its segments stay.
    AlterTable {
        id: u64,
        name: String,
        columns: Vec<blueshift_common::types::ColumnDef>,
        dist: blueshift_common::types::DistStyle,
        sort_key: Vec<usize>,
        /// Names dropped by this and earlier ALTERs (see `TableDef::dropped_columns`).
        dropped_columns: Vec<String>,
    },
    /// Swaps segments of tables in one step (DELETE, UPDATE, TRUNCATE rewrite the segments
    /// that hold changed rows). Fails, changing nothing, if a segment to remove is gone:
    /// another statement replaced it first (40001).
    ReplaceSegments {
        changes: Vec<SegmentChange>,
    },
    /// The commands of a transaction block, applied together or not at all. Fails with
    /// 40001 if a table one of them changes was changed by a command after `base_version`
    /// (the version the block began at).
    Transaction {
        base_version: u64,
        commands: Vec<Command>,
    },
    CreateSchema(SchemaDef),
    /// Drops an empty schema (a `DROP SCHEMA ... CASCADE` drops its relations first, in the
    /// same transaction command).
    DropSchema {
        name: String,
    },
    /// Creates a view, or (`replace`) replaces the view of that name in place, keeping its
    /// id so the views built on it stay bound to it.
    CreateView {
        view: ViewDef,
        replace: bool,
    },
    /// Drops a view; fails if a bound view still depends on it.
    DropView {
        id: u64,
    },
    /// `ALTER VIEW | TABLE v RENAME TO`.
    RenameView {
        id: u64,
        name: String,
    },
    /// `COMMENT ON`: sets, or with `text: None` removes, the comment on an object.
    Comment {
        target: CommentTarget,
        text: Option<String>,
    },
    CreateUser(UserDef),
    /// Replaces an existing user's definition.
    AlterUser(UserDef),
    DropUser {
        name: String,
    },
    /// GRANT / REVOKE: applied in order, all or nothing.
    ChangeAcl {
        changes: Vec<AclChange>,
    },
    CreateGroup(acl::GroupDef),
    /// Replaces group `name` (its members, or its name on RENAME).
    AlterGroup {
        name: String,
        def: acl::GroupDef,
    },
    DropGroup {
        name: String,
    },
    /// Records that the leader may hand out a table's identity values up to the
    /// `upto`-th (a sequence's reservation: never lowered, never rolled back, and not a
    /// change of the table that transactions conflict on). A leader that starts again
    /// continues after it, so no value a committed row holds is handed out twice.
    ReserveIdentity {
        table_id: u64,
        upto: i64,
    },
    /// Reserves the next `count` identity values of a table for the replica that
    /// proposes it: the block ends at the table's reservation after this command.
    ReserveIdentityBlock {
        table_id: u64,
        count: i64,
    },
    /// Reserves the next `count` table ids for the replica that proposes it: they end at
    /// `next_table_id` after this command.
    ReserveTableIds {
        count: u64,
    },
}

/// What [`Command::ReplaceSegments`] does to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentChange {
    pub table_id: u64,
    /// Paths of the segments to remove.
    pub remove: Vec<String>,
    pub add: Vec<Segment>,
}

/// One grantee's privileges on one object, granted or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclChange {
    pub object: acl::AclObject,
    pub grantee: acl::Grantee,
    pub privileges: acl::Privileges,
    /// GRANT (false: REVOKE).
    pub grant: bool,
    /// GRANT: WITH GRANT OPTION; REVOKE: GRANT OPTION FOR (only the option goes).
    pub grant_option: bool,
    /// REVOKE ... CASCADE: what the grantee granted on with the option goes too.
    pub cascade: bool,
    pub grantor: String,
}

#[derive(Serialize, Deserialize)]
struct LogEntry {
    version: u64,
    command: Command,
}

/// The tables a command changes (not counting tables it creates).
fn tables_changed(command: &Command, out: &mut Vec<u64>) {
    match command {
        Command::DropTable { id } | Command::AlterTable { id, .. } => out.push(*id),
        Command::CommitSegments { table_id, .. } => out.push(*table_id),
        Command::ReplaceSegments { changes } => out.extend(changes.iter().map(|c| c.table_id)),
        Command::Transaction { commands, .. } => {
            for c in commands {
                tables_changed(c, out);
            }
        }
        _ => {}
    }
}

/// Applies one command. Deterministic: the same state and command give the same result.
pub fn apply(state: &mut CatalogState, command: &Command) -> Result<()> {
    apply_at(state, command, false)
}

/// Applies a command, `nested` in a transaction command whose conflicts were checked (a
/// transaction block holds CTAS and cascading drops as transaction commands of their own;
/// their base versions are the block's, not the catalog's).
fn apply_at(state: &mut CatalogState, command: &Command, nested: bool) -> Result<()> {
    apply_one(state, command, nested)?;
    state.forget_orphan_comments();
    state.forget_orphan_acls();
    let mut changed = Vec::new();
    tables_changed(command, &mut changed);
    if let Command::CreateTable(def) = command {
        changed.push(def.id);
    }
    for id in changed {
        state.written.insert(id, state.version);
    }
    state.written.retain(|id, _| state.tables.contains_key(id));
    state
        .identity_reserved
        .retain(|id, _| state.tables.contains_key(id));
    Ok(())
}

fn apply_one(state: &mut CatalogState, command: &Command, nested: bool) -> Result<()> {
    match command {
        Command::Transaction {
            base_version,
            commands,
        } => {
            let mut changed = Vec::new();
            if !nested {
                tables_changed(command, &mut changed);
            }
            for id in changed {
                if state.written.get(&id).is_some_and(|v| v > base_version) {
                    let name = state
                        .tables
                        .get(&id)
                        .map(|t| t.name.clone())
                        .unwrap_or_else(|| id.to_string());
                    return Err(Error::sql(
                        sqlstate::SERIALIZATION_FAILURE,
                        format!(
                            "could not serialize access due to concurrent update of table \
                             \"{name}\": another transaction changed it after this one began"
                        ),
                    ));
                }
            }
            // One version for the whole block: its commands are applied as parts of it (each
            // records its tables as written at that version, the block's).
            let version = state.version;
            for c in commands {
                apply_at(state, c, true)?;
                state.version = version;
            }
        }
        Command::Bootstrap {
            slices,
            hash_version,
        } => {
            if state.slices != 0 {
                return Err(Error::sql(
                    sqlstate::INTERNAL_ERROR,
                    "cluster is already bootstrapped",
                ));
            }
            state.slices = *slices;
            state.hash_version = *hash_version;
            state.acls = acl::initial_acls();
            state.next_table_id = state.next_table_id.max(100_000);
        }
        Command::CreateTable(def) => {
            if state.tables.contains_key(&def.id) {
                return Err(Error::sql(
                    sqlstate::SERIALIZATION_FAILURE,
                    format!("table id {} is already taken", def.id),
                ));
            }
            check_new_relation(state, &def.schema, &def.name, def.id)?;
            state.next_table_id = state.next_table_id.max(def.id + 1);
            state.tables.insert(def.id, def.clone());
        }
        Command::DropTable { id } => {
            let Some(table) = state.tables.get(id) else {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!("table with id {id} does not exist"),
                ));
            };
            refuse_dependents(state, *id, "table", &table.name)?;
            state.tables.remove(id);
        }
        Command::CreateSchema(def) => {
            if state.schema_exists(&def.name) || SYSTEM_SCHEMAS.contains(&def.name.as_str()) {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_SCHEMA,
                    format!("schema \"{}\" already exists", def.name),
                ));
            }
            state.schemas.insert(def.name.clone(), def.clone());
        }
        Command::DropSchema { name } => {
            if !state.schemas.contains_key(name) {
                return Err(undefined_schema(name));
            }
            if state.tables.values().any(|t| t.schema == *name)
                || state.views.values().any(|v| v.schema == *name)
            {
                return Err(Error::sql(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!(
                        "cannot drop schema {name} because other objects depend on it \
                         (use DROP SCHEMA ... CASCADE to drop them too)"
                    ),
                ));
            }
            state.schemas.remove(name);
        }
        Command::CreateView { view, replace } => {
            let existing = state.view_by_name(&view.schema, &view.name).map(|v| v.id);
            match existing {
                Some(id) if *replace => {
                    let mut view = view.clone();
                    view.id = id;
                    if let Some(old) = state.views.get(&id) {
                        check_replacement_columns(old, &view)?;
                    }
                    if state.reads_through_views(&view.depends_on, id) {
                        return Err(Error::sql(
                            sqlstate::INVALID_OBJECT_DEFINITION,
                            format!("view \"{}\" cannot read itself", view.name),
                        ));
                    }
                    state.views.insert(id, view);
                }
                _ => {
                    if *replace && state.relation_taken(&view.schema, &view.name, view.id) {
                        return Err(Error::sql(
                            sqlstate::WRONG_OBJECT_TYPE,
                            format!("\"{}\" is not a view", view.name),
                        ));
                    }
                    check_new_relation(state, &view.schema, &view.name, view.id)?;
                    if state.tables.contains_key(&view.id) || state.views.contains_key(&view.id) {
                        return Err(Error::sql(
                            sqlstate::SERIALIZATION_FAILURE,
                            format!("relation id {} is already taken", view.id),
                        ));
                    }
                    state.next_table_id = state.next_table_id.max(view.id + 1);
                    state.views.insert(view.id, view.clone());
                }
            }
        }
        Command::DropView { id } => {
            let Some(view) = state.views.get(id) else {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!("view with id {id} does not exist"),
                ));
            };
            refuse_dependents(state, *id, "view", &view.name)?;
            state.views.remove(id);
        }
        Command::RenameView { id, name } => {
            let Some(schema) = state.views.get(id).map(|v| v.schema.clone()) else {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    "view was dropped while it was being renamed",
                ));
            };
            if state.relation_taken(&schema, name, *id) {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_TABLE,
                    format!("relation \"{name}\" already exists"),
                ));
            }
            if let Some(view) = state.views.get_mut(id) {
                view.name = name.clone();
            }
        }
        Command::Comment { target, text } => state.set_comment(target, text.as_deref())?,
        Command::CommitSegments { table_id, segments } => {
            let Some(table) = state.tables.get_mut(table_id) else {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    "table was dropped while the load was running",
                ));
            };
            for s in segments {
                table.segments.entry(s.slice).or_default().push(s.clone());
            }
        }
        Command::AlterTable {
            id,
            name,
            columns,
            dist,
            sort_key,
            dropped_columns,
        } => {
            let schema = match state.tables.get(id) {
                Some(t) => t.schema.clone(),
                None => {
                    return Err(Error::sql(
                        sqlstate::UNDEFINED_TABLE,
                        "table was dropped while it was being altered",
                    ));
                }
            };
            if state.relation_taken(&schema, name, *id) {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_TABLE,
                    format!("relation \"{name}\" already exists"),
                ));
            }
            if let Some(table) = state.tables.get_mut(id) {
                table.name = name.clone();
                table.columns = columns.clone();
                table.dist = dist.clone();
                table.sort_key = sort_key.clone();
                table.dropped_columns = dropped_columns.clone();
            }
        }
        Command::ReplaceSegments { changes } => {
            // Checked in full before anything changes.
            for change in changes {
                let Some(table) = state.tables.get(&change.table_id) else {
                    return Err(Error::sql(
                        sqlstate::UNDEFINED_TABLE,
                        "table was dropped while the statement was running",
                    ));
                };
                let present: std::collections::HashSet<&str> = table
                    .segments
                    .values()
                    .flatten()
                    .map(|s| s.path.as_str())
                    .collect();
                if let Some(gone) = change.remove.iter().find(|p| !present.contains(p.as_str())) {
                    return Err(Error::sql(
                        sqlstate::SERIALIZATION_FAILURE,
                        format!(
                            "could not serialize access due to concurrent update of table \"{}\" \
                             (segment {gone} was already replaced)",
                            table.name
                        ),
                    ));
                }
            }
            for change in changes {
                let Some(table) = state.tables.get_mut(&change.table_id) else {
                    continue;
                };
                let remove: std::collections::HashSet<&str> =
                    change.remove.iter().map(String::as_str).collect();
                for segments in table.segments.values_mut() {
                    segments.retain(|s| !remove.contains(s.path.as_str()));
                }
                table.segments.retain(|_, segments| !segments.is_empty());
                for s in &change.add {
                    table.segments.entry(s.slice).or_default().push(s.clone());
                }
            }
        }
        Command::CreateUser(user) => {
            if state.users.contains_key(&user.name) {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_OBJECT,
                    format!("user \"{}\" already exists", user.name),
                ));
            }
            state.users.insert(user.name.clone(), user.clone());
        }
        Command::AlterUser(user) => {
            let Some(existing) = state.users.get_mut(&user.name) else {
                return Err(undefined_user(&user.name));
            };
            *existing = user.clone();
        }
        Command::DropUser { name } => {
            if state.users.remove(name).is_none() {
                return Err(undefined_user(name));
            }
            for g in state.groups.values_mut() {
                g.members.retain(|m| m != name);
            }
            acl::forget_grantee(&mut state.acls, &acl::Grantee::User(name.clone()));
        }
        Command::ChangeAcl { changes } => {
            let mut acls = state.acls.clone();
            for c in changes {
                apply_acl_change(&mut acls, c)?;
            }
            state.acls = acls;
        }
        Command::CreateGroup(def) => {
            if state.groups.contains_key(&def.name) {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_OBJECT,
                    format!("group \"{}\" already exists", def.name),
                ));
            }
            state.groups.insert(def.name.clone(), def.clone());
        }
        Command::AlterGroup { name, def } => {
            if state.groups.remove(name).is_none() {
                return Err(undefined_group(name));
            }
            if def.name != *name {
                // Grants to the group follow it to its new name.
                for a in state.acls.iter_mut() {
                    for e in a.entries.iter_mut() {
                        if e.grantee == acl::Grantee::Group(name.clone()) {
                            e.grantee = acl::Grantee::Group(def.name.clone());
                        }
                    }
                }
            }
            state.groups.insert(def.name.clone(), def.clone());
        }
        Command::DropGroup { name } => {
            if state.groups.remove(name).is_none() {
                return Err(undefined_group(name));
            }
        }
        Command::ReserveIdentity { table_id, upto } => {
            if !state.tables.contains_key(table_id) {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    "table was dropped while rows were being inserted",
                ));
            }
            let reserved = state.identity_reserved.entry(*table_id).or_default();
            *reserved = (*reserved).max(*upto);
        }
        Command::ReserveIdentityBlock { table_id, count } => {
            if !state.tables.contains_key(table_id) {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    "table was dropped while rows were being inserted",
                ));
            }
            let reserved = state.identity_reserved.entry(*table_id).or_default();
            *reserved = reserved.checked_add(*count).ok_or_else(|| {
                Error::sql(
                    sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                    "identity column reached the end of its type's range",
                )
            })?;
        }
        Command::ReserveTableIds { count } => {
            state.next_table_id += count;
        }
    }
    state.version += 1;
    Ok(())
}

fn undefined_group(name: &str) -> Error {
    Error::sql(
        sqlstate::UNDEFINED_OBJECT,
        format!("group \"{name}\" does not exist"),
    )
}

/// Applies one GRANT / REVOKE change. Taking a grant option away from a grantee who passed
/// the privilege on needs CASCADE (which takes it from those grantees too).
fn apply_acl_change(acls: &mut Vec<acl::Acl>, c: &AclChange) -> Result<()> {
    if c.grant {
        let grantable = if c.grant_option {
            c.privileges
        } else {
            acl::Privileges::NONE
        };
        acl::grant(
            acls,
            &c.object,
            &c.grantee,
            c.privileges,
            grantable,
            &c.grantor,
        );
        return Ok(());
    }
    if let acl::Grantee::User(user) = &c.grantee {
        let passed_on: Vec<acl::Grantee> = acls
            .iter()
            .filter(|a| a.object == c.object)
            .flat_map(|a| a.entries.iter())
            .filter(|e| e.grantor == *user && !e.privileges.intersect(c.privileges).is_empty())
            .map(|e| e.grantee.clone())
            .filter(|g| g != &c.grantee)
            .collect();
        if !passed_on.is_empty() {
            if !c.cascade {
                return Err(Error::sql(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!(
                        "dependent privileges exist: {user} granted them to {}; use CASCADE \
                         to revoke them too",
                        passed_on
                            .iter()
                            .map(|g| g.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            for g in passed_on {
                apply_acl_change(
                    acls,
                    &AclChange {
                        grantee: g,
                        grant_option: false,
                        ..c.clone()
                    },
                )?;
            }
        }
    }
    acl::revoke(acls, &c.object, &c.grantee, c.privileges, c.grant_option);
    Ok(())
}

/// The prefix of a session's temporary schema (see `session::tx::TempTables`).
pub const TEMP_SCHEMA_PREFIX: &str = "pg_temp_";

/// Whether `schema` is a session's temporary schema.
pub fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with(TEMP_SCHEMA_PREFIX)
}

/// A new table or view `schema.name` (id `id`) needs an existing schema (or a temporary
/// one) and a free name.
fn check_new_relation(state: &CatalogState, schema: &str, name: &str, id: u64) -> Result<()> {
    if !state.schema_exists(schema) && !is_temp_schema(schema) {
        return Err(undefined_schema(schema));
    }
    if state.relation_taken(schema, name, id) {
        return Err(Error::sql(
            sqlstate::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    Ok(())
}

/// Redshift's rule for `CREATE OR REPLACE VIEW` of a bound view: the new query must give the
/// same columns, by name and type, as the view it replaces (views reading it were planned
/// against those). A late-binding view, old or new, may change its columns.
fn check_replacement_columns(old: &ViewDef, new: &ViewDef) -> Result<()> {
    if old.late_binding || new.late_binding {
        return Ok(());
    }
    let differs = old.columns.len() != new.columns.len()
        || old
            .columns
            .iter()
            .zip(&new.columns)
            .any(|(a, b)| a.name != b.name || a.ty != b.ty);
    if differs {
        let show = |v: &ViewDef| {
            v.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty.sql_name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::sql(
            sqlstate::INVALID_TABLE_DEFINITION,
            format!(
                "cannot replace view {}: the new query gives columns ({}) where the view has \
                 ({}); a replacing query must give the same column names and types (drop \
                 the view and create it again to change them)",
                new.name,
                show(new),
                show(old)
            ),
        ));
    }
    Ok(())
}

/// A relation that bound views read cannot be dropped on its own (PostgreSQL's message).
fn refuse_dependents(state: &CatalogState, id: u64, kind: &str, name: &str) -> Result<()> {
    match state.dependents(id).next() {
        Some(view) => Err(Error::sql(
            sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
            format!(
                "cannot drop {kind} {name} because other objects depend on it: view {} \
                 depends on {kind} {name} (use DROP ... CASCADE to drop the dependent objects \
                 too)",
                view.name
            ),
        )),
        None => Ok(()),
    }
}

pub fn undefined_schema(name: &str) -> Error {
    Error::sql(
        sqlstate::INVALID_SCHEMA_NAME,
        format!("schema \"{name}\" does not exist"),
    )
}

fn undefined_user(name: &str) -> Error {
    Error::sql(
        sqlstate::UNDEFINED_OBJECT,
        format!("user \"{name}\" does not exist"),
    )
}

/// The catalog of this leader replica: the state its raft group agreed on, as applied
/// here, and the way to change it (see [`crate::replica`]).
pub struct Catalog {
    state: Arc<Mutex<Arc<CatalogState>>>,
    replica: Replica<Result<Arc<CatalogState>>>,
    /// One catalog change of this replica at a time, as before replication: each is built
    /// on the state the previous one left.
    write_lock: tokio::sync::Mutex<()>,
    /// Commands held on disk when it opened: applied before it serves anything.
    commit_at_open: u64,
    last_at_open: u64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Applies committed catalog commands (JSON) for the replica driver.
struct CatalogMachine {
    state: Arc<Mutex<Arc<CatalogState>>>,
    /// Slices of a cluster this group bootstraps.
    slices: u32,
}

fn lock_state(state: &Mutex<Arc<CatalogState>>) -> std::sync::MutexGuard<'_, Arc<CatalogState>> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl StateMachine for CatalogMachine {
    type Output = Result<Arc<CatalogState>>;

    fn apply(&mut self, bytes: &[u8]) -> Self::Output {
        let command: Command = serde_json::from_slice(bytes)
            .map_err(|e| Error::CatalogIo(format!("corrupt catalog command: {e}")))?;
        let mut current = lock_state(&self.state);
        let mut next = (**current).clone();
        apply(&mut next, &command)?;
        *current = Arc::new(next);
        Ok(current.clone())
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&**lock_state(&self.state))
            .map_err(|e| Error::CatalogIo(format!("encoding snapshot: {e}")))
    }

    fn restore(&mut self, data: &[u8]) -> Result<()> {
        let state: CatalogState = serde_json::from_slice(data)
            .map_err(|e| Error::CatalogIo(format!("corrupt catalog snapshot: {e}")))?;
        *lock_state(&self.state) = Arc::new(state);
        Ok(())
    }

    fn bootstrap(&self) -> Option<Vec<u8>> {
        if lock_state(&self.state).slices != 0 {
            return None;
        }
        serde_json::to_vec(&Command::Bootstrap {
            slices: self.slices.max(1),
            hash_version: SLICE_HASH_VERSION,
        })
        .ok()
    }
}

impl Catalog {
    /// Opens (or creates) this replica's catalog under `dir` and starts its raft replica; a
    /// new group is bootstrapped with `slices` slices by its first raft leader. Call
    /// [`Catalog::wait_ready`] (with the `Raft` service being served) before using it.
    ///
    /// A catalog of a leader from before replication (`snapshot.json` + `commands.log`)
    /// becomes the first raft snapshot of a group of one, in place.
    pub fn open(dir: &Path, slices: u32, replica: &ReplicaConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let raft_dir = dir.join("raft");
        if !DiskStorage::exists(&raft_dir) && legacy_catalog_exists(dir) {
            upgrade_legacy(dir, &raft_dir, replica)?;
        }
        let state = Arc::new(Mutex::new(Arc::new(CatalogState::default())));
        let machine = CatalogMachine {
            state: state.clone(),
            slices,
        };
        let started = driver::start(&raft_dir, replica, machine, SNAPSHOT_EVERY)?;
        tokio::spawn(transport::run_senders(
            replica.node_id,
            started.replica.clone(),
            started.outgoing,
        ));
        // A new replica joins; one that stopped while it was still a learner (added, not
        // yet promoted) asks again. A removed replica stays out until its disk is emptied.
        let status = started.replica.status();
        if (started.fresh && !replica.join.is_empty()) || status.learners.contains(&replica.node_id)
        {
            tokio::spawn(membership::join(started.replica.clone(), replica.clone()));
        } else if !status.initialized {
            tokio::spawn(membership::decide(started.replica.clone(), replica.clone()));
        }
        Ok(Catalog {
            state,
            replica: started.replica,
            write_lock: tokio::sync::Mutex::new(()),
            commit_at_open: started.commit_at_open,
            last_at_open: started.last_at_open,
            thread: Mutex::new(Some(started.thread)),
        })
    }

    /// Waits until this replica has applied what it held on disk and the cluster is
    /// bootstrapped (a new group needs a majority of its replicas up for that).
    pub async fn wait_ready(&self) -> Result<()> {
        self.replica.wait_applied(self.commit_at_open).await?;
        if self.replica.is_sole_voter() {
            // Its own election commits all it holds.
            self.replica.wait_applied(self.last_at_open).await?;
        } else {
            // Caught up with the group's leader (which may take an election).
            while let Err(e) = self.replica.read_barrier().await {
                tracing::info!(error = %e.user_message(), "waiting for the leader replicas");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        while self.snapshot().slices == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The gRPC service that receives the other replicas' raft messages.
    pub fn raft_service(&self) -> RaftService<Result<Arc<CatalogState>>> {
        RaftService {
            replica: self.replica.clone(),
        }
    }

    pub fn replica_status(&self) -> ReplicaStatus {
        self.replica.status()
    }

    /// Removes leader replica `id` from the raft group (through the raft leader).
    pub async fn remove_replica(&self, id: u64) -> Result<()> {
        membership::remove_replica(&self.replica, id)
            .await
            .map(|_| ())
    }

    /// The version applied here, pinned.
    pub fn snapshot(&self) -> Arc<CatalogState> {
        lock_state(&self.state).clone()
    }

    /// Waits until this replica has applied every command any replica had committed (and
    /// so acknowledged) when it was called: a statement that pins its catalog afterwards
    /// misses none of them.
    pub async fn read_barrier(&self) -> Result<()> {
        self.replica.read_barrier().await
    }

    /// A table id no other table has or will get (ids are not reused, even if the table
    /// that took one is never committed): reserved through the replica group, so two
    /// replicas never hand out the same one.
    pub async fn allocate_table_id(&self) -> Result<u64> {
        let state = self
            .execute(|_| Ok(Command::ReserveTableIds { count: 1 }))
            .await?;
        Ok(state.next_table_id - 1)
    }

    /// Builds a command from the current state and commits it through the replica group:
    /// returns the state right after it, once a majority has it and it is applied here.
    /// Commands of this replica are built and committed one at a time; a command that
    /// fails on the state it was built on is refused without a round trip.
    pub async fn execute(
        &self,
        build: impl FnOnce(&CatalogState) -> Result<Command>,
    ) -> Result<Arc<CatalogState>> {
        let _turn = self.write_lock.lock().await;
        self.replica.read_barrier().await?;
        let state = self.snapshot();
        let command = build(&state)?;
        let mut trial = (*state).clone();
        apply(&mut trial, &command)?;
        drop(trial);
        let bytes = serde_json::to_vec(&command)
            .map_err(|e| Error::CatalogIo(format!("encoding command: {e}")))?;
        self.replica.propose(bytes).await?
    }

    /// Stops the replica's raft thread and waits for it (it finishes the write at hand).
    pub fn stop(&self) {
        self.replica.stop();
        let thread = match self.thread.lock() {
            Ok(mut t) => t.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn legacy_catalog_exists(dir: &Path) -> bool {
    dir.join("snapshot.json").is_file() || dir.join("commands.log").is_file()
}

/// Reads a catalog written before replication: its snapshot, then its command log.
fn legacy_state(dir: &Path) -> Result<CatalogState> {
    let mut state: CatalogState = match std::fs::read(dir.join("snapshot.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::CatalogIo(format!("corrupt catalog snapshot: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogState::default(),
        Err(e) => return Err(io(e)),
    };
    if let Ok(file) = File::open(dir.join("commands.log")) {
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        let count = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: LogEntry = match serde_json::from_str(&line) {
                Ok(e) => e,
                // A torn last line is a command that was never acknowledged.
                Err(_) if i + 1 == count => {
                    tracing::warn!("ignoring torn last line of the catalog log");
                    break;
                }
                Err(e) => {
                    return Err(Error::CatalogIo(format!(
                        "corrupt catalog log line {}: {e}",
                        i + 1
                    )));
                }
            };
            if entry.version <= state.version {
                continue;
            }
            apply(&mut state, &entry.command)?;
        }
    }
    Ok(state)
}

/// Turns a catalog from before replication into the first raft snapshot of a group of one
/// (index 1, term 1); the old files are kept beside it as `*.pre-raft`.
fn upgrade_legacy(dir: &Path, raft_dir: &Path, replica: &ReplicaConfig) -> Result<()> {
    if replica.peers.len() > 1 {
        return Err(Error::Config(format!(
            "{} holds a catalog from before leader replication: start it as a group of one \
             replica first (no --peers), then add replicas to it",
            dir.display()
        )));
    }
    let state = legacy_state(dir)?;
    let data = serde_json::to_vec(&state)
        .map_err(|e| Error::CatalogIo(format!("encoding snapshot: {e}")))?;
    let mut storage = DiskStorage::open(raft_dir)?;
    let mut snapshot = raft::prelude::Snapshot {
        data: data.into(),
        ..Default::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.mut_conf_state().voters = vec![replica.node_id];
    storage.apply_snapshot(snapshot)?;
    for name in ["snapshot.json", "commands.log"] {
        let from = dir.join(name);
        if from.is_file() {
            std::fs::rename(&from, dir.join(format!("{name}.pre-raft"))).map_err(io)?;
        }
    }
    blueshift_common::store::sync_dir(dir).map_err(|e| Error::CatalogIo(e.to_string()))?;
    tracing::info!(
        version = state.version,
        "upgraded the catalog to a raft group of one replica"
    );
    Ok(())
}

fn io(e: std::io::Error) -> Error {
    Error::CatalogIo(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blueshift_common::types::{ColumnDef, ColumnType, DistStyle};

    async fn open(dir: &Path, slices: u32) -> Catalog {
        let c = Catalog::open(dir, slices, &ReplicaConfig::single()).unwrap();
        c.wait_ready().await.unwrap();
        c
    }

    fn table(id: u64, name: &str) -> TableDef {
        TableDef {
            owner: "blueshift".into(),
            id,
            schema: "public".into(),
            name: name.into(),
            columns: vec![ColumnDef::new("a", ColumnType::Integer, true)],
            dist: DistStyle::Even,
            dist_auto: false,
            sort_key: vec![],
            segments: BTreeMap::new(),
            hash_version: 1,
            dropped_columns: vec![],
            temporary: false,
        }
    }

    #[tokio::test]
    async fn state_survives_reopen_through_log_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = open(dir.path(), 4).await;
            for i in 0..(SNAPSHOT_EVERY + 5) {
                let name = format!("t{i}");
                c.execute(|s| Ok(Command::CreateTable(table(s.next_table_id, &name))))
                    .await
                    .unwrap();
            }
            c.execute(|s| {
                let id = s.table_by_name("public", "t3").unwrap().id;
                Ok(Command::CommitSegments {
                    table_id: id,
                    segments: vec![Segment {
                        path: "x".into(),
                        slice: 2,
                        rows: 7,
                        bytes: 10,
                    }],
                })
            })
            .await
            .unwrap();
        }
        let c = open(dir.path(), 99).await;
        let s = c.snapshot();
        assert_eq!(s.slices, 4);
        assert_eq!(s.tables.len() as u64, SNAPSHOT_EVERY + 5);
        assert_eq!(s.table_by_name("public", "t3").unwrap().total_rows(), 7);
    }

    #[tokio::test]
    async fn failed_commands_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path(), 2).await;
        c.execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
            .await
            .unwrap();
        let before = c.snapshot().version;
        let err = c
            .execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), "42P07");
        assert_eq!(c.snapshot().version, before);
    }

    fn segment(path: &str, slice: u32) -> Segment {
        Segment {
            path: path.into(),
            slice,
            rows: 1,
            bytes: 1,
        }
    }

    #[tokio::test]
    async fn replacing_segments_is_all_or_nothing_and_the_second_writer_gets_40001() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path(), 4).await;
        let state = c
            .execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
            .await
            .unwrap();
        let id = state.table_by_name("public", "t").unwrap().id;
        c.execute(|_| {
            Ok(Command::CommitSegments {
                table_id: id,
                segments: vec![segment("a", 0), segment("b", 1)],
            })
        })
        .await
        .unwrap();
        let change = |remove: &[&str], add: Vec<Segment>| Command::ReplaceSegments {
            changes: vec![SegmentChange {
                table_id: id,
                remove: remove.iter().map(|p| p.to_string()).collect(),
                add,
            }],
        };
        // Two statements both read segment "a"; the first to commit wins.
        c.execute(|_| Ok(change(&["a"], vec![segment("a2", 0)])))
            .await
            .unwrap();
        let err = c
            .execute(|_| Ok(change(&["a", "b"], vec![segment("a3", 0)])))
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), "40001");
        let t = c.snapshot().table_by_name("public", "t").unwrap().clone();
        let mut paths: Vec<&str> = t
            .segments
            .values()
            .flatten()
            .map(|s| s.path.as_str())
            .collect();
        paths.sort();
        assert_eq!(paths, vec!["a2", "b"], "the failed command changed nothing");
    }

    #[tokio::test]
    async fn a_catalog_from_before_replication_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        // What a leader of the previous format left: a snapshot and a command log after it.
        let mut state = CatalogState::default();
        apply(
            &mut state,
            &Command::Bootstrap {
                slices: 3,
                hash_version: SLICE_HASH_VERSION,
            },
        )
        .unwrap();
        apply(&mut state, &Command::CreateTable(table(100_000, "old"))).unwrap();
        std::fs::write(
            dir.path().join("snapshot.json"),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let logged = LogEntry {
            version: state.version + 1,
            command: Command::CreateTable(table(100_001, "logged")),
        };
        std::fs::write(
            dir.path().join("commands.log"),
            format!("{}\n{{\"torn", serde_json::to_string(&logged).unwrap()),
        )
        .unwrap();
        let peers = ReplicaConfig {
            node_id: 1,
            peers: BTreeMap::from([(1, String::new()), (2, "h:1".into())]),
            join: Vec::new(),
        };
        let refused = Catalog::open(dir.path(), 3, &peers).err().unwrap();
        assert!(refused.to_string().contains("group of one"), "{refused}");
        {
            let c = open(dir.path(), 8).await;
            let s = c.snapshot();
            assert_eq!(s.slices, 3);
            assert!(s.table_by_name("public", "old").is_some());
            assert!(s.table_by_name("public", "logged").is_some());
            c.execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "new"))))
                .await
                .unwrap();
        }
        assert!(!dir.path().join("snapshot.json").exists());
        assert!(dir.path().join("snapshot.json.pre-raft").exists());
        let c = open(dir.path(), 8).await;
        let s = c.snapshot();
        assert_eq!(s.tables.len(), 3, "{:?}", s.tables.keys());
    }

    #[tokio::test]
    async fn table_ids_and_identity_blocks_are_reserved_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path(), 2).await;
        let a = c.allocate_table_id().await.unwrap();
        let b = c.allocate_table_id().await.unwrap();
        assert_eq!(b, a + 1);
        c.execute(|_| Ok(Command::CreateTable(table(b, "t"))))
            .await
            .unwrap();
        let block = |count| Command::ReserveIdentityBlock { table_id: b, count };
        let first = c.execute(|_| Ok(block(10))).await.unwrap();
        let second = c.execute(|_| Ok(block(5))).await.unwrap();
        assert_eq!(first.identity_reserved[&b], 10);
        assert_eq!(second.identity_reserved[&b], 15);
        drop(c);
        let c = open(dir.path(), 2).await;
        assert!(
            c.allocate_table_id().await.unwrap() > b,
            "ids are not reused"
        );
    }
}
