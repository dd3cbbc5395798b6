//! The raft log of one replica on its disk: raft-rs's [`Storage`] over two files in
//! `<data-dir>/catalog/raft/`.
//!
//! - `log`: an append-only file of records `[len u32][crc32 u32][kind u8, protobuf bytes]`
//!   (little endian): log entries, hard states and conf states. An entry at index `i`
//!   replaces every entry from `i` on (raft overwrites a follower's uncommitted tail that
//!   way); the last hard state and conf state win. [`DiskStorage::persist`] fsyncs before it
//!   returns, so nothing is acknowledged to raft (and so to a peer or a client) that a power
//!   cut could take back.
//! - `snapshot`: the latest snapshot (metadata and the catalog state as data), written to a
//!   temporary file, fsynced and renamed. Taking one compacts the log: the entries it covers
//!   are dropped and `log` is rewritten the same way (temporary file, fsync, rename).
//!
//! A torn last record (a crash in the middle of an append) is a write raft never heard
//! about: it is cut off on open. A bad record with good ones after it is corruption, an
//! error. This module knows nothing of catalog commands: entries' data are opaque bytes.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::error::{Error, Result};

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
/// Record header: length and CRC-32 of the payload.
const HEADER: usize = 8;

/// One replica's raft log, hard state and snapshot, in memory and on disk.
pub struct DiskStorage {
    dir: PathBuf,
    log: File,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot: every entry up to its index is folded into its data.
    snapshot: Snapshot,
    /// Entries after the snapshot's index, contiguous.
    entries: Vec<Entry>,
    /// Raft asked for a snapshot the one held cannot serve (it predates the peer's
    /// membership): the driver takes a new one.
    snapshot_wanted: Cell<bool>,
}

fn io(context: &str, e: std::io::Error) -> Error {
    Error::CatalogIo(format!("{context}: {e}"))
}

fn encode<M: protobuf::Message>(m: &M) -> Result<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| Error::CatalogIo(format!("encoding a raft record: {e}")))
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes).map_err(|e| Error::CatalogIo(format!("corrupt raft {what}: {e}")))
}

