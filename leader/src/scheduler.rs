//! Running a distributed plan. [`DistributedQueryExec`] is the root of every query plan the
//! leader executes: when first polled it starts every stage of the query on the compute nodes
//! at once (Flight `do_action("start_stage")`, so all fragments stream to each other from the
//! start), then runs the leader's part of the plan, which reads the last stages through
//! `ExchangeReaderExec`. When its stream ends or is dropped (finished, failed, cancelled) the
//! query is released on every node it touched, which stops its producers and frees their
//! rows and spill files. A node that cannot be reached fails the query with SQLSTATE 08006
//! and is marked down so the next query avoids it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow_flight::Action;
use blueshift_common::Error as CommonError;
use blueshift_common::codec::encode_plan;
use blueshift_common::exchange::{Channels, remote_error};
use blueshift_proto::v1::{
    CacheStats, ExchangeKind, QueryMetrics, QueryMetricsRequest, ReleaseQuery, StartStage,
};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{FutureExt, StreamExt};
use prost::Message;

use crate::cluster::Membership;

/// How long the leader waits for a node to confirm a query's release (the node's own
/// abandoned-query sweep is the backstop).
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes of one stage's output a node buffers in memory before spilling to disk.
pub const STAGE_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// Shared by every query of the leader.
pub struct Scheduler {
    pub channels: &'static Channels,
    pub membership: Arc<Membership>,
}

/// `Debug` wrapper so plan nodes can hold the scheduler.
pub struct SchedulerHandle(pub Arc<Scheduler>);

impl fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scheduler")
    }
}

/// One stage of a distributed plan: a plan whose partitions run on compute nodes and whose
/// output is kept, in buckets, for the stage's readers.
#[derive(Debug, Clone)]
pub struct Stage {
    pub id: u32,
    /// For `Hash` / `RoundRobin` the root is the `RepartitionExec` whose input the
    /// producers run; for `Gather` the producers run the plan itself.
    pub plan: Arc<dyn ExecutionPlan>,
    pub kind: ExchangeKind,
    /// Flight address of the node that runs each partition.
    pub placement: Vec<String>,
    /// Each bucket has one reader, so rows can be freed as they are read.
    pub consume_once: bool,
}

#[derive(Debug)]
pub struct DistributedQueryExec {
    query_id: String,
    /// The leader's part of the plan (one partition).
    root: Arc<dyn ExecutionPlan>,
    stages: Vec<Stage>,
    scheduler: Arc<SchedulerHandle>,
    properties: Arc<PlanProperties>,
}

impl DistributedQueryExec {
    pub fn new(
        query_id: String,
        root: Arc<dyn ExecutionPlan>,
        stages: Vec<Stage>,
        scheduler: Arc<SchedulerHandle>,
    ) -> Self {
        let properties = root.properties().clone();
        Self {
            query_id,
            root,
            stages,
            scheduler,
            properties,
        }
    }

    pub fn root(&self) -> &Arc<dyn ExecutionPlan> {
        &self.root
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
}

impl DisplayAs for DistributedQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DistributedQueryExec: query={}, stages={}",
            self.query_id,
            self.stages.len()
        )
    }
}

impl ExecutionPlan for DistributedQueryExec {
    fn name(&self) -> &str {
        "DistributedQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        blueshift_common::leaf::leaf_with_new_children(self, children)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "DistributedQueryExec has one partition, asked for {partition}"
            )));
        }
        let (requests, guard) = self.prepare()?;
        let root = self.root.clone();
        let scheduler = self.scheduler.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // The query runs on the query runtime; this stream only forwards its batches, so
        // the session's task stays free to notice a cancel request. Dropping the stream
        // aborts the task, which drops the guard, which releases the query on the nodes.
        // The task context carries the statement's GC pin (`planner::query_context`): it
        // must live as long as the query runs, not only until its streams are built.
        let pinned = context.clone();
        let task = blueshift_common::runtime::query_runtime().spawn(async move {
            let _guard = guard;
            let _pinned = pinned;
            let run = async {
                start_stages(&scheduler, requests).await?;
                let mut stream = root.execute(0, context)?;
                while let Some(batch) = stream.next().await {
                    if tx.send(batch).await.is_err() {
                        return Ok(());
                    }
                }
                Ok::<_, DataFusionError>(())
            };
            // A panic must not look like the end of the rows: the client would take a
            // truncated result for the answer.
            let result = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                Ok(r) => r,
                Err(_) => Err(DataFusionError::Internal(
                    "the query's execution panicked".to_string(),
                )),
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
            let _ = &abort;
            item
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.root.schema(),
            stream.boxed(),
        )))
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What running a query for EXPLAIN ANALYZE measured.
pub struct Analysis {
    /// Rows the leader's part returned.
    pub rows: u64,
    pub elapsed: std::time::Duration,
    /// Each node's report, by address.
    pub nodes: Vec<(String, QueryMetrics)>,
}

impl DistributedQueryExec {
    /// Runs the query to the end, discarding its rows, and collects what every stage did
    /// on every node before releasing it.
    pub async fn analyze(&self, context: Arc<TaskContext>) -> Result<Analysis> {
        let (requests, guard) = self.prepare()?;
        let nodes = guard.nodes.clone();
        let root = self.root.clone();
        let scheduler = self.scheduler.0.clone();
        let query_id = self.query_id.clone();
        let pinned = context.clone();
        let task = blueshift_common::runtime::query_runtime().spawn(async move {
            let _guard = guard;
            let _pinned = pinned;
            let started = std::time::Instant::now();
            start_stages(&scheduler, requests).await?;
            let mut stream = root.execute(0, context)?;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                rows += batch?.num_rows() as u64;
            }
            let elapsed = started.elapsed();
            let mut reports = Vec::with_capacity(nodes.len());
            for addr in nodes {
                let metrics = query_metrics(&scheduler, &addr, &query_id).await?;
                reports.push((addr, metrics));
            }
            Ok::<_, DataFusionError>(Analysis {
                rows,
                elapsed,
                nodes: reports,
            })
        });
        let abort = AbortOnDrop(task.abort_handle());
        let result = task
            .await
            .map_err(|e| DataFusionError::Execution(format!("EXPLAIN ANALYZE task: {e}")))?;
        drop(abort);
        result
    }
}

