//! The consuming end of an exchange: [`ExchangeReaderExec`] stands in a plan where the rows of
//! another stage arrive over Arrow Flight. It runs wherever its parent runs (a compute node or
//! the leader) and reads from the compute nodes that produce the stage (`do_get` with an
//! `ExchangeTicket`). It owns no buffering: producers keep their output (in memory, then
//! spilled) until read, which is what gives back-pressure a bound.
//!
//! Two shapes ([`ReadMode`]):
//! * `Buckets`: the stage was a repartition into `n` buckets; partition `j` of the reader is
//!   bucket `j` of every producer partition, merged as they arrive (no order kept).
//! * `Gather`: partition `i` of the reader is producer partition `i`'s whole output, in its
//!   order (a sort-preserving merge or a broadcast can sit above it).
//!
//! Also here: [`Channels`], the process-wide cache of gRPC channels to compute nodes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use blueshift_proto::MAX_MESSAGE_BYTES;
use blueshift_proto::v1::ExchangeTicket;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use crate::cluster_auth::{Attach, AuthChannel};
use crate::error::{Error, sqlstate};

/// Cached gRPC channels to compute nodes (a tonic channel multiplexes many calls).
#[derive(Default)]
pub struct Channels {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Channels {
    /// The cache shared by everything in this process.
    pub fn global() -> &'static Channels {
        static GLOBAL: OnceLock<Channels> = OnceLock::new();
        GLOBAL.get_or_init(Channels::default)
    }

    /// A Flight client of `addr` whose calls carry the cluster proof
    /// ([`crate::cluster_auth`]).
    pub fn flight_client(&self, addr: &str) -> Result<FlightServiceClient<AuthChannel>, Error> {
        let mut map = match self.channels.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
                    Error::sql(
                        sqlstate::CONNECTION_FAILURE,
                        format!("bad compute node address {addr}: {e}"),
                    )
                })?;
                let channel = endpoint
                    .connect_timeout(Duration::from_secs(3))
                    .tcp_nodelay(true)
                    .connect_lazy();
                map.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(FlightServiceClient::with_interceptor(channel, Attach)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Called with a node's address when it could not be reached, so the leader can stop
/// scheduling on it. Set once per process (the leader sets it; compute nodes do not).
type UnreachableHook = Box<dyn Fn(&str) + Send + Sync>;
static UNREACHABLE_HOOK: OnceLock<UnreachableHook> = OnceLock::new();

pub fn set_unreachable_hook(hook: UnreachableHook) {
    let _ = UNREACHABLE_HOOK.set(hook);
}

/// Turns a failed Flight call to `addr` into a query error, keeping the remote SQLSTATE.
pub fn remote_error(addr: &str, status: &tonic::Status) -> DataFusionError {
    let err = Error::from_status(status, addr);
    // Only a failure to reach `addr` itself says `addr` is down: a status carrying a
    // SQLSTATE came from `addr`, which may be reporting a peer it could not reach.
    let reported = status
        .metadata()
        .get(crate::error::SQLSTATE_METADATA)
        .is_some();
    if !reported
        && err.sqlstate() == sqlstate::CONNECTION_FAILURE
        && let Some(hook) = UNREACHABLE_HOOK.get()
    {
        hook(addr);
    }
    err.into_datafusion()
}

/// How reader partitions map onto the producers' buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Partition `j` reads bucket `j` of every producer.
    Buckets,
    /// Partition `i` reads bucket 0 (everything) of producer `i`.
    Gather,
}

#[derive(Debug, Clone)]
pub struct ExchangeReaderExec {
    query_id: String,
    stage_id: u32,
    mode: ReadMode,
    /// Flight address of each producer partition, by partition.
    producers: Vec<String>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ExchangeReaderExec {
    /// `properties` are what the replaced plan node promised (partitioning and ordering),
    /// so the plan above stays valid.
    pub fn new(
        query_id: String,
        stage_id: u32,
        mode: ReadMode,
        producers: Vec<String>,
        schema: SchemaRef,
        properties: Arc<PlanProperties>,
    ) -> Self {
        Self {
            query_id,
            stage_id,
            mode,
            producers,
            schema,
            properties,
        }
    }

    pub fn query_id(&self) -> &str {
        &self.query_id
    }
    pub fn stage_id(&self) -> u32 {
        self.stage_id
    }
    pub fn mode(&self) -> ReadMode {
        self.mode
    }
    pub fn producers(&self) -> &[String] {
        &self.producers
    }
    pub fn partition_count(&self) -> usize {
        self.properties.output_partitioning().partition_count()
    }

    fn read(&self, addr: String, producer: usize, bucket: usize) -> SendableRecordBatchStream {
        let ticket = ExchangeTicket {
            query_id: self.query_id.clone(),
            stage_id: self.stage_id,
            producer_partition: producer as u32,
            bucket: bucket as u32,
        };
        let fut = async move {
            let mut client = Channels::global()
                .flight_client(&addr)
                .map_err(Error::into_datafusion)?;
            let response = client
                .do_get(Ticket {
                    ticket: ticket.encode_to_vec().into(),
                })
                .await
                .map_err(|s| remote_error(&addr, &s))?;
            let stream = FlightRecordBatchStream::new_from_flight_data(
                response
                    .into_inner()
                    .map_err(|s| FlightError::Tonic(Box::new(s))),
            )
            .map_err(move |e| match e {
                FlightError::Tonic(s) => remote_error(&addr, &s),
                other => DataFusionError::External(Box::new(other)),
            });
            Ok::<_, DataFusionError>(stream)
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(fut).try_flatten().boxed(),
        ))
    }
}

impl DisplayAs for ExchangeReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let nodes: std::collections::BTreeSet<&str> =
            self.producers.iter().map(String::as_str).collect();
        match self.mode {
            ReadMode::Buckets => write!(
                f,
                "ExchangeReaderExec: stage={}, redistributed into {} slices from {} producers on {} nodes",
                self.stage_id,
                self.partition_count(),
                self.producers.len(),
                nodes.len()
            ),
            ReadMode::Gather => write!(
                f,
                "ExchangeReaderExec: stage={}, gathered from {} producers on {} nodes",
                self.stage_id,
                self.producers.len(),
                nodes.len()
            ),
        }
    }
}

impl ExecutionPlan for ExchangeReaderExec {
    fn name(&self) -> &str {
        "ExchangeReaderExec"
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
        crate::leaf::leaf_with_new_children(self, children)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.partition_count() {
            return Err(DataFusionError::Internal(format!(
                "ExchangeReaderExec: partition {partition} of {}",
                self.partition_count()
            )));
        }
        match self.mode {
            ReadMode::Gather => {
                let addr = self.producers.get(partition).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("no producer for partition {partition}"))
                })?;
                Ok(self.read(addr, partition, 0))
            }
            ReadMode::Buckets => {
                let streams: Vec<SendableRecordBatchStream> = self
                    .producers
                    .iter()
                    .enumerate()
                    .map(|(p, addr)| self.read(addr.clone(), p, partition))
                    .collect();
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::select_all(streams),
                )))
            }
        }
    }
}
