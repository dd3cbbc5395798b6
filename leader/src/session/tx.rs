//! Transactions with snapshot isolation: `BEGIN` pins the catalog version the block reads;
//! every change a statement of the block makes (DDL, loads, DELETE / UPDATE / MERGE) is a
//! catalog command applied to the block's own copy of that version (so later statements of
//! the block see it) and kept; `COMMIT` appends them all to the catalog as one
//! [`Command::Transaction`], which fails with 40001 and changes nothing if another
//! transaction committed a change to a table this one changed after this one began (the
//! second committer loses, as in Redshift's serializable isolation). `ROLLBACK`, an
//! aborted block, or a closed connection drop the commands: the segments they wrote are
//! never referenced, and garbage collection deletes them. `SAVEPOINT` / `ROLLBACK TO` /
//! `RELEASE` mark and restore points in the list.
//!
//! A statement sees its session's transaction through the task-local [`TRANSACTION`]
//! (scoped by the PostgreSQL protocol handler for each statement); [`snapshot`] and
//! [`execute`] are how session code reads and changes the catalog, in or out of a block.
//! This module must not know about the wire protocol.

use std::sync::{Arc, Mutex};

use blueshift_common::error::sqlstate;

use crate::LeaderState;
use crate::catalog::{CatalogState, Command, apply};
use crate::error::{Error, Result};
use crate::gc::PinGuard;
use crate::sql::transaction::TxStatement;

/// An open transaction block.
pub struct Transaction {
    /// The catalog version the block read when it began.
    base_version: u64,
    /// That version with the block's commands applied.
    state: Arc<CatalogState>,
    commands: Vec<Command>,
    /// (name, commands before it, state at it), oldest first.
    savepoints: Vec<(String, usize, Arc<CatalogState>)>,
    /// A statement of the block failed: only ROLLBACK (or COMMIT, which rolls back) is
    /// accepted.
    failed: bool,
    /// Keeps GC off the segments the block wrote (and the ones it reads) until it ends.
    _pin: PinGuard,
}

/// A session's transaction slot: `None` outside a block.
pub type Slot = Arc<Mutex<Option<Transaction>>>;

/// The temporary tables a session created, dropped when it ends (this is dropped with the
/// session), and the session's own schema they are in (`pg_temp_<replica>_<n>`, as
/// `pg_temp_<n>` in PostgreSQL and Redshift): only the session's search path has it, first, so its temporary tables shadow
/// others of the same name and no other session sees them.
pub struct TempTables {
    leader: Arc<LeaderState>,
    ids: Mutex<Vec<u64>>,
    schema: String,
}

impl TempTables {
    pub fn new(leader: Arc<LeaderState>) -> Self {
        // Unique among the replica's sessions (and, by its id, among all replicas'); a
        // replica's start drops every temporary table its sessions before it left, so the
        // numbers may start again.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = temp_schema_prefix(leader.catalog.replica_status().node_id);
        TempTables {
            leader,
            ids: Mutex::new(Vec::new()),
            schema: format!("{prefix}{n}"),
        }
    }

    fn add(&self, id: u64) {
        match self.ids.lock() {
            Ok(mut ids) => ids.push(id),
            Err(poisoned) => poisoned.into_inner().push(id),
        }
    }
}

/// The start of the temporary schemas' names of replica `node`'s sessions.
pub fn temp_schema_prefix(node: u64) -> String {
    format!("{}{node}_", crate::catalog::TEMP_SCHEMA_PREFIX)
}

impl Drop for TempTables {
    fn drop(&mut self) {
        let ids = match self.ids.lock() {
            Ok(mut ids) => std::mem::take(&mut *ids),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        if ids.is_empty() {
            return;
        }
        // Dropping them is a catalog change, which is awaited; the session is gone already.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("temporary tables outlive their session until this replica restarts");
            return;
        };
        let leader = self.leader.clone();
        runtime.spawn(drop_temporary(leader, ids));
    }
}

async fn drop_temporary(leader: Arc<LeaderState>, ids: Vec<u64>) {
    for id in ids {
        // Gone already (dropped by the session, or its block rolled back): nothing to do.
        let _ = leader
            .catalog
            .execute(|s| {
                if s.tables.get(&id).is_some_and(|t| t.temporary)
                    && let Some(drop) = s.drop_command(&[id], true)
                {
                    // Views over it go with it (they could not outlive it anyway).
                    Ok(drop)
                } else {
                    Err(Error::sql(
                        sqlstate::UNDEFINED_TABLE,
                        "temporary table is gone",
                    ))
                }
            })
            .await;
    }
}

tokio::task_local! {
    /// The temporary tables of the session whose statement runs.
    pub static TEMP_TABLES: Arc<TempTables>;
}

/// The temporary schema of the running statement's session (none without a session).
pub fn temp_schema() -> Option<String> {
    TEMP_TABLES.try_with(|t| t.schema.clone()).ok()
}

/// Records a temporary table the running statement created, for its session to drop at
/// its end. Without a session (Flight SQL), a temporary table cannot be created.
pub fn note_temporary(id: u64) -> Result<()> {
    TEMP_TABLES.try_with(|t| t.add(id)).map_err(|_| {
        Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "temporary tables need a session: use the PostgreSQL protocol",
        )
    })
}

