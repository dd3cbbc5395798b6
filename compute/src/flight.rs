//! The compute node's Arrow Flight service:
//! * `do_action("start_stage")` starts this node's partitions of a query stage and
//!   `do_action("release_query")` stops and frees them ([`crate::exchange`]);
//!   `do_action("query_metrics")` reports what they did (EXPLAIN ANALYZE);
//! * `do_get(ExchangeTicket)` streams one bucket of a stage's output to a reader (another
//!   compute node or the leader);
//! * `do_put` receives one slice's rows of a load and answers with the segments it wrote.
//!
//! Errors keep their SQLSTATE across the wire.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use blueshift_proto::v1::{
    ExchangeTicket, LoadRequest, LoadResult, QueryMetricsRequest, ReleaseQuery, StartStage,
};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::Error;
use crate::drain::InFlight;
use crate::exchange::Exchanges;
use crate::exec::Engine;
use crate::storage::SliceWriter;

pub struct ComputeFlightService {
    engine: Arc<Engine>,
    exchanges: Arc<Exchanges>,
    /// Loads in progress (a drain waits for them).
    loads: Arc<InFlight>,
}

impl ComputeFlightService {
    pub fn new(engine: Arc<Engine>, exchanges: Arc<Exchanges>, loads: Arc<InFlight>) -> Self {
        Self {
            engine,
            exchanges,
            loads,
        }
    }
}

/// The `do_action` types this service answers.
pub const ACTION_START_STAGE: &str = "start_stage";
pub const ACTION_RELEASE_QUERY: &str = "release_query";
pub const ACTION_QUERY_METRICS: &str = "query_metrics";
pub const ACTION_CACHE_STATS: &str = "cache_stats";

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn flight_to_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl FlightService for ComputeFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoExchangeStream = BoxedStream<FlightData>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("compute nodes need no handshake"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    #[tracing::instrument(skip_all, fields(query_id))]
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = ExchangeTicket::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad exchange ticket: {e}")))?;
        tracing::Span::current().record("query_id", ticket.query_id.as_str());
        let batches = self
            .exchanges
            .read(&ticket)?
            .map_err(|e| FlightError::Tonic(Box::new(e.to_status())));
        let flight = FlightDataEncoderBuilder::new()
            .with_dictionary_handling(arrow_flight::encode::DictionaryHandling::Resend)
            .build(batches)
            .map_err(flight_to_status);
        Ok(Response::new(Box::pin(flight)))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let _load = self.loads.enter();
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty do_put stream"))?;
        let cmd = first
            .flight_descriptor
            .as_ref()
            .map(|d| d.cmd.clone())
            .ok_or_else(|| Status::invalid_argument("do_put without a LoadRequest descriptor"))?;
        let load = LoadRequest::decode(cmd)
            .map_err(|e| Status::invalid_argument(format!("bad LoadRequest: {e}")))?;
        let store = self.engine.store()?;
        let mut writer = SliceWriter::new(
            store,
            load.table_id,
            load.slice,
            &load.load_id,
            load.sort_columns.iter().map(|c| *c as usize).collect(),
            load.row_group_rows as usize,
        );
        let all: BoxStream<'static, Result<FlightData, FlightError>> =
            futures::stream::once(async move { Ok(first) })
                .chain(incoming.map_err(|s| FlightError::Tonic(Box::new(s))))
                .boxed();
        let mut batches = FlightRecordBatchStream::new_from_flight_data(all);
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(flight_to_status)?;
            writer.push(batch).await?;
        }
        let segments = writer.finish().await?;
        tracing::debug!(
            table_id = load.table_id,
            slice = load.slice,
            segments = segments.len(),
            "slice load written"
        );
        let result = PutResult {
            app_metadata: LoadResult { segments }.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(result)
        }))))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        match action.r#type.as_str() {
            ACTION_START_STAGE => {
                let req = StartStage::decode(action.body)
                    .map_err(|e| Status::invalid_argument(format!("bad StartStage: {e}")))?;
                self.engine.store()?;
                tracing::debug!(query_id = %req.query_id, stage = req.stage_id, partitions = ?req.partitions, "starting stage");
                self.exchanges.start_stage(req, &self.engine)?;
            }
            ACTION_QUERY_METRICS => {
                let req = QueryMetricsRequest::decode(action.body).map_err(|e| {
                    Status::invalid_argument(format!("bad QueryMetricsRequest: {e}"))
                })?;
                let metrics = self.exchanges.metrics(&req.query_id);
                let result = arrow_flight::Result {
                    body: metrics.encode_to_vec().into(),
                };
                return Ok(Response::new(Box::pin(futures::stream::once(async move {
                    Ok(result)
                }))));
            }
            ACTION_CACHE_STATS => {
                let stats = self.engine.cache()?.stats();
                let result = arrow_flight::Result {
                    body: stats.encode_to_vec().into(),
                };
                return Ok(Response::new(Box::pin(futures::stream::once(async move {
                    Ok(result)
                }))));
            }
            ACTION_RELEASE_QUERY => {
                let req = ReleaseQuery::decode(action.body)
                    .map_err(|e| Status::invalid_argument(format!("bad ReleaseQuery: {e}")))?;
                self.exchanges.release(&req.query_id);
            }
            other => {
                return Err(Status::unimplemented(format!("unknown action {other:?}")));
            }
        }
        Ok(Response::new(Box::pin(futures::stream::empty())))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (
                ACTION_START_STAGE,
                "start a query stage's producers (StartStage)",
            ),
            (
                ACTION_RELEASE_QUERY,
                "stop and free a query's stages (ReleaseQuery)",
            ),
            (
                ACTION_QUERY_METRICS,
                "what a query's stages did on this node (QueryMetrics)",
            ),
            (ACTION_CACHE_STATS, "the node's segment cache (CacheStats)"),
        ]
        .map(|(t, d)| {
            Ok(ActionType {
                r#type: t.to_string(),
                description: d.to_string(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}

impl From<Error> for FlightError {
    fn from(e: Error) -> Self {
        FlightError::Tonic(Box::new(e.to_status()))
    }
}
