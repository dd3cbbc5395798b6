//! The catalog: every table, its columns, distribution, sort key and committed segments, as a
//! deterministic state machine of [`Command`]s. Commands are appended to a log (one JSON line
//! each, fsynced) under `<data-dir>/catalog/`, and the whole state is snapshotted every
//! [`SNAPSHOT_EVERY`] commands, so a restart replays snapshot + log and loses nothing that was
//! acknowledged. Readers take an `Arc<CatalogState>`: a pinned version that later commands do
//! not change (snapshot isolation for queries). The snapshot is written to a temporary file,
//! fsynced, renamed into place and the directory fsynced before the log is truncated.
//! Applying a command must depend only on the state and the command, so the log can later be
//! replicated with raft.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Records that the leader may hand out a table's identity values up to the
    /// `upto`-th (a sequence's reservation: never lowered, never rolled back, and not a
    /// change of the table that transactions conflict on). A leader that starts again
    /// continues after it, so no value a committed row holds is handed out twice.
    ReserveIdentity {
        table_id: u64,
        upto: i64,
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
    }
    state.version += 1;
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

pub struct Catalog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    state: Arc<CatalogState>,
    log: File,
    since_snapshot: u64,
    /// Table ids handed out but maybe not committed yet (a CREATE TABLE inside a
    /// transaction block): never handed out twice.
    reserved_table_id: u64,
}

impl Catalog {
    /// Opens (or creates) the catalog under `dir`, replaying snapshot and log. A new catalog
    /// is bootstrapped with `slices` slices.
    pub fn open(dir: &Path, slices: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let snapshot_path = dir.join("snapshot.json");
        let log_path = dir.join("commands.log");
        let mut state: CatalogState = match std::fs::read(&snapshot_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::CatalogIo(format!("corrupt catalog snapshot: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogState::default(),
            Err(e) => return Err(io(e)),
        };
        let mut replayed = 0;
        if let Ok(file) = File::open(&log_path) {
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
                replayed += 1;
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        blueshift_common::store::sync_dir(dir).map_err(|e| Error::CatalogIo(e.to_string()))?;
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                log,
                since_snapshot: replayed,
                reserved_table_id: 0,
            }),
        };
        if catalog.snapshot().slices == 0 {
            catalog.execute(|_| {
                Ok(Command::Bootstrap {
                    slices: slices.max(1),
                    hash_version: SLICE_HASH_VERSION,
                })
            })?;
        }
        // Rewrite the snapshot (and a clean log) so the log never contains a torn line.
        catalog.write_snapshot()?;
        Ok(catalog)
    }

    /// The current version, pinned.
    pub fn snapshot(&self) -> Arc<CatalogState> {
        match self.inner.lock() {
            Ok(g) => g.state.clone(),
            Err(p) => p.into_inner().state.clone(),
        }
    }

    /// Builds a command from the current state and applies it durably, atomically with
    /// respect to other commands. Returns the new state.
    /// A table id no other table has or will get (ids are not reused, even if the table
    /// that took one is never committed).
    pub fn allocate_table_id(&self) -> Result<u64> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::CatalogIo("catalog lock poisoned".into()))?;
        let id = inner.reserved_table_id.max(inner.state.next_table_id);
        inner.reserved_table_id = id + 1;
        Ok(id)
    }

    pub fn execute(
        &self,
        build: impl FnOnce(&CatalogState) -> Result<Command>,
    ) -> Result<Arc<CatalogState>> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::CatalogIo("catalog lock poisoned".into()))?;
        let command = build(&inner.state)?;
        let mut next = (*inner.state).clone();
        apply(&mut next, &command)?;
        let entry = LogEntry {
            version: next.version,
            command,
        };
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| Error::CatalogIo(format!("encoding command: {e}")))?;
        line.push(b'\n');
        inner.log.write_all(&line).map_err(io)?;
        inner.log.sync_data().map_err(io)?;
        inner.state = Arc::new(next);
        inner.since_snapshot += 1;
        let state = inner.state.clone();
        if inner.since_snapshot >= SNAPSHOT_EVERY {
            drop(inner);
            self.write_snapshot()?;
        }
        Ok(state)
    }

    fn write_snapshot(&self) -> Result<()> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::CatalogIo("catalog lock poisoned".into()))?;
        let bytes = serde_json::to_vec(&*inner.state)
            .map_err(|e| Error::CatalogIo(format!("encoding snapshot: {e}")))?;
        let tmp = self.dir.join("snapshot.json.tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, self.dir.join("snapshot.json")).map_err(io)?;
        // The rename must be durable before the log is emptied: otherwise a power cut could
        // leave the old snapshot beside an empty log.
        blueshift_common::store::sync_dir(&self.dir)
            .map_err(|e| Error::CatalogIo(e.to_string()))?;
        // Entries up to the snapshot's version are now redundant.
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.dir.join("commands.log"))
            .map_err(io)?;
        log.sync_all().map_err(io)?;
        let log = OpenOptions::new()
            .append(true)
            .open(self.dir.join("commands.log"))
            .map_err(io)?;
        inner.log = log;
        inner.since_snapshot = 0;
        Ok(())
    }
}

fn io(e: std::io::Error) -> Error {
    Error::CatalogIo(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blueshift_common::types::{ColumnDef, ColumnType, DistStyle};

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

    #[test]
    fn state_survives_reopen_through_log_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path(), 4).unwrap();
            for i in 0..(SNAPSHOT_EVERY + 5) {
                let name = format!("t{i}");
                c.execute(|s| Ok(Command::CreateTable(table(s.next_table_id, &name))))
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
            .unwrap();
        }
        let c = Catalog::open(dir.path(), 99).unwrap();
        let s = c.snapshot();
        assert_eq!(s.slices, 4);
        assert_eq!(s.tables.len() as u64, SNAPSHOT_EVERY + 5);
        assert_eq!(s.table_by_name("public", "t3").unwrap().total_rows(), 7);
    }

    #[test]
    fn failed_commands_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path(), 2).unwrap();
        c.execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
            .unwrap();
        let before = c.snapshot().version;
        let err = c
            .execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
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

    #[test]
    fn replacing_segments_is_all_or_nothing_and_the_second_writer_gets_40001() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path(), 4).unwrap();
        let state = c
            .execute(|s| Ok(Command::CreateTable(table(s.next_table_id, "t"))))
            .unwrap();
        let id = state.table_by_name("public", "t").unwrap().id;
        c.execute(|_| {
            Ok(Command::CommitSegments {
                table_id: id,
                segments: vec![segment("a", 0), segment("b", 1)],
            })
        })
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
            .unwrap();
        let err = c
            .execute(|_| Ok(change(&["a", "b"], vec![segment("a3", 0)])))
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
}