tokio::task_local! {
    /// The transaction slot of the session whose statement runs (unset: no session, so
    /// every statement commits on its own, as over Flight SQL).
    pub static TRANSACTION: Slot;
}

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Transaction>> {
    match slot.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The running statement's transaction slot, if it has a session.
pub fn current() -> Option<Slot> {
    TRANSACTION.try_with(Arc::clone).ok()
}

/// The catalog as the running statement sees it: its block's state, or the latest version.
pub fn snapshot(leader: &LeaderState) -> Arc<CatalogState> {
    if let Some(slot) = current()
        && let Some(tx) = lock(&slot).as_ref()
    {
        return tx.state.clone();
    }
    leader.catalog.snapshot()
}

/// Applies a catalog command for the running statement: kept in its block (and applied to
/// the block's state) inside a transaction, committed at once outside one.
pub async fn execute(
    leader: &LeaderState,
    build: impl FnOnce(&CatalogState) -> Result<Command>,
) -> Result<Arc<CatalogState>> {
    if let Some(slot) = current() {
        let mut guard = lock(&slot);
        if let Some(tx) = guard.as_mut() {
            let command = build(&tx.state)?;
            let mut next = (*tx.state).clone();
            apply(&mut next, &command)?;
            tx.commands.push(command);
            tx.state = Arc::new(next);
            return Ok(tx.state.clone());
        }
    }
    leader.catalog.execute(build).await
}

/// Whether the running statement is inside a transaction block.
pub fn in_block() -> bool {
    current().is_some_and(|slot| lock(&slot).is_some())
}

/// Whether the running statement is in a block that an earlier failure aborted.
pub fn aborted() -> bool {
    current().is_some_and(|slot| lock(&slot).as_ref().is_some_and(|tx| tx.failed))
}

/// Marks the running statement's block (if any) as aborted.
pub fn abort() {
    if let Some(slot) = current() {
        abort_slot(&slot);
    }
}

/// Marks a session's block (if any) as aborted: a statement of it failed after it
/// returned (while its rows were sent), which the protocol handler saw.
pub fn abort_slot(slot: &Slot) {
    if let Some(tx) = lock(slot).as_mut() {
        tx.failed = true;
    }
}

fn no_savepoint(name: &str) -> Error {
    Error::sql(
        sqlstate::INVALID_SAVEPOINT,
        format!("savepoint \"{name}\" does not exist"),
    )
}

/// Runs a transaction-control statement on the session's slot; the command tag.
pub async fn control(
    leader: &LeaderState,
    slot: &Slot,
    statement: &TxStatement,
) -> Result<&'static str> {
    match statement {
        TxStatement::Begin if lock(slot).is_none() => {
            // The block reads the catalog as of its start: one that has every commit
            // acknowledged before it, on any replica.
            leader.catalog.read_barrier().await?;
        }
        TxStatement::Commit => {
            let Some(tx) = lock(slot).take() else {
                return Ok("COMMIT");
            };
            if tx.failed {
                return Ok("ROLLBACK");
            }
            if !tx.commands.is_empty() {
                let base_version = tx.base_version;
                let commands = tx.commands;
                leader
                    .catalog
                    .execute(move |_| {
                        Ok(Command::Transaction {
                            base_version,
                            commands,
                        })
                    })
                    .await?;
            }
            return Ok("COMMIT");
        }
        _ => {}
    }
    let mut guard = lock(slot);
    match statement {
        TxStatement::Begin => {
            // PostgreSQL warns and carries on; so do we (the block stays as it is).
            if guard.is_none() {
                let pin = leader.pins.pin();
                let state = leader.catalog.snapshot();
                *guard = Some(Transaction {
                    base_version: state.version,
                    state,
                    commands: Vec::new(),
                    savepoints: Vec::new(),
                    failed: false,
                    _pin: pin,
                });
            }
            Ok("BEGIN")
        }
        TxStatement::Commit => Ok("COMMIT"),
        TxStatement::Rollback => {
            *guard = None;
            Ok("ROLLBACK")
        }
        TxStatement::Savepoint(name) => {
            let tx = usable_block(guard.as_mut(), "SAVEPOINT", in_failed_block)?;
            tx.savepoints
                .push((name.clone(), tx.commands.len(), tx.state.clone()));
            Ok("SAVEPOINT")
        }
        TxStatement::RollbackTo(name) => {
            // PostgreSQL resumes a failed block here; the protocol layer we use keeps a
            // failed block failed until it ends, so say so rather than pretend.
            let tx = usable_block(guard.as_mut(), "ROLLBACK TO SAVEPOINT", || {
                Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "ROLLBACK TO SAVEPOINT cannot resume a block after a failed statement yet: \
                     ROLLBACK the block",
                )
            })?;
            let pos = savepoint(tx, name)?;
            // The savepoint stays; later ones go.
            tx.savepoints.truncate(pos + 1);
            let (_, commands, state) = &tx.savepoints[pos];
            tx.commands.truncate(*commands);
            tx.state = state.clone();
            Ok("ROLLBACK")
        }
        TxStatement::Release(name) => {
            let tx = usable_block(guard.as_mut(), "RELEASE SAVEPOINT", in_failed_block)?;
            let pos = savepoint(tx, name)?;
            tx.savepoints.truncate(pos);
            Ok("RELEASE")
        }
    }
}

/// The open block a savepoint statement works on: 25P01 outside one, `failed()` in an
/// aborted one.
fn usable_block<'a>(
    tx: Option<&'a mut Transaction>,
    what: &str,
    failed: impl FnOnce() -> Error,
) -> Result<&'a mut Transaction> {
    let Some(tx) = tx else {
        return Err(Error::sql(
            sqlstate::NO_ACTIVE_TRANSACTION,
            format!("{what} can only be used in transaction blocks"),
        ));
    };
    if tx.failed {
        return Err(failed());
    }
    Ok(tx)
}

/// The position of the latest savepoint named `name`.
fn savepoint(tx: &Transaction, name: &str) -> Result<usize> {
    tx.savepoints
        .iter()
        .rposition(|(n, _, _)| n == name)
        .ok_or_else(|| no_savepoint(name))
}

pub fn in_failed_block() -> Error {
    Error::sql(
        sqlstate::IN_FAILED_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}
