//! Running plan fragments on compute nodes. [`RemoteFragmentExec`] stands in the leader's plan
//! for a fragment that runs on the compute nodes: its partition `i` is partition `i` of the
//! fragment, executed by the node that owns slice `i` and streamed back over Arrow Flight
//! (`do_get`). Dropping the stream cancels the remote work. A node that cannot be reached
//! fails the query with SQLSTATE 08006 and is marked down so the next query avoids it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use blueshift_common::Error as CommonError;
use blueshift_common::codec::encode_plan;
use blueshift_proto::MAX_MESSAGE_BYTES;
use blueshift_proto::v1::FragmentTicket;
use bytes::Bytes;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::{Membership, SliceMap};

/// Cached gRPC channels to compute nodes (tonic channels multiplex many calls).
pub struct Channels {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Default for Channels {
    fn default() -> Self {
        Self::new()
    }
}

impl Channels {
    pub fn new() -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn flight_client(&self, addr: &str) -> Result<FlightServiceClient<Channel>, CommonError> {
        let mut map = match self.channels.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
                    CommonError::sql(
                        blueshift_common::error::sqlstate::CONNECTION_FAILURE,
                        format!("bad compute node address {addr}: {e}"),
                    )
                })?;
                let channel = endpoint
                    .connect_timeout(std::time::Duration::from_secs(3))
                    .tcp_nodelay(true)
                    .connect_lazy();
                map.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Shared by every remote fragment of the leader.
pub struct Scheduler {
    pub channels: Channels,
    pub membership: Arc<Membership>,
}

#[derive(Debug)]
pub struct RemoteFragmentExec {
    fragment_id: usize,
    fragment: Arc<dyn ExecutionPlan>,
    plan_bytes: Bytes,
    query_id: String,
    slices: SliceMap,
    scheduler: Arc<SchedulerHandle>,
    properties: Arc<PlanProperties>,
}

/// `Debug` wrapper so the plan node can hold the scheduler.
pub struct SchedulerHandle(pub Arc<Scheduler>);

impl fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scheduler")
    }
}

impl RemoteFragmentExec {
    pub fn try_new(
        fragment_id: usize,
        fragment: Arc<dyn ExecutionPlan>,
        query_id: String,
        slices: SliceMap,
        scheduler: Arc<SchedulerHandle>,
    ) -> Result<Self> {
        let plan_bytes = encode_plan(fragment.clone())?;
        let properties = fragment.properties().clone();
        Ok(Self {
            fragment_id,
            fragment,
            plan_bytes,
            query_id,
            slices,
            scheduler,
            properties,
        })
    }

    pub fn fragment(&self) -> &Arc<dyn ExecutionPlan> {
        &self.fragment
    }

    pub fn fragment_id(&self) -> usize {
        self.fragment_id
    }
}

impl DisplayAs for RemoteFragmentExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.properties.output_partitioning().partition_count();
        let nodes: std::collections::BTreeSet<u64> =
            self.slices.owners.iter().map(|(id, _)| *id).collect();
        write!(
            f,
            "RemoteFragmentExec: fragment={}, partitions={n}, nodes={}",
            self.fragment_id,
            nodes.len()
        )
    }
}

impl ExecutionPlan for RemoteFragmentExec {
    fn name(&self) -> &str {
        "RemoteFragmentExec"
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "RemoteFragmentExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let slices = self.slices.owners.len().max(1);
        let addr = self
            .slices
            .addr(partition % slices)
            .ok_or_else(|| DataFusionError::Internal("no owner for slice".into()))?
            .to_string();
        let ticket = FragmentTicket {
            query_id: self.query_id.clone(),
            plan: self.plan_bytes.to_vec(),
            partition: partition as u32,
        };
        let scheduler = self.scheduler.0.clone();
        let schema = self.fragment.schema();
        let fut = async move {
            let mut client = scheduler.channels.flight_client(&addr)?;
            let response = client
                .do_get(Ticket {
                    ticket: ticket.encode_to_vec().into(),
                })
                .await
                .map_err(|s| remote_error(&scheduler, &addr, &s))?;
            let addr2 = addr.clone();
            let stream = FlightRecordBatchStream::new_from_flight_data(
                response
                    .into_inner()
                    .map_err(|s| FlightError::Tonic(Box::new(s))),
            )
            .map_err(move |e| match e {
                FlightError::Tonic(s) => remote_error(&scheduler, &addr2, &s),
                other => DataFusionError::External(Box::new(other)),
            });
            Ok::<_, DataFusionError>(stream)
        };
        let stream = futures::stream::once(fut).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

fn remote_error(scheduler: &Scheduler, addr: &str, status: &tonic::Status) -> DataFusionError {
    let err = CommonError::from_status(status, addr);
    if err.sqlstate() == blueshift_common::error::sqlstate::CONNECTION_FAILURE {
        scheduler.membership.suspect(addr);
    }
    err.into_datafusion()
}
