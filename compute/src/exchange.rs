//! The producing end of exchanges: a per-node registry of the query stages running here.
//!
//! The leader starts every stage of a query at once (`StartStage`); for each local partition a
//! producer task runs the stage's plan and appends its batches to buckets (by slice hash,
//! round-robin, or all into one). Readers on any node fetch a bucket with `do_get`
//! ([`Exchanges::read`]) and stream it while the producer is still writing: the query is
//! pipelined. A producer never waits for a slow reader; once a stage's buffered rows pass its
//! memory limit, further batches are written to Arrow IPC files under the node's spill
//! directory and read back from there. Everything of a query (tasks, buffers, spill files) is
//! dropped when the leader releases it, or after [`ABANDONED_AFTER`] if the leader never does.
//!
//! This module must not plan or re-plan: it runs exactly the plan it was given.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use blueshift_common::codec::decode_plan;
use blueshift_common::error::sqlstate;
use blueshift_common::hash::bucket_of_rows;
use blueshift_proto::v1::{
    ExchangeKind, ExchangeTicket, PartitionMetrics, QueryMetrics, StageMetrics, StartStage,
};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::cache::CacheCounters;
use crate::exec::Engine;
use crate::{Error, Result};

/// A query the leader neither finished nor released within this time is dropped.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(6 * 3600);
/// How long a reader waits for a stage whose `StartStage` has not arrived.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Released query ids remembered so a late reader fails at once instead of waiting.
const REMEMBER_RELEASED: usize = 4096;

pub struct Exchanges {
    spill_dir: PathBuf,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    queries: HashMap<String, QueryStages>,
    /// Recently released query ids (oldest first in `released_order`), so a late
    /// `StartStage` or reader fails at once instead of recreating state.
    released: HashSet<String>,
    released_order: VecDeque<String>,
}

struct QueryStages {
    slots: HashMap<(u32, u32), Arc<Slot>>,
    tasks: Vec<tokio::task::AbortHandle>,
    started: Instant,
    /// The query's context on this node (its memory pool is shared by all its stages).
    ctx: Option<Arc<TaskContext>>,
    /// What each stage's producers run here, kept for its metrics.
    plans: BTreeMap<u32, Arc<dyn ExecutionPlan>>,
    /// The query's reads through the segment cache (EXPLAIN ANALYZE).
    cache: Arc<CacheCounters>,
}

impl QueryStages {
    fn new() -> Self {
        Self {
            slots: HashMap::new(),
            tasks: Vec::new(),
            started: Instant::now(),
            ctx: None,
            plans: BTreeMap::new(),
            cache: Arc::default(),
        }
    }
}

/// The output of one producer partition.
struct Slot {
    state: Mutex<SlotState>,
    /// Bumped on every change; readers wait on it.
    version: watch::Sender<u64>,
}

#[derive(Default)]
struct SlotState {
    started: bool,
    consume_once: bool,
    buckets: Vec<Vec<Option<Chunk>>>,
    finished: bool,
    error: Option<tonic::Status>,
    released: bool,
    mem_bytes: usize,
    memory_limit: usize,
    stats: ProducerStats,
}

/// What one producer did, for EXPLAIN ANALYZE.
#[derive(Default, Clone)]
struct ProducerStats {
    rows: u64,
    bytes: u64,
    spilled_batches: u64,
    started: Option<Instant>,
    elapsed: Duration,
}

#[derive(Clone)]
enum Chunk {
    Mem(RecordBatch),
    Disk(PathBuf),
}

