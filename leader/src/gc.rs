//! Garbage collection of the segment store: mark and sweep. Segments are written once under
//! unique load ids and made visible by one catalog commit, so a segment file that the current
//! catalog does not reference is either garbage (a dropped table, a load that failed or whose
//! leader was killed) or part of a load still running. A sweep lists `tables/` in the store,
//! then takes the catalog (after the listing, so a load that commits meanwhile is seen as
//! referenced), and deletes a file only when
//!
//! * the catalog has not referenced it since a sweep first saw it unreferenced at time `T`,
//! * the grace period has passed since `T`, and
//! * no statement that started before `T` is still running ([`Pins`]): such a statement may
//!   read the file through the catalog version it pinned, or be the load writing it.
//!
//! Unreferenced files found by the last sweep are reported in `svv_store_usage`. The marks
//! live in memory: after a restart a file waits one more grace period, never less.
//!
//! With leader replicas only the raft leader sweeps. Its pins cover its own statements
//! only: a statement on another replica that runs longer than the grace period after a
//! segment it reads was replaced may lose that segment (pins are not replicated yet).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blueshift_common::store::SegmentStore;

use crate::catalog::Catalog;
use crate::error::Result;

/// Default time an unreferenced segment is kept.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);
/// Where segments live in the store.
const SEGMENT_PREFIX: &str = "tables";

/// The start times of running statements (queries and loads); see the module docs.
#[derive(Default)]
pub struct Pins {
    next: Mutex<(u64, BTreeMap<u64, Instant>)>,
}

/// Held by a running statement; dropping it unpins.
pub struct PinGuard {
    pins: Arc<Pins>,
    id: u64,
}

impl std::fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinGuard({})", self.id)
    }
}

impl Pins {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Instant>)> {
        match self.next.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Pins "now" until the guard is dropped.
    pub fn pin(self: &Arc<Self>) -> PinGuard {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, Instant::now());
        PinGuard {
            pins: self.clone(),
            id,
        }
    }

    /// The start of the oldest running statement.
    fn oldest(&self) -> Option<Instant> {
        self.lock().1.values().min().copied()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.pins.lock().1.remove(&self.id);
    }
}

/// What the last sweep found and what GC has done since the leader started.
#[derive(Debug, Clone, Default)]
pub struct GcStats {
    /// Unreferenced segment files and their bytes, by table id (from the path), not yet
    /// deleted.
    pub pending: BTreeMap<u64, (u64, u64)>,
    pub deleted_files: u64,
    pub deleted_bytes: u64,
    pub sweeps: u64,
}

pub struct Gc {
    store: SegmentStore,
    catalog: Arc<Catalog>,
    pins: Arc<Pins>,
    grace: Duration,
    /// Path -> when a sweep first saw it unreferenced.
    marks: Mutex<HashMap<String, Instant>>,
    stats: Mutex<GcStats>,
}

impl Gc {
    pub fn new(
        store: SegmentStore,
        catalog: Arc<Catalog>,
        pins: Arc<Pins>,
        grace: Duration,
    ) -> Self {
        Self {
            store,
            catalog,
            pins,
            grace,
            marks: Mutex::new(HashMap::new()),
            stats: Mutex::new(GcStats::default()),
        }
    }

    pub fn stats(&self) -> GcStats {
        match self.stats.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Sweeps every `interval` until the task is dropped.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // One replica sweeps the shared store: the raft leader, whose catalog has every
            // commit applied (a follower's may lag behind a load that just committed).
            if self.catalog.replica_status().role != "leader" {
                continue;
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e.user_message(), "segment GC sweep failed");
            }
        }
    }

    /// One mark-and-sweep pass; returns how many files it deleted.
    pub async fn sweep(&self) -> Result<u64> {
        let listed = self.store.list(SEGMENT_PREFIX).await?;
        // After the listing: a file listed before its load committed is referenced here.
        let catalog = self.catalog.snapshot();
        let referenced: HashSet<&str> = catalog
            .tables
            .values()
            .flat_map(|t| t.segments.values().flatten())
            .map(|s| s.path.as_str())
            .collect();
        let now = Instant::now();
        let oldest_pin = self.pins.oldest();
        let mut doomed = Vec::new();
        let mut pending: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        {
            let mut marks = match self.marks.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let mut seen = HashSet::new();
            for object in &listed {
                let path = object.location.as_ref();
                if referenced.contains(path) {
                    continue;
                }
                seen.insert(path.to_string());
                let since = *marks.entry(path.to_string()).or_insert(now);
                let old_enough = now.duration_since(since) >= self.grace;
                let unpinned = oldest_pin.is_none_or(|p| p > since);
                if old_enough && unpinned {
                    doomed.push(object.clone());
                } else {
                    let e = pending.entry(table_of(path)).or_default();
                    e.0 += 1;
                    e.1 += object.size;
                }
            }
            // Forget marks of files that are gone or referenced again.
            marks.retain(|p, _| seen.contains(p));
        }
        let mut deleted = 0;
        let mut deleted_bytes = 0;
        for object in doomed {
            match self.store.delete(&object.location).await {
                Ok(()) => {
                    deleted += 1;
                    deleted_bytes += object.size;
                    if let Ok(mut marks) = self.marks.lock() {
                        marks.remove(object.location.as_ref());
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %object.location, error = %e.user_message(), "cannot delete an unreferenced segment");
                    let entry = pending
                        .entry(table_of(object.location.as_ref()))
                        .or_default();
                    entry.0 += 1;
                    entry.1 += object.size;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(
                files = deleted,
                bytes = deleted_bytes,
                "segment GC deleted unreferenced segments"
            );
        }
        let mut stats = match self.stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        stats.pending = pending;
        stats.deleted_files += deleted;
        stats.deleted_bytes += deleted_bytes;
        stats.sweeps += 1;
        Ok(deleted)
    }
}

/// The table id in a segment path `tables/<id>/slice-<n>/<load>-<n>.parquet` (0 if none).
fn table_of(path: &str) -> u64 {
    path.split('/')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn table_ids_come_from_paths() {
        assert_eq!(table_of("tables/17/slice-0001/abc-0000.parquet"), 17);
        assert_eq!(table_of("tables/x/y"), 0);
    }

    #[tokio::test]
    async fn unreferenced_files_go_after_the_grace_period_unless_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let url = blueshift_common::store::file_url(&dir.path().join("store")).unwrap();
        let store = SegmentStore::open(&url, &Default::default()).unwrap();
        let catalog = Arc::new(
            Catalog::open(
                &dir.path().join("catalog"),
                2,
                &crate::replica::ReplicaConfig::single(),
            )
            .unwrap(),
        );
        catalog.wait_ready().await.unwrap();
        let pins = Arc::new(Pins::default());
        let gc = Gc::new(
            store.clone(),
            catalog,
            pins.clone(),
            Duration::from_millis(50),
        );
        store
            .put_once(
                "tables/9/slice-0000/l-0000.parquet",
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        // A statement that started before the file was first seen unreferenced pins it.
        let pin = pins.pin();
        assert_eq!(gc.sweep().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(gc.sweep().await.unwrap(), 0, "a pinned file must stay");
        assert_eq!(gc.stats().pending.get(&9), Some(&(1, 1)));
        drop(pin);
        // A statement started after the mark does not protect it.
        let _later = pins.pin();
        assert_eq!(gc.sweep().await.unwrap(), 1);
        assert!(store.list("tables").await.unwrap().is_empty());
        assert!(gc.stats().pending.is_empty());
    }
}
