//! The runtime queries execute on. DataFusion operators are CPU-bound and may run for long
//! stretches between `.await`s; on the runtime that serves gRPC, heartbeats and the
//! PostgreSQL protocol they would starve those tasks (a busy node would look dead to the
//! leader, and a cancel request would not be read). Every process therefore runs query work
//! on a second, dedicated runtime and keeps its I/O runtime responsive; the OS shares the
//! cores between the two.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Stack of every runtime worker thread: planning and executing a deeply nested statement
/// recurses far past tokio's 2 MiB default.
pub const THREAD_STACK_BYTES: usize = 16 * 1024 * 1024;

/// The process-wide query runtime, started on first use with one worker per core.
pub fn query_runtime() -> Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            match Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("blueshift-query")
                .thread_stack_size(THREAD_STACK_BYTES)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                // Without threads to spare the process cannot serve queries at all.
                Err(e) => panic!("cannot start the query runtime: {e}"),
            }
        })
        .handle()
        .clone()
}