impl Slot {
    fn new() -> Arc<Self> {
        let (version, _) = watch::channel(0);
        Arc::new(Self {
            state: Mutex::new(SlotState::default()),
            version,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn fail(&self, status: tonic::Status) {
        let mut s = self.lock();
        if s.error.is_none() {
            s.error = Some(status);
        }
        drop(s);
        self.bump();
    }
}

/// How a producer assigns rows to buckets.
enum Router {
    Hash(Vec<Arc<dyn PhysicalExpr>>, u32),
    RoundRobin(u32, usize),
    Single,
}

impl Router {
    fn buckets(&self) -> usize {
        match self {
            Router::Hash(_, n) | Router::RoundRobin(n, _) => *n as usize,
            Router::Single => 1,
        }
    }

    fn split(&mut self, batch: RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        match self {
            Router::Single => Ok(vec![(0, batch)]),
            Router::RoundRobin(n, next) => {
                let b = *next % (*n).max(1) as usize;
                *next = next.wrapping_add(1);
                Ok(vec![(b, batch)])
            }
            Router::Hash(exprs, n) => {
                let columns = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let targets = bucket_of_rows(&columns, *n)?;
                let mut rows: Vec<Vec<u32>> = vec![Vec::new(); *n as usize];
                for (row, bucket) in targets.iter().enumerate() {
                    rows[*bucket as usize].push(row as u32);
                }
                let mut out = Vec::new();
                for (bucket, idx) in rows.into_iter().enumerate() {
                    if idx.is_empty() {
                        continue;
                    }
                    let part = if idx.len() == batch.num_rows() {
                        batch.clone()
                    } else {
                        take_record_batch(&batch, &UInt32Array::from(idx))
                            .map_err(DataFusionError::from)?
                    };
                    out.push((bucket, part));
                }
                Ok(out)
            }
        }
    }
}

impl Exchanges {
    pub fn new(spill_dir: PathBuf) -> Self {
        Self {
            spill_dir,
            inner: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn slot(&self, query_id: &str, stage: u32, partition: u32) -> Result<Arc<Slot>> {
        let mut reg = self.lock();
        if reg.released.contains(query_id) {
            return Err(blueshift_common::Error::sql(
                sqlstate::QUERY_CANCELED,
                format!("query {query_id} has ended"),
            )
            .into());
        }
        let q = reg
            .queries
            .entry(query_id.to_string())
            .or_insert_with(QueryStages::new);
        Ok(q.slots
            .entry((stage, partition))
            .or_insert_with(Slot::new)
            .clone())
    }

    fn query_spill_dir(&self, query_id: &str) -> PathBuf {
        // Query ids come from the leader as hex; keep anything else out of the path.
        let safe: String = query_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.spill_dir.join(format!("q-{safe}"))
    }

    /// Starts this node's partitions of a stage. The plan is decoded once, so partitions
    /// share what DataFusion shares inside one plan (e.g. a broadcast join's build side).
    pub fn start_stage(self: &Arc<Self>, req: StartStage, engine: &Engine) -> Result<()> {
        self.sweep_abandoned();
        let spill_dir = self.query_spill_dir(&req.query_id);
        let ctx = self.query_ctx(&req, engine, &spill_dir)?;
        let plan = decode_plan(&req.plan, &ctx)?;
        let kind = ExchangeKind::try_from(req.kind)
            .map_err(|_| Error::BadRequest(format!("unknown exchange kind {}", req.kind)))?;
        let (input, router) = match kind {
            ExchangeKind::Gather => (plan, Router::Single),
            ExchangeKind::Hash | ExchangeKind::RoundRobin => {
                let Some(repartition) = plan.downcast_ref::<RepartitionExec>() else {
                    return Err(Error::BadRequest(format!(
                        "stage {} of a repartition exchange has root {}",
                        req.stage_id,
                        plan.name()
                    )));
                };
                let input = repartition.input().clone();
                match repartition.partitioning() {
                    Partitioning::Hash(exprs, n) => (input, Router::Hash(exprs.clone(), *n as u32)),
                    Partitioning::RoundRobinBatch(n) => (input, Router::RoundRobin(*n as u32, 0)),
                    other => {
                        return Err(Error::BadRequest(format!(
                            "unsupported exchange partitioning {other}"
                        )));
                    }
                }
            }
        };
        let available = input.properties().output_partitioning().partition_count();
        if let Some(q) = self.lock().queries.get_mut(&req.query_id) {
            q.plans.insert(req.stage_id, input.clone());
        }
        let per_slot = (req.memory_limit as usize / req.partitions.len().max(1)).max(1 << 20);
        let buckets = router.buckets();
        for &p in &req.partitions {
            if p as usize >= available {
                return Err(Error::BadRequest(format!(
                    "partition {p} requested of a stage with {available} partitions"
                )));
            }
            let slot = self.slot(&req.query_id, req.stage_id, p)?;
            {
                let mut s = slot.lock();
                if s.started {
                    return Err(Error::BadRequest(format!(
                        "stage {} partition {p} of query {} started twice",
                        req.stage_id, req.query_id
                    )));
                }
                s.started = true;
                s.consume_once = req.consume_once;
                s.buckets = vec![Vec::new(); buckets];
                s.memory_limit = per_slot;
                s.stats.started = Some(Instant::now());
            }
            slot.bump();
            let router = match &router {
                Router::Hash(e, n) => Router::Hash(e.clone(), *n),
                // Producers start at different buckets so small inputs still spread.
                Router::RoundRobin(n, _) => Router::RoundRobin(*n, p as usize),
                Router::Single => Router::Single,
            };
            let prefix = spill_dir.join(format!("s{}-p{p}", req.stage_id));
            let (input, ctx, slot) = (input.clone(), ctx.clone(), slot.clone());
            let dir = spill_dir.clone();
            let task = blueshift_common::runtime::query_runtime().spawn(async move {
                let run = async {
                    match input.execute(p as usize, ctx) {
                        Ok(stream) => produce(slot.clone(), stream, router, dir, prefix).await,
                        Err(e) => slot.fail(blueshift_common::Error::DataFusion(e).to_status()),
                    }
                };
                // Readers wait for the end of the output: a panic must end it with an error.
                if std::panic::AssertUnwindSafe(run)
                    .catch_unwind()
                    .await
                    .is_err()
                {
                    slot.fail(
                        blueshift_common::Error::sql(
                            sqlstate::INTERNAL_ERROR,
                            "a stage producer panicked",
                        )
                        .to_status(),
                    );
                }
            });
            let mut reg = self.lock();
            match reg.queries.get_mut(&req.query_id) {
                Some(q) => q.tasks.push(task.abort_handle()),
                // Released while we were starting: stop at once.
                None => task.abort(),
            }
        }
        Ok(())
    }

    /// The query's task context on this node, created by its first stage.
    fn query_ctx(
        &self,
        req: &StartStage,
        engine: &Engine,
        spill_dir: &Path,
    ) -> Result<Arc<TaskContext>> {
        if let Some(ctx) = self
            .lock()
            .queries
            .get(&req.query_id)
            .and_then(|q| q.ctx.clone())
        {
            return Ok(ctx);
        }
        let counters = self
            .lock()
            .queries
            .get(&req.query_id)
            .map(|q| q.cache.clone())
            .unwrap_or_default();
        let ctx = engine.query_task_ctx(
            req.query_memory_limit,
            &spill_dir.join("operators"),
            counters.clone(),
        )?;
        let mut reg = self.lock();
        if reg.released.contains(&req.query_id) {
            return Err(blueshift_common::Error::sql(
                sqlstate::QUERY_CANCELED,
                format!("query {} has ended", req.query_id),
            )
            .into());
        }
        let q = reg
            .queries
            .entry(req.query_id.clone())
            .or_insert_with(QueryStages::new);
        if q.ctx.is_none() {
            // The context that wins counts into the query's counters.
            q.cache = counters;
        }
        Ok(q.ctx.get_or_insert(ctx).clone())
    }

    /// Stops every producer of a query and frees its rows and spill files.
    pub fn release(&self, query_id: &str) {
        let stages = {
            let mut reg = self.lock();
            if reg.released.insert(query_id.to_string()) {
                reg.released_order.push_back(query_id.to_string());
            }
            while reg.released_order.len() > REMEMBER_RELEASED {
                if let Some(old) = reg.released_order.pop_front() {
                    reg.released.remove(&old);
                }
            }
            reg.queries.remove(query_id)
        };
        if let Some(q) = stages {
            release_stages(q);
        }
        let dir = self.query_spill_dir(query_id);
        if dir.exists() {
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    }

    /// Releases queries the leader never released within [`ABANDONED_AFTER`] (it died, or
    /// its release was lost). Runs on every stage start and periodically.
    pub fn sweep_abandoned(&self) {
        let abandoned: Vec<String> = {
            let reg = self.lock();
            reg.queries
                .iter()
                .filter(|(_, q)| q.started.elapsed() > ABANDONED_AFTER)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in abandoned {
            tracing::warn!(query_id = %id, "dropping an abandoned query's stages");
            self.release(&id);
        }
    }

    /// What this node's stages of a query did so far.
    pub fn metrics(&self, query_id: &str) -> QueryMetrics {
        let reg = self.lock();
        let Some(q) = reg.queries.get(query_id) else {
            return QueryMetrics::default();
        };
        let mut stages: BTreeMap<u32, StageMetrics> = BTreeMap::new();
        for ((stage, partition), slot) in &q.slots {
            let stats = slot.lock().stats.clone();
            let entry = stages.entry(*stage).or_insert_with(|| StageMetrics {
                stage_id: *stage,
                partitions: Vec::new(),
                plan_with_metrics: q
                    .plans
                    .get(stage)
                    .map(|p| {
                        DisplayableExecutionPlan::with_metrics(p.as_ref())
                            .indent(true)
                            .to_string()
                    })
                    .unwrap_or_default(),
            });
            entry.partitions.push(PartitionMetrics {
                partition: *partition,
                rows: stats.rows,
                bytes: stats.bytes,
                micros: stats.elapsed.as_micros() as u64,
                spilled_batches: stats.spilled_batches,
            });
        }
        for stage in stages.values_mut() {
            stage.partitions.sort_by_key(|p| p.partition);
        }
        let (cache_hits, cache_misses, store_bytes, _) = q.cache.snapshot();
        QueryMetrics {
            stages: stages.into_values().collect(),
            cache_hits,
            cache_misses,
            store_bytes,
        }
    }

    /// Number of queries with state on this node (for tests and metrics).
    pub fn active_queries(&self) -> usize {
        self.lock().queries.len()
    }

    /// Streams one bucket of one producer partition.
    pub fn read(&self, t: &ExchangeTicket) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let slot = self.slot(&t.query_id, t.stage_id, t.producer_partition)?;
        let bucket = t.bucket as usize;
        let rx = slot.version.subscribe();
        let state = ReadState {
            slot,
            rx,
            bucket,
            next: 0,
            pending: VecDeque::new(),
            waited: Instant::now(),
        };
        Ok(futures::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next_batch().await {
                Ok(Some(batch)) => Some((Ok(batch), Some(state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed())
    }
}

fn release_stages(q: QueryStages) {
    for task in q.tasks {
        task.abort();
    }
    for slot in q.slots.values() {
        let mut s = slot.lock();
        s.released = true;
        s.buckets.clear();
        s.mem_bytes = 0;
        drop(s);
        slot.bump();
    }
}

struct ReadState {
    slot: Arc<Slot>,
    rx: watch::Receiver<u64>,
    bucket: usize,
    next: usize,
    /// Batches read back from a spill file, not yet returned.
    pending: VecDeque<RecordBatch>,
    waited: Instant,
}

impl ReadState {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Ok(Some(b));
            }
            self.rx.borrow_and_update();
            let chunk = {
                let mut s = self.slot.lock();
                if s.released {
                    return Err(blueshift_common::Error::sql(
                        sqlstate::QUERY_CANCELED,
                        "query ended while its rows were being read",
                    )
                    .into());
                }
                if s.started {
                    if self.bucket >= s.buckets.len() {
                        return Err(Error::BadRequest(format!(
                            "bucket {} of a stage with {} buckets",
                            self.bucket,
                            s.buckets.len()
                        )));
                    }
                    let consume = s.consume_once;
                    let entries = &mut s.buckets[self.bucket];
                    if self.next < entries.len() {
                        let chunk = if consume {
                            entries[self.next].take()
                        } else {
                            entries[self.next].clone()
                        };
                        self.next += 1;
                        if consume && let Some(Chunk::Mem(b)) = &chunk {
                            s.mem_bytes = s.mem_bytes.saturating_sub(b.get_array_memory_size());
                        }
                        match chunk {
                            Some(c) => Some((c, consume)),
                            None => {
                                return Err(Error::BadRequest(
                                    "exchange bucket was already read".into(),
                                ));
                            }
                        }
                    } else if let Some(e) = &s.error {
                        return Err(Error::Common(blueshift_common::Error::from_status(
                            e, "producer",
                        )));
                    } else if s.finished {
                        return Ok(None);
                    } else {
                        None
                    }
                } else if self.waited.elapsed() > START_TIMEOUT {
                    return Err(blueshift_common::Error::sql(
                        sqlstate::INTERNAL_ERROR,
                        "an exchange stage was never started on this node",
                    )
                    .into());
                } else {
                    None
                }
            };
            match chunk {
                Some((Chunk::Mem(b), _)) => return Ok(Some(b)),
                Some((Chunk::Disk(path), consume)) => {
                    let batches = tokio::task::spawn_blocking(move || read_spill(&path, consume))
                        .await
                        .map_err(|e| Error::Transport(format!("spill reader: {e}")))??;
                    self.pending.extend(batches);
                }
                None => {
                    // Wake on any change; poll periodically for the start timeout.
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.rx.changed()).await;
                }
            }
        }
    }
}

async fn produce(
    slot: Arc<Slot>,
    mut stream: SendableRecordBatchStream,
    mut router: Router,
    spill_dir: PathBuf,
    prefix: PathBuf,
) {
    let mut spilled = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                slot.fail(blueshift_common::Error::DataFusion(e).to_status());
                return;
            }
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let parts = match router.split(batch) {
            Ok(p) => p,
            Err(e) => {
                slot.fail(e.to_status());
                return;
            }
        };
        for (bucket, part) in parts {
            let size = part.get_array_memory_size();
            let rows = part.num_rows();
            let over = {
                let s = slot.lock();
                if s.released {
                    return;
                }
                s.mem_bytes + size > s.memory_limit
            };
            let chunk = if over {
                spilled += 1;
                let path = PathBuf::from(format!("{}-b{bucket}-{spilled}.arrow", prefix.display()));
                let dir = spill_dir.clone();
                let written = tokio::task::spawn_blocking(move || {
                    write_spill(&dir, &path, &part).map(|_| path)
                })
                .await;
                match written {
                    Ok(Ok(path)) => Chunk::Disk(path),
                    Ok(Err(e)) => {
                        slot.fail(e.to_status());
                        return;
                    }
                    Err(e) => {
                        slot.fail(Error::Transport(format!("spill writer: {e}")).to_status());
                        return;
                    }
                }
            } else {
                Chunk::Mem(part)
            };
            let mut s = slot.lock();
            if s.released {
                return;
            }
            if matches!(chunk, Chunk::Mem(_)) {
                s.mem_bytes += size;
            } else {
                s.stats.spilled_batches += 1;
            }
            s.stats.rows += rows as u64;
            s.stats.bytes += size as u64;
            if let Some(entries) = s.buckets.get_mut(bucket) {
                entries.push(Some(chunk));
            }
            drop(s);
            slot.bump();
        }
    }
    {
        let mut s = slot.lock();
        s.finished = true;
        if let Some(start) = s.stats.started {
            s.stats.elapsed = start.elapsed();
        }
    }
    slot.bump();
}

fn write_spill(dir: &Path, path: &Path, batch: &RecordBatch) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::File::create(path)?;
    let mut writer = FileWriter::try_new(std::io::BufWriter::new(file), &batch.schema())
        .map_err(DataFusionError::from)?;
    writer.write(batch).map_err(DataFusionError::from)?;
    writer.finish().map_err(DataFusionError::from)?;
    Ok(())
}

fn read_spill(path: &Path, consume: bool) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path)?;
    let reader =
        FileReader::try_new(std::io::BufReader::new(file), None).map_err(DataFusionError::from)?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(DataFusionError::from)?;
    if consume {
        let _ = std::fs::remove_file(path);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use blueshift_common::codec::encode_plan;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::col;

    fn batches(n: usize, rows: i64) -> (Arc<Schema>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches = (0..n as i64)
            .map(|b| {
                let values: Int64Array = (b * rows..(b + 1) * rows).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        (schema, batches)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "blueshift-exchange-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spill_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "arrow"))
                    .count()
            })
            .unwrap_or(0)
    }

    async fn read_all(exchanges: &Exchanges, query: &str, stage: u32, bucket: u32) -> Vec<i64> {
        let mut stream = exchanges
            .read(&ExchangeTicket {
                query_id: query.into(),
                stage_id: stage,
                producer_partition: 0,
                bucket,
            })
            .unwrap();
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            out.extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stage_past_its_memory_limit_spills_and_reads_back_in_order() {
        let dir = temp_dir("spill");
        let exchanges = Arc::new(Exchanges::new(dir.clone()));
        let engine = Engine::new(Default::default(), dir.join("cache"), 1 << 20);
        // 40 batches of 8192 i64 (2.6 MB) against a limit of 1 MiB.
        let (schema, input) = batches(40, 8192);
        let plan = MemorySourceConfig::try_new_exec(&[input], schema, None).unwrap();
        let req = StartStage {
            query_id: "q1".into(),
            stage_id: 1,
            plan: encode_plan(plan).unwrap().to_vec(),
            partitions: vec![0],
            kind: ExchangeKind::Gather as i32,
            consume_once: true,
            memory_limit: 1,
            query_memory_limit: 0,
        };
        exchanges.start_stage(req, &engine).unwrap();
        let query_dir = exchanges.query_spill_dir("q1");
        let mut spilled = 0;
        for _ in 0..100 {
            spilled = spill_files(&query_dir);
            if spilled >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(spilled >= 20, "only {spilled} spill files");

        let values = read_all(&exchanges, "q1", 1, 0).await;
        assert_eq!(values, (0..40 * 8192).collect::<Vec<i64>>());
        assert_eq!(spill_files(&query_dir), 0, "read spill files are deleted");

        exchanges.release("q1");
        assert_eq!(exchanges.active_queries(), 0);
        let late = exchanges.read(&ExchangeTicket {
            query_id: "q1".into(),
            stage_id: 1,
            producer_partition: 0,
            bucket: 0,
        });
        assert!(late.is_err(), "a released query cannot be read");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hash_buckets_follow_the_slice_hash() {
        let dir = temp_dir("hash");
        let exchanges = Arc::new(Exchanges::new(dir.clone()));
        let engine = Engine::new(Default::default(), dir.join("cache"), 1 << 20);
        let (schema, input) = batches(3, 1000);
        let scan = MemorySourceConfig::try_new_exec(&[input], schema.clone(), None).unwrap();
        let repartition = RepartitionExec::try_new(
            scan,
            Partitioning::Hash(vec![col("v", &schema).unwrap()], 4),
        )
        .unwrap();
        let req = StartStage {
            query_id: "q2".into(),
            stage_id: 7,
            plan: encode_plan(Arc::new(repartition)).unwrap().to_vec(),
            partitions: vec![0],
            kind: ExchangeKind::Hash as i32,
            consume_once: true,
            memory_limit: 64 << 20,
            query_memory_limit: 0,
        };
        exchanges.start_stage(req, &engine).unwrap();
        let mut all = Vec::new();
        for bucket in 0..4u32 {
            let values = read_all(&exchanges, "q2", 7, bucket).await;
            let array: Arc<dyn Array> = Arc::new(Int64Array::from(values.clone()));
            let slices = blueshift_common::hash::slice_of_rows(&array, 4).unwrap();
            assert!(slices.iter().all(|s| *s == bucket), "bucket {bucket}");
            all.extend(values);
        }
        all.sort_unstable();
        assert_eq!(all, (0..3000).collect::<Vec<i64>>());
        exchanges.release("q2");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
