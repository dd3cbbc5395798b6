//! The compute node's Arrow Flight service: `do_get` runs one partition of a plan fragment and
//! streams its batches; `do_put` receives one slice's rows of a load and answers with the
//! segments it wrote. Errors keep their SQLSTATE across the wire. Dropping a `do_get` stream
//! (query cancelled or finished early) drops the fragment's execution with it.

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
use blueshift_proto::v1::{FragmentTicket, LoadRequest, LoadResult};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::Error;
use crate::exec::Engine;
use crate::storage::SliceWriter;

pub struct ComputeFlightService {
    engine: Arc<Engine>,
}

impl ComputeFlightService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

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
        let ticket = FragmentTicket::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad fragment ticket: {e}")))?;
        tracing::Span::current().record("query_id", ticket.query_id.as_str());
        let stream = self
            .engine
            .execute(&ticket.plan, ticket.partition as usize)?;
        let schema = stream.schema();
        let batches = stream.map_err(|e| {
            FlightError::Tonic(Box::new(blueshift_common::Error::DataFusion(e).to_status()))
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(flight_to_status);
        Ok(Response::new(Box::pin(flight)))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
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
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}

impl From<Error> for FlightError {
    fn from(e: Error) -> Self {
        FlightError::Tonic(Box::new(e.to_status()))
    }
}
