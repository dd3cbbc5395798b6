//! Transparent retry of a read-only statement that lost a compute node. Segments are durable
//! in the shared store, so any live node can serve any slice: when a query fails because a
//! node could not be reached (SQLSTATE 08006) or none was available (57P03), the leader finds
//! which nodes are down, plans the statement again on the live ones (a new slice map) and
//! runs it from the start, up to [`MAX_ATTEMPTS`] times.
//!
//! Rows are never sent twice: the first [`BUFFER_LIMIT`] bytes of the result are held back
//! until the query ends or the buffer fills. A failure while rows are still held is retried;
//! once rows were released to the client, a failure ends the statement with its error.
//! Each retry is logged and recorded in `stl_retries`.
//!
//! This module decides when to retry; planning and running are the caller's (`replan`).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use blueshift_common::error::{datafusion_sqlstate, sqlstate};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::LeaderState;
use crate::error::Result;
use crate::scheduler::AbortOnDrop;

/// Runs of one statement at most (the first one included).
pub const MAX_ATTEMPTS: u32 = 4;
/// Bytes of result rows held back so that a failed attempt can be retried unseen.
pub const BUFFER_LIMIT: usize = 16 << 20;
/// How many retries `stl_retries` remembers.
const HISTORY: usize = 1000;
/// How long a probe of a compute node may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One retry, as `stl_retries` shows it.
#[derive(Debug, Clone)]
pub struct RetryEvent {
    pub query_id: String,
    pub time: chrono::DateTime<chrono::Utc>,
    /// The attempt that failed (1 = the first run).
    pub attempt: u32,
    pub sqlstate: String,
    pub error: String,
    pub statement: String,
}

/// The most recent retries of the leader.
pub type RetryLog = crate::history::History<RetryEvent, HISTORY>;

/// Whether a query that failed with `e` may succeed on the remaining nodes.
pub fn is_retryable(e: &DataFusionError) -> bool {
    let code = datafusion_sqlstate(e);
    code == sqlstate::CONNECTION_FAILURE || code == sqlstate::CANNOT_CONNECT_NOW
}

/// Plans and starts the statement again; gives its result stream and query id.
pub type Replan =
    Box<dyn Fn() -> BoxFuture<'static, Result<(SendableRecordBatchStream, String)>> + Send>;

/// `first` (the statement's first run, query `query_id`), retried with `replan` as the
/// module docs say.
pub fn retrying(
    leader: Arc<LeaderState>,
    statement: String,
    schema: SchemaRef,
    first: SendableRecordBatchStream,
    query_id: String,
    replan: Replan,
) -> SendableRecordBatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatch>>(2);
    let task = tokio::spawn(async move {
        let mut stream = first;
        let mut query_id = query_id;
        let mut attempt = 1;
        loop {
            match run_attempt(&mut stream, &tx).await {
                Attempt::Done => return,
                Attempt::Failed(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    let message = blueshift_common::Error::DataFusion(e).user_message();
                    tracing::warn!(%query_id, attempt, error = %message, "lost a compute node; running the statement again");
                    leader.retries.push(RetryEvent {
                        query_id: query_id.clone(),
                        time: chrono::Utc::now(),
                        attempt,
                        sqlstate: sqlstate::CONNECTION_FAILURE.to_string(),
                        error: message,
                        statement: statement.clone(),
                    });
                    attempt += 1;
                    mark_unreachable_nodes(&leader).await;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    match replan().await {
                        Ok((s, id)) => {
                            stream = s;
                            query_id = id;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    }
                }
                Attempt::Failed(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let abort = AbortOnDrop(task.abort_handle());
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
        let _ = &abort;
        item
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream.boxed()))
}

enum Attempt {
    /// The result was delivered (or the client went away, or it failed after rows were
    /// released: the error was delivered too).
    Done,
    /// Failed before any row reached the client.
    Failed(DataFusionError),
}

/// Runs one attempt: holds rows back up to [`BUFFER_LIMIT`], then streams.
async fn run_attempt(
    stream: &mut SendableRecordBatchStream,
    tx: &tokio::sync::mpsc::Sender<datafusion::error::Result<RecordBatch>>,
) -> Attempt {
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut held_bytes = 0usize;
    let mut released = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(batch) if released => {
                if tx.send(Ok(batch)).await.is_err() {
                    return Attempt::Done;
                }
            }
            Ok(batch) => {
                held_bytes += batch.get_array_memory_size();
                held.push(batch);
                if held_bytes > BUFFER_LIMIT {
                    released = true;
                    for b in held.drain(..) {
                        if tx.send(Ok(b)).await.is_err() {
                            return Attempt::Done;
                        }
                    }
                }
            }
            Err(e) if released => {
                let _ = tx.send(Err(e)).await;
                return Attempt::Done;
            }
            Err(e) => return Attempt::Failed(e),
        }
    }
    for b in held {
        if tx.send(Ok(b)).await.is_err() {
            break;
        }
    }
    Attempt::Done
}

/// Asks every registered node whether it answers; the ones that do not are marked down at
/// once (rather than after the heartbeat timeout), so the next plan avoids them.
async fn mark_unreachable_nodes(leader: &LeaderState) {
    let probes = leader
        .membership
        .live_nodes()
        .into_iter()
        .map(|node| async move {
            let alive = match leader.scheduler.channels.flight_client(&node.flight_addr) {
                Ok(mut client) => matches!(
                    tokio::time::timeout(
                        PROBE_TIMEOUT,
                        client.list_actions(arrow_flight::Empty {})
                    )
                    .await,
                    Ok(Ok(_))
                ),
                Err(_) => false,
            };
            if !alive {
                leader.membership.suspect(&node.flight_addr);
            }
        });
    futures::future::join_all(probes).await;
}