fn record(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(payload);
    out.extend_from_slice(&((payload.len() + 1) as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Writes `bytes` to `path` durably: a temporary file, fsynced, renamed, directory fsynced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(|e| io("creating a raft file", e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| io("writing a raft file", e))?;
    }
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| io("renaming a raft file", e))?;
    blueshift_common::store::sync_dir(dir).map_err(|e| Error::CatalogIo(e.to_string()))
}

impl DiskStorage {
    /// Whether `dir` holds a raft log (a replica that ran before).
    pub fn exists(dir: &Path) -> bool {
        dir.join("log").is_file() || dir.join("snapshot").is_file()
    }

    /// Opens the storage under `dir`, creating an empty one (no entries, no members) if
    /// there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the raft directory", e))?;
        let snapshot: Snapshot = match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let payload = check_whole_record(&bytes, KIND_SNAPSHOT)
                    .ok_or_else(|| Error::CatalogIo("corrupt raft snapshot file".into()))?;
                decode(payload, "snapshot")?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(io("reading the raft snapshot", e)),
        };
        let mut storage = DiskStorage {
            dir: dir.to_path_buf(),
            log: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("log"))
                .map_err(|e| io("opening the raft log", e))?,
            hard_state: HardState::default(),
            conf_state: snapshot.get_metadata().get_conf_state().clone(),
            snapshot,
            entries: Vec::new(),
            snapshot_wanted: Cell::new(false),
        };
        storage.hard_state.commit = storage.snapshot_index();
        storage.hard_state.term = storage.snapshot.get_metadata().term;
        storage.replay()?;
        blueshift_common::store::sync_dir(dir).map_err(|e| Error::CatalogIo(e.to_string()))?;
        Ok(storage)
    }

    fn replay(&mut self) -> Result<()> {
        let mut bytes = Vec::new();
        File::open(self.dir.join("log"))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("reading the raft log", e))?;
        let mut at = 0;
        while at < bytes.len() {
            let Some((kind, payload, next)) = read_record(&bytes, at) else {
                if record_reaches_end(&bytes, at) {
                    tracing::warn!(offset = at, "cutting a torn last record off the raft log");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(self.dir.join("log"))
                        .map_err(|e| io("opening the raft log", e))?;
                    f.set_len(at as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| io("truncating the raft log", e))?;
                    break;
                }
                return Err(Error::CatalogIo(format!(
                    "corrupt raft log record at offset {at}"
                )));
            };
            match kind {
                KIND_ENTRY => {
                    let entry: Entry = decode(payload, "log entry")?;
                    self.put_entry(entry)?;
                }
                KIND_HARD_STATE => self.hard_state = decode(payload, "hard state")?,
                KIND_CONF_STATE => self.conf_state = decode(payload, "conf state")?,
                other => {
                    return Err(Error::CatalogIo(format!(
                        "unknown raft log record kind {other} at offset {at}"
                    )));
                }
            }
            at = next;
        }
        Ok(())
    }

    /// Puts a replayed or appended entry in place: it replaces the entries from its index on.
    fn put_entry(&mut self, entry: Entry) -> Result<()> {
        let first = self.snapshot_index() + 1;
        if entry.index < first {
            // Folded into the snapshot already (a crash between snapshot and log rewrite).
            return Ok(());
        }
        let keep = (entry.index - first) as usize;
        if keep > self.entries.len() {
            return Err(Error::CatalogIo(format!(
                "raft log has a gap before entry {}",
                entry.index
            )));
        }
        self.entries.truncate(keep);
        self.entries.push(entry);
        Ok(())
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (its data is the state machine's at its index).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Appends entries and records a hard state and conf state (any of them may be absent),
    /// fsynced before it returns.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        if entries.is_empty() && hard_state.is_none() && conf_state.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in entries {
            record(KIND_ENTRY, &encode(e)?, &mut buf);
        }
        if let Some(hs) = hard_state {
            record(KIND_HARD_STATE, &encode(hs)?, &mut buf);
        }
        if let Some(cs) = conf_state {
            record(KIND_CONF_STATE, &encode(cs)?, &mut buf);
        }
        self.log
            .write_all(&buf)
            .and_then(|_| self.log.sync_data())
            .map_err(|e| io("appending to the raft log", e))?;
        for e in entries {
            self.put_entry(e.clone())?;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if let Some(cs) = conf_state {
            self.conf_state = cs.clone();
        }
        Ok(())
    }

    /// Notes a new commit index in memory only: it is written with the next hard state, and
    /// a replica that restarts before that learns it from the leader again.
    pub fn note_commit(&mut self, commit: u64) {
        self.hard_state.commit = self.hard_state.commit.max(commit);
    }

    /// Records for good that this replica was removed from its group (it then refuses
    /// work, across restarts, until its data dir is emptied and it joins again).
    pub fn mark_removed(&mut self) -> Result<()> {
        let path = self.dir.join("removed");
        std::fs::write(&path, b"removed from the group of leader replicas\n")
            .and_then(|_| File::open(&path)?.sync_all())
            .map_err(|e| io("recording the removal", e))?;
        blueshift_common::store::sync_dir(&self.dir).map_err(|e| Error::CatalogIo(e.to_string()))
    }

    /// Whether this replica was told it was removed from its group.
    pub fn is_marked_removed(&self) -> bool {
        self.dir.join("removed").is_file()
    }

    /// Whether raft asked for a newer snapshot than the one held (and forgets it).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// The index of the last entry held (the snapshot's if there is none after it).
    pub fn last_index_raw(&self) -> u64 {
        self.last()
    }

    /// Installs a snapshot received from the leader: the log is replaced by it.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        if meta.index <= self.snapshot_index() {
            return Err(Error::CatalogIo(format!(
                "raft snapshot at index {} is older than the one held ({})",
                meta.index,
                self.snapshot_index()
            )));
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let conf = meta.get_conf_state().clone();
        // Entries after the snapshot that agree with it stay (raft-rs only sends snapshots
        // a follower lacks, so normally none do).
        let keep: Vec<Entry> = match self.entry_term(meta.index) {
            Some(t) if t == meta.term => self
                .entries
                .iter()
                .filter(|e| e.index > meta.index)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        self.install(snapshot, keep, hs, conf)
    }

    /// Takes a snapshot of the state machine at `index` (applied here) with `data`, and
    /// compacts the log up to it.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<()> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let term = self.entry_term(index).ok_or_else(|| {
            Error::CatalogIo(format!(
                "cannot snapshot at raft index {index}: no such entry"
            ))
        })?;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        snapshot.set_metadata(SnapshotMetadata {
            index,
            term,
            conf_state: Some(self.conf_state.clone()).into(),
            ..Default::default()
        });
        let keep: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.index > index)
            .cloned()
            .collect();
        let (hs, conf) = (self.hard_state.clone(), self.conf_state.clone());
        self.install(snapshot, keep, hs, conf)
    }

    /// Makes `snapshot` + `entries` + `hs` + `conf` the durable state: the snapshot file
    /// first (a crash after it leaves a log whose covered entries are skipped on open),
    /// then a rewritten log.
    fn install(
        &mut self,
        snapshot: Snapshot,
        entries: Vec<Entry>,
        hs: HardState,
        conf: ConfState,
    ) -> Result<()> {
        let mut buf = Vec::new();
        record(KIND_SNAPSHOT, &encode(&snapshot)?, &mut buf);
        write_durably(&self.dir, "snapshot", &buf)?;
        let mut log = Vec::new();
        for e in &entries {
            record(KIND_ENTRY, &encode(e)?, &mut log);
        }
        record(KIND_HARD_STATE, &encode(&hs)?, &mut log);
        record(KIND_CONF_STATE, &encode(&conf)?, &mut log);
        write_durably(&self.dir, "log", &log)?;
        self.log = OpenOptions::new()
            .append(true)
            .open(self.dir.join("log"))
            .map_err(|e| io("opening the raft log", e))?;
        self.snapshot = snapshot;
        self.entries = entries;
        self.hard_state = hs;
        self.conf_state = conf;
        Ok(())
    }

    fn entry_term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        let first = self.snapshot_index() + 1;
        index
            .checked_sub(first)
            .and_then(|i| self.entries.get(i as usize))
            .map(|e| e.term)
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }
}

