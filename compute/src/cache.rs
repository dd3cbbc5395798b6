//! The compute node's segment cache: a bounded directory of whole segment files read from the
//! store, so a segment is fetched from S3 once and then read from local disk (its footer and
//! page index included). Segments are immutable, so a cached copy never goes stale. Least
//! recently used files are evicted past the configured size; a segment larger than the whole
//! cache is read from the store directly.
//!
//! [`CachedStore`] is the `ObjectStore` DataFusion's Parquet scans read through: every read
//! counts a hit or a miss in the node's totals ([`SegmentCache::stats`], the leader's
//! `stv_node_cache`) and, for a query's own store, in that query's counters (EXPLAIN ANALYZE).
//! Writes and listings go straight to the store. This module must not decide what is cached
//! for how long beyond LRU: GC of the store is the leader's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use blueshift_proto::v1::CacheStats;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Smallest default cache (the floor): 1 GiB.
pub const MIN_DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// The default cache size for a data dir: 10% of its file system, at least 1 GiB.
pub fn default_cache_bytes(dir: &std::path::Path) -> u64 {
    let total = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks().saturating_mul(s.fragment_size()))
        .unwrap_or(0);
    (total / 10).max(MIN_DEFAULT_CACHE_BYTES)
}

/// Hits, misses and bytes, for the node or for one query.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Bytes fetched from the store (whole segments on a miss).
    pub store_bytes: AtomicU64,
    /// Bytes handed to readers from cached files.
    pub cached_bytes: AtomicU64,
}

impl CacheCounters {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.store_bytes.load(Ordering::Relaxed),
            self.cached_bytes.load(Ordering::Relaxed),
        )
    }
}

struct Entry {
    meta: ObjectMeta,
    file: PathBuf,
    tick: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Path, Entry>,
    /// Last-use tick -> path: the front is the least recently used.
    lru: BTreeMap<u64, Path>,
    used: u64,
    tick: u64,
    evictions: u64,
}

impl Index {
    fn touch(&mut self, path: &Path) -> Option<(ObjectMeta, PathBuf)> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(path)?;
        self.lru.remove(&entry.tick);
        entry.tick = tick;
        self.lru.insert(tick, path.clone());
        Some((entry.meta.clone(), entry.file.clone()))
    }

    fn insert(&mut self, path: Path, meta: ObjectMeta, file: PathBuf) {
        self.remove(&path);
        self.tick += 1;
        self.used += meta.size;
        self.lru.insert(self.tick, path.clone());
        self.entries.insert(
            path,
            Entry {
                meta,
                file,
                tick: self.tick,
            },
        );
    }

    fn remove(&mut self, path: &Path) -> Option<PathBuf> {
        let entry = self.entries.remove(path)?;
        self.lru.remove(&entry.tick);
        self.used -= entry.meta.size;
        Some(entry.file)
    }

    /// Evicts least recently used entries (never `keep`) until `used <= capacity`; returns
    /// the files to delete.
    fn evict(&mut self, capacity: u64, keep: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        while self.used > capacity {
            let Some(victim) = self.lru.values().find(|p| *p != keep).cloned() else {
                break;
            };
            if let Some(file) = self.remove(&victim) {
                files.push(file);
                self.evictions += 1;
            }
        }
        files
    }
}

/// The node's cache of segment files (see the module docs).
pub struct SegmentCache {
    inner: Arc<dyn ObjectStore>,
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// One download per path at a time: concurrent readers of a missing segment wait for it.
    downloads: Mutex<HashMap<Path, Arc<tokio::sync::Mutex<()>>>>,
    totals: CacheCounters,
}

impl fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SegmentCache({}, {} bytes)",
            self.dir.display(),
            self.capacity
        )
    }
}

fn io_err(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "segment cache",
        source: Box::new(e),
    }
}

