//! Running plan fragments: decode a fragment shipped by the leader and execute one of its
//! partitions against the shared segment store. The engine holds one DataFusion session
//! whose runtime knows the segment store and Blueshift's functions.

use std::sync::{Arc, Mutex};

use blueshift_common::codec::decode_plan;
use blueshift_common::functions::register_functions;
use blueshift_common::store::register_store;
use datafusion::execution::SendableRecordBatchStream;
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

    /// Decodes `plan` and starts partition `partition` of it.
    pub fn execute(&self, plan: &[u8], partition: usize) -> Result<SendableRecordBatchStream> {
        self.store()?;
        let task_ctx = self.ctx.task_ctx();
        let plan = decode_plan(plan, &task_ctx)?;
        let partitions = plan.properties().output_partitioning().partition_count();
        if partition >= partitions {
            return Err(Error::BadRequest(format!(
                "partition {partition} requested of a fragment with {partitions} partitions"
            )));
        }
        Ok(plan.execute(partition, task_ctx)?)
    }
}