impl Scheduler {
    /// The segment cache of the node at `addr` (`stv_node_cache`).
    pub async fn cache_stats(&self, addr: &str) -> Result<CacheStats> {
        self.action_reply(addr, "cache_stats", Vec::new()).await
    }

    /// Runs the Flight action `kind` on the node at `addr` and decodes its (last) reply.
    async fn action_reply<T: Message + Default>(
        &self,
        addr: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let mut client = self
            .channels
            .flight_client(addr)
            .map_err(CommonError::into_datafusion)?;
        let action = Action {
            r#type: kind.to_string(),
            body: body.into(),
        };
        let mut results = client
            .do_action(action)
            .await
            .map_err(|s| remote_error(addr, &s))?
            .into_inner();
        let mut reply = T::default();
        while let Some(r) = results
            .message()
            .await
            .map_err(|s| remote_error(addr, &s))?
        {
            reply = T::decode(r.body).map_err(|e| {
                DataFusionError::Execution(format!("bad {kind} reply from {addr}: {e}"))
            })?;
        }
        Ok(reply)
    }
}

async fn query_metrics(scheduler: &Scheduler, addr: &str, query_id: &str) -> Result<QueryMetrics> {
    let request = QueryMetricsRequest {
        query_id: query_id.to_string(),
    };
    scheduler
        .action_reply(addr, "query_metrics", request.encode_to_vec())
        .await
}

impl DistributedQueryExec {
    /// The `StartStage` requests of this query, and the guard that releases it on every node
    /// they go to once dropped.
    fn prepare(&self) -> Result<(Vec<(String, StartStage)>, ReleaseGuard)> {
        let requests = start_requests(&self.query_id, &self.stages, crate::limits::current())?;
        let mut nodes: Vec<String> = requests.iter().map(|(a, _)| a.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let guard = ReleaseGuard {
            query_id: self.query_id.clone(),
            nodes,
            scheduler: self.scheduler.0.clone(),
        };
        Ok((requests, guard))
    }
}

/// One `StartStage` per (node, stage), with that node's partitions.
fn start_requests(
    query_id: &str,
    stages: &[Stage],
    query_memory_limit: u64,
) -> Result<Vec<(String, StartStage)>> {
    let mut out = Vec::new();
    for stage in stages {
        let plan = encode_plan(stage.plan.clone())?;
        let mut by_node: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (p, addr) in stage.placement.iter().enumerate() {
            by_node.entry(addr.as_str()).or_default().push(p as u32);
        }
        for (addr, partitions) in by_node {
            out.push((
                addr.to_string(),
                StartStage {
                    query_id: query_id.to_string(),
                    stage_id: stage.id,
                    plan: plan.to_vec(),
                    partitions,
                    kind: stage.kind as i32,
                    consume_once: stage.consume_once,
                    memory_limit: STAGE_MEMORY_LIMIT,
                    query_memory_limit,
                },
            ));
        }
    }
    Ok(out)
}

async fn start_stages(scheduler: &Scheduler, requests: Vec<(String, StartStage)>) -> Result<()> {
    let calls = requests.into_iter().map(|(addr, req)| async move {
        let mut client = scheduler
            .channels
            .flight_client(&addr)
            .map_err(CommonError::into_datafusion)?;
        let action = Action {
            r#type: "start_stage".to_string(),
            body: req.encode_to_vec().into(),
        };
        let mut results = client
            .do_action(action)
            .await
            .map_err(|s| remote_error(&addr, &s))?
            .into_inner();
        while results
            .message()
            .await
            .map_err(|s| remote_error(&addr, &s))?
            .is_some()
        {}
        Ok::<_, DataFusionError>(())
    });
    futures::future::try_join_all(calls).await?;
    Ok(())
}

/// Releases a query on every node that ran part of it, when dropped.
struct ReleaseGuard {
    query_id: String,
    nodes: Vec<String>,
    scheduler: Arc<Scheduler>,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if self.nodes.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let query_id = std::mem::take(&mut self.query_id);
        let nodes = std::mem::take(&mut self.nodes);
        let scheduler = self.scheduler.clone();
        handle.spawn(async move {
            // Every node at once, each bounded: one stuck node must not keep the others'
            // producers running.
            let releases = nodes.into_iter().map(|addr| {
                let scheduler = scheduler.clone();
                let query_id = query_id.clone();
                async move {
                    let Ok(mut client) = scheduler.channels.flight_client(&addr) else {
                        return;
                    };
                    let action = Action {
                        r#type: "release_query".to_string(),
                        body: ReleaseQuery {
                            query_id: query_id.clone(),
                        }
                        .encode_to_vec()
                        .into(),
                    };
                    match tokio::time::timeout(RELEASE_TIMEOUT, client.do_action(action)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, %query_id, error = %e, "release_query failed")
                        }
                        Err(_) => tracing::warn!(%addr, %query_id, "release_query timed out"),
                    }
                }
            });
            futures::future::join_all(releases).await;
        });
    }
}