impl SegmentCache {
    /// A cache of `capacity` bytes in `dir` over `inner`. Files already in `dir` (from a
    /// previous run of the node) are kept, oldest first in LRU order.
    pub fn open(inner: Arc<dyn ObjectStore>, dir: PathBuf, capacity: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        collect_files(&dir, &dir, &mut found);
        found.sort_by_key(|(_, _, modified, _)| *modified);
        let mut index = Index::default();
        for (rel, file, modified, size) in found {
            if rel.ends_with(".tmp") {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            let path = Path::from(rel.as_str());
            let meta = ObjectMeta {
                location: path.clone(),
                last_modified: modified.into(),
                size,
                e_tag: None,
                version: None,
            };
            index.insert(path, meta, file);
        }
        let cache = Self {
            inner,
            dir,
            capacity,
            index: Mutex::new(index),
            downloads: Mutex::new(HashMap::new()),
            totals: CacheCounters::default(),
        };
        for file in cache.lock().evict(capacity, &Path::from("")) {
            let _ = std::fs::remove_file(file);
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        match self.index.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let index = self.lock();
        let (hits, misses, store_bytes, cached_bytes) = self.totals.snapshot();
        CacheStats {
            capacity_bytes: self.capacity,
            used_bytes: index.used,
            entries: index.entries.len() as u64,
            hits,
            misses,
            store_bytes,
            cached_bytes,
            evictions: index.evictions,
        }
    }

    /// Adds to the node's totals and to `query`'s counters.
    fn count(&self, query: Option<&CacheCounters>, f: impl Fn(&CacheCounters)) {
        f(&self.totals);
        if let Some(q) = query {
            f(q);
        }
    }

    /// The local copy of `path` (fetched on a miss), or `None` when the object is bigger than
    /// the whole cache; counts the hit or miss in the totals and in `query`.
    async fn local_copy(
        &self,
        path: &Path,
        query: Option<&CacheCounters>,
    ) -> object_store::Result<Option<(ObjectMeta, PathBuf)>> {
        let hit = |c: &CacheCounters| {
            c.hits.fetch_add(1, Ordering::Relaxed);
        };
        if let Some(found) = self.lock().touch(path) {
            self.count(query, hit);
            return Ok(Some(found));
        }
        let gate = {
            let mut downloads = match self.downloads.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            downloads.entry(path.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        // Another reader may have fetched it while we waited.
        if let Some(found) = self.lock().touch(path) {
            self.count(query, hit);
            return Ok(Some(found));
        }
        self.count(query, |c| {
            c.misses.fetch_add(1, Ordering::Relaxed);
        });
        let result = self.fetch(path, query).await;
        if let Ok(mut downloads) = self.downloads.lock() {
            downloads.remove(path);
        }
        result
    }

    /// Downloads `path` into the cache (unless it is bigger than the cache) and evicts what
    /// no longer fits.
    async fn fetch(
        &self,
        path: &Path,
        query: Option<&CacheCounters>,
    ) -> object_store::Result<Option<(ObjectMeta, PathBuf)>> {
        let meta = self.inner.head(path).await?;
        if meta.size > self.capacity {
            return Ok(None);
        }
        let data = self.inner.get(path).await?.bytes().await?;
        let size = data.len() as u64;
        self.count(query, |c| {
            c.store_bytes.fetch_add(size, Ordering::Relaxed);
        });
        let file = self.dir.join(path.as_ref());
        let tmp = self.dir.join(format!(
            "{}.{}.tmp",
            path.as_ref(),
            uuid::Uuid::new_v4().simple()
        ));
        let file = tokio::task::spawn_blocking(move || {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &file)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| io_err(std::io::Error::other(e)))?
        .map_err(io_err)?;
        let meta = ObjectMeta { size, ..meta };
        let evicted = {
            let mut index = self.lock();
            index.insert(path.clone(), meta.clone(), file.clone());
            index.evict(self.capacity, path)
        };
        for f in evicted {
            let _ = std::fs::remove_file(f);
        }
        Ok(Some((meta, file)))
    }

    /// Forgets `path` (it was overwritten or deleted in the store).
    fn invalidate(&self, path: &Path) {
        if let Some(file) = self.lock().remove(path) {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn collect_files(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<(String, PathBuf, std::time::SystemTime, u64)>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root)
            && let Some(rel) = rel.to_str()
        {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((rel.to_string(), path.clone(), modified, meta.len()));
        }
    }
}

/// An `ObjectStore` that reads through the node's [`SegmentCache`], counting into the node's
/// totals and, when given, one query's counters.
#[derive(Clone)]
pub struct CachedStore {
    cache: Arc<SegmentCache>,
    query: Option<Arc<CacheCounters>>,
}

impl CachedStore {
    pub fn new(cache: Arc<SegmentCache>, query: Option<Arc<CacheCounters>>) -> Self {
        Self { cache, query }
    }
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({:?})", self.cache)
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.cache.inner)
    }
}

fn read_range(file: &std::path::Path, range: Range<u64>) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(range.start))?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    f.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.cache.invalidate(location);
        self.cache.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.cache.invalidate(location);
        self.cache.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // Conditional and versioned reads are the store's business.
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        if !plain {
            return self.cache.inner.get_opts(location, options).await;
        }
        let Some((meta, file)) = self
            .cache
            .local_copy(location, self.query.as_deref())
            .await?
        else {
            return self.cache.inner.get_opts(location, options).await;
        };
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "segment cache",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let data = if options.head {
            Bytes::new()
        } else {
            let r = range.clone();
            tokio::task::spawn_blocking(move || read_range(&file, r))
                .await
                .map_err(|e| io_err(std::io::Error::other(e)))?
                .map_err(io_err)?
        };
        let n = data.len() as u64;
        self.cache.count(self.query.as_deref(), |c| {
            c.cached_bytes.fetch_add(n, Ordering::Relaxed);
        });
        Ok(GetResult {
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(
                async move { Ok(data) },
            ))),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        use futures::StreamExt;
        let cache = self.cache.clone();
        let locations = locations
            .map(move |p| {
                if let Ok(p) = &p {
                    cache.invalidate(p);
                }
                p
            })
            .boxed();
        self.cache.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.cache.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.cache.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.cache.invalidate(to);
        self.cache.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn store_with(files: &[(&str, usize)]) -> Arc<dyn ObjectStore> {
        let store = Arc::new(InMemory::new());
        for (name, size) in files {
            store
                .put(&Path::from(*name), vec![7u8; *size].into())
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn second_read_is_a_hit_and_ranges_are_exact() {
        let inner = store_with(&[("a", 100)]).await;
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(SegmentCache::open(inner, dir.path().join("c"), 1000).unwrap());
        let query = Arc::new(CacheCounters::default());
        let store = CachedStore::new(cache.clone(), Some(query.clone()));
        let bytes = store.get_range(&Path::from("a"), 10..20).await.unwrap();
        assert_eq!(bytes.len(), 10);
        let again = store.get_range(&Path::from("a"), 90..100).await.unwrap();
        assert_eq!(again.len(), 10);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.store_bytes, s.entries), (1, 1, 100, 1));
        assert_eq!(query.snapshot().0, 1);
        assert_eq!(query.snapshot().1, 1);
    }

    #[tokio::test]
    async fn least_recently_used_is_evicted_and_huge_objects_bypass() {
        let inner = store_with(&[("a", 400), ("b", 400), ("c", 400), ("huge", 5000)]).await;
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(SegmentCache::open(inner, dir.path().join("c"), 1000).unwrap());
        let store = CachedStore::new(cache.clone(), None);
        for name in ["a", "b", "a", "c"] {
            store.get_range(&Path::from(name), 0..4).await.unwrap();
        }
        // "b" was least recently used when "c" arrived.
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes, s.evictions), (2, 800, 1));
        store.get_range(&Path::from("a"), 0..4).await.unwrap();
        assert_eq!(cache.stats().hits, 2);
        let huge = store.get_range(&Path::from("huge"), 0..4000).await.unwrap();
        assert_eq!(huge.len(), 4000);
        assert_eq!(cache.stats().entries, 2);
    }

    #[tokio::test]
    async fn a_restarted_node_keeps_its_cached_files() {
        let inner = store_with(&[("t/a", 100)]).await;
        let dir = tempfile::tempdir().unwrap();
        {
            let cache =
                Arc::new(SegmentCache::open(inner.clone(), dir.path().join("c"), 1000).unwrap());
            CachedStore::new(cache, None)
                .get_range(&Path::from("t/a"), 0..1)
                .await
                .unwrap();
        }
        let cache = Arc::new(SegmentCache::open(inner, dir.path().join("c"), 1000).unwrap());
        CachedStore::new(cache.clone(), None)
            .get_range(&Path::from("t/a"), 0..1)
            .await
            .unwrap();
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (1, 0));
    }
}
