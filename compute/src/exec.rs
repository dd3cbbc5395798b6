//! The compute node's DataFusion engine: one session with Blueshift's functions, the segment
//! store the leader named and this node's segment cache over it; plan fragments
//! ([`crate::exchange`]) run in a per-query context whose scans read through the cache and
//! count their hits and misses for that query.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use blueshift_common::functions::register_functions;
use blueshift_common::store::{S3Options, SegmentStore};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::DefaultObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::cache::{CacheCounters, CachedStore, SegmentCache};
use crate::{Error, Result};

/// The store the node was pointed at, with its cache.
struct Store {
    url: String,
    store: SegmentStore,
    cache: Arc<SegmentCache>,
}

pub struct Engine {
    ctx: SessionContext,
    store: Mutex<Option<Store>>,
    /// This node's own S3 settings (credentials among them); the leader's fill the gaps.
    s3: S3Options,
    cache_dir: PathBuf,
    cache_bytes: u64,
}

impl Engine {
    /// An engine whose segment cache lives in `cache_dir`, `cache_bytes` at most.
    pub fn new(s3: S3Options, cache_dir: PathBuf, cache_bytes: u64) -> Self {
        let config = SessionConfig::new().with_batch_size(8192);
        let ctx = SessionContext::new_with_config(config);
        register_functions(&ctx);
        Self {
            ctx,
            store: Mutex::new(None),
            s3,
            cache_dir,
            cache_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Store>> {
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Points the engine at the segment store the leader named, with the leader's
    /// non-secret S3 settings (idempotent).
    pub fn set_store(&self, url: &str, leader_s3: &S3Options) -> Result<()> {
        let mut guard = self.lock();
        if guard.as_ref().is_some_and(|s| s.url == url) {
            return Ok(());
        }
        let store = SegmentStore::open(url, &self.s3.or(leader_s3))?;
        let cache = Arc::new(SegmentCache::open(
            store.object_store(),
            self.cache_dir.clone(),
            self.cache_bytes,
        )?);
        SegmentStore::register_with(
            self.ctx.runtime_env().as_ref(),
            Arc::new(CachedStore::new(cache.clone(), None)),
        )?;
        tracing::info!(store = %url, cache_bytes = self.cache_bytes, cache_dir = %self.cache_dir.display(), "segment store opened");
        *guard = Some(Store {
            url: url.to_string(),
            store,
            cache,
        });
        Ok(())
    }

    /// The segment store, for writing segments.
    pub fn store(&self) -> Result<SegmentStore> {
        self.lock()
            .as_ref()
            .map(|s| s.store.clone())
            .ok_or(Error::NotRegistered)
    }

    /// The node's segment cache.
    pub fn cache(&self) -> Result<Arc<SegmentCache>> {
        self.lock()
            .as_ref()
            .map(|s| s.cache.clone())
            .ok_or(Error::NotRegistered)
    }

    /// The context one query's stages run in on this node: the engine's functions, the
    /// segment store read through the cache counting into `cache_counters`, the query's own
    /// memory pool (`memory_limit` bytes, 0 for none) and operator spill files under
    /// `spill_dir`.
    pub fn query_task_ctx(
        &self,
        memory_limit: u64,
        spill_dir: &std::path::Path,
        cache_counters: Arc<CacheCounters>,
    ) -> Result<Arc<TaskContext>> {
        let registry = Arc::new(DefaultObjectStoreRegistry::new());
        let mut builder = RuntimeEnvBuilder::new()
            .with_object_store_registry(registry)
            .with_temp_file_path(spill_dir);
        if memory_limit > 0 {
            builder = builder.with_memory_pool(Arc::new(FairSpillPool::new(memory_limit as usize)));
        }
        std::fs::create_dir_all(spill_dir)?;
        let runtime = builder.build_arc()?;
        // No store yet: only plans without table scans can run (the leader sends none
        // before the node registered).
        if let Ok(cache) = self.cache() {
            SegmentStore::register_with(
                runtime.as_ref(),
                Arc::new(CachedStore::new(cache, Some(cache_counters))),
            )?;
        }
        Ok(Arc::new(
            TaskContext::from(&self.ctx.state()).with_runtime(runtime),
        ))
    }
}
