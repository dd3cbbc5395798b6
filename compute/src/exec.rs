//! The compute node's DataFusion engine: one session whose runtime knows the shared segment
//! store and Blueshift's functions; plan fragments ([`crate::exchange`]) run in its context.

use std::sync::{Arc, Mutex};

use blueshift_common::functions::register_functions;
use blueshift_common::store::register_store;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;

use crate::{Error, Result};

pub struct Engine {
    ctx: SessionContext,
    store: Mutex<Option<(String, Arc<dyn ObjectStore>)>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        let config = SessionConfig::new().with_batch_size(8192);
        let ctx = SessionContext::new_with_config(config);
        register_functions(&ctx);
        Self {
            ctx,
            store: Mutex::new(None),
        }
    }

    /// Points the engine at the segment store the leader named (idempotent).
    pub fn set_store(&self, url: &str) -> Result<()> {
        let mut guard = self
            .store
            .lock()
            .map_err(|_| Error::Transport("store lock poisoned".into()))?;
        if guard.as_ref().is_some_and(|(u, _)| u == url) {
            return Ok(());
        }
        let store = register_store(self.ctx.runtime_env().as_ref(), url)?;
        *guard = Some((url.to_string(), store));
        Ok(())
    }

    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        let guard = self
            .store
            .lock()
            .map_err(|_| Error::Transport("store lock poisoned".into()))?;
        guard
            .as_ref()
            .map(|(_, s)| s.clone())
            .ok_or(Error::NotRegistered)
    }

    /// The context one query's stages run in on this node: the engine's functions and
    /// segment store, with the query's own memory pool (`memory_limit` bytes, 0 for none)
    /// and operator spill files under `spill_dir`.
    pub fn query_task_ctx(
        &self,
        memory_limit: u64,
        spill_dir: &std::path::Path,
    ) -> Result<Arc<TaskContext>> {
        let base = self.ctx.runtime_env();
        let mut builder = RuntimeEnvBuilder::new()
            .with_object_store_registry(base.object_store_registry.clone())
            .with_temp_file_path(spill_dir);
        if memory_limit > 0 {
            builder = builder.with_memory_pool(Arc::new(FairSpillPool::new(memory_limit as usize)));
        }
        std::fs::create_dir_all(spill_dir)?;
        let runtime = builder.build_arc()?;
        Ok(Arc::new(
            TaskContext::from(&self.ctx.state()).with_runtime(runtime),
        ))
    }
}