/// The record at `at`: kind, payload and the offset after it; `None` if it is torn or bad.
fn read_record(bytes: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let body = bytes.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    if len == 0 || crc32fast::hash(body) != crc {
        return None;
    }
    Some((body[0], &body[1..], at + HEADER + len))
}

/// Whether the bad record at `at` is the file's last (a torn append, not corruption).
fn record_reaches_end(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at..at + HEADER) {
        None => true,
        Some(header) => {
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            at + HEADER + len >= bytes.len()
        }
    }
}

/// The payload of a file holding exactly one good record of `kind`.
fn check_whole_record(bytes: &[u8], kind: u8) -> Option<&[u8]> {
    let (k, payload, next) = read_record(bytes, 0)?;
    (k == kind && next == bytes.len()).then_some(payload)
}

impl Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.snapshot_index() + 1;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let (lo, hi) = ((low - first) as usize, (high - first) as usize);
        let mut out = Vec::with_capacity(hi - lo);
        let (mut size, max) = (0u64, max_size.into().unwrap_or(u64::MAX));
        for e in &self.entries[lo..hi] {
            size += u64::from(e.compute_size());
            // At least one entry, whatever its size.
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entry_term(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.snapshot.get_metadata().get_conf_state();
        // A replica refuses a snapshot whose membership does not include it (one added
        // after the snapshot was taken): take a newer one, and let raft ask again.
        let member = conf.voters.contains(&to) || conf.learners.contains(&to);
        if self.snapshot_index() < request_index || !member {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        Entry {
            index,
            term,
            data: data.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        }
    }

    fn datas(s: &DiskStorage, low: u64, high: u64) -> Vec<String> {
        s.entries(low, high, None, GetEntriesContext::empty(false))
            .expect("entries")
            .into_iter()
            .map(|e| String::from_utf8(e.data.to_vec()).expect("utf8"))
            .collect()
    }

    #[test]
    fn entries_hard_state_and_conf_state_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = DiskStorage::open(dir.path()).expect("open");
            assert_eq!(s.first_index().expect("first"), 1);
            assert_eq!(s.last_index().expect("last"), 0);
            s.persist(
                &[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")],
                Some(&hs(1, 1, 0)),
                Some(&voters(&[1, 2, 3])),
            )
            .expect("persist");
            // A new leader overwrites the uncommitted tail from index 3.
            s.persist(
                &[entry(3, 2, "c2"), entry(4, 2, "d")],
                Some(&hs(2, 2, 3)),
                None,
            )
            .expect("persist");
            s.persist(&[], Some(&hs(2, 2, 4)), None).expect("commit");
        }
        let s = DiskStorage::open(dir.path()).expect("reopen");
        assert_eq!(datas(&s, 1, 5), ["a", "b", "c2", "d"]);
        assert_eq!(s.term(3).expect("term"), 2);
        assert_eq!(s.last_index().expect("last"), 4);
        let state = s.initial_state().expect("state");
        assert_eq!(state.hard_state, hs(2, 2, 4));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        // Asking past the end is an error raft handles, not a panic.
        assert!(
            s.entries(1, 9, None, GetEntriesContext::empty(false))
                .is_err()
        );
    }

    #[test]
    fn a_snapshot_compacts_the_log_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = DiskStorage::open(dir.path()).expect("open");
            let es: Vec<Entry> = (1..=10).map(|i| entry(i, 1, &i.to_string())).collect();
            s.persist(&es, Some(&hs(1, 1, 10)), Some(&voters(&[1])))
                .expect("persist");
            s.compact(7, b"state at 7".to_vec()).expect("compact");
            assert_eq!(s.first_index().expect("first"), 8);
            assert!(matches!(
                s.entries(5, 9, None, GetEntriesContext::empty(false)),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
            assert_eq!(s.term(7).expect("term at the snapshot"), 1);
            s.persist(&[entry(11, 2, "11")], Some(&hs(2, 1, 11)), None)
                .expect("persist");
        }
        let s = DiskStorage::open(dir.path()).expect("reopen");
        assert_eq!(s.first_index().expect("first"), 8);
        assert_eq!(datas(&s, 8, 12), ["8", "9", "10", "11"]);
        let snap = s.snapshot(7, 1).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 7);
        assert_eq!(&snap.data[..], b"state at 7");
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1]);
        assert!(!s.take_snapshot_wanted());
        assert!(
            s.snapshot(9, 1).is_err(),
            "a newer snapshot is not there yet"
        );
        assert!(
            s.take_snapshot_wanted(),
            "the driver is asked for a newer one"
        );
        // A replica added after the snapshot would refuse it: a newer one is wanted.
        assert!(matches!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(s.take_snapshot_wanted());
        assert!(!s.take_snapshot_wanted(), "asked once");
        // The rewritten log holds only what the snapshot does not.
        let log_len = std::fs::metadata(dir.path().join("log"))
            .expect("log")
            .len();
        assert!(log_len < 200, "log was not compacted: {log_len} bytes");
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = DiskStorage::open(dir.path()).expect("open");
        s.persist(&[entry(1, 1, "x")], Some(&hs(1, 0, 1)), None)
            .expect("persist");
        let mut snap = Snapshot {
            data: b"leader state".to_vec().into(),
            ..Default::default()
        };
        snap.mut_metadata().index = 20;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
        s.apply_snapshot(snap).expect("apply");
        drop(s);
        let s = DiskStorage::open(dir.path()).expect("reopen");
        assert_eq!(s.first_index().expect("first"), 21);
        assert_eq!(s.last_index().expect("last"), 20);
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.hard_state().term, 3);
        assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
        assert_eq!(&s.latest_snapshot().data[..], b"leader state");
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_corruption_before_the_end_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = DiskStorage::open(dir.path()).expect("open");
            s.persist(&[entry(1, 1, "a"), entry(2, 1, "b")], None, None)
                .expect("persist");
        }
        let path = dir.path().join("log");
        let good = std::fs::read(&path).expect("read");
        // A crash in the middle of appending entry 3.
        let mut torn = good.clone();
        let mut tail = Vec::new();
        record(
            KIND_ENTRY,
            &encode(&entry(3, 1, "c")).expect("encode"),
            &mut tail,
        );
        torn.extend_from_slice(&tail[..tail.len() - 3]);
        std::fs::write(&path, &torn).expect("write");
        {
            let mut s = DiskStorage::open(dir.path()).expect("a torn tail is not an error");
            assert_eq!(s.last_index().expect("last"), 2);
            assert_eq!(
                std::fs::metadata(&path).expect("log").len(),
                good.len() as u64,
                "the torn record is cut off"
            );
            // Appends go after the good records.
            s.persist(&[entry(3, 1, "c")], None, None).expect("persist");
        }
        let s = DiskStorage::open(dir.path()).expect("reopen");
        assert_eq!(datas(&s, 1, 4), ["a", "b", "c"]);
        drop(s);
        // A flipped byte in the first record, with a good one after it: corruption.
        let mut bad = std::fs::read(&path).expect("read");
        bad[HEADER + 2] ^= 0xff;
        std::fs::write(&path, &bad).expect("write");
        let err = DiskStorage::open(dir.path())
            .err()
            .expect("corruption is an error");
        assert!(err.to_string().contains("corrupt raft log"), "{err}");
    }
}
