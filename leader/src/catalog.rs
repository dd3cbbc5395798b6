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

use blueshift_common::error::sqlstate;
use blueshift_common::hash::SLICE_HASH_VERSION;
use blueshift_common::types::{Segment, TableDef};
use serde::{Deserialize, Serialize};

use crate::auth::UserDef;
use crate::error::{Error, Result};

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
}

impl CatalogState {
    pub fn table_by_name(&self, schema: &str, name: &str) -> Option<&TableDef> {
        self.tables
            .values()
            .find(|t| t.schema == schema && t.name == name)
    }
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
    CreateUser(UserDef),
    /// Replaces an existing user's definition.
    AlterUser(UserDef),
    DropUser {
        name: String,
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
    apply_one(state, command)?;
    let mut changed = Vec::new();
    tables_changed(command, &mut changed);
    if let Command::CreateTable(def) = command {
        changed.push(def.id);
    }
    for id in changed {
        state.written.insert(id, state.version);
    }
    state.written.retain(|id, _| state.tables.contains_key(id));
    Ok(())
}

fn apply_one(state: &mut CatalogState, command: &Command) -> Result<()> {
    match command {
        Command::Transaction {
            base_version,
            commands,
        } => {
            let mut changed = Vec::new();
            tables_changed(command, &mut changed);
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
                apply(state, c)?;
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
            if state.table_by_name(&def.schema, &def.name).is_some() {
                return Err(Error::sql(
                    sqlstate::DUPLICATE_TABLE,
                    format!("relation \"{}\" already exists", def.name),
                ));
            }
            state.next_table_id = state.next_table_id.max(def.id + 1);
            state.tables.insert(def.id, def.clone());
        }
        Command::DropTable { id } => {
            if state.tables.remove(id).is_none() {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!("table with id {id} does not exist"),
                ));
            }
        }
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
            if state
                .tables
                .values()
                .any(|t| t.id != *id && t.schema == schema && t.name == *name)
            {
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
    }
    state.version += 1;
    Ok(())
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
            columns: vec![ColumnDef {
                name: "a".into(),
                ty: ColumnType::Integer,
                nullable: true,
            }],
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
