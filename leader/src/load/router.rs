//! Routing rows to slices and shipping each slice's rows to the node that owns it with a
//! Flight `do_put` (one stream per slice, opened on first use, bounded so a slow node
//! slows the load instead of growing memory). `finish` returns the written segments for the
//! caller to commit; dropping the router before that abandons the load (segments that were
//! written stay invisible).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use blueshift_common::error::sqlstate;
use blueshift_common::hash::slice_of_rows;
use blueshift_common::types::{DistStyle, Segment, TableDef};
use blueshift_proto::v1::{LoadRequest, LoadResult};
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::SliceMap;
use crate::error::{Error, Result};
use crate::scheduler::Scheduler;

/// Rows per Parquet row group: the zone-map granularity of a segment.
pub const ROW_GROUP_ROWS: u32 = 65_536;

struct SliceStream {
    tx: mpsc::Sender<RecordBatch>,
    task: JoinHandle<Result<Vec<Segment>>>,
}

pub struct Router {
    table: TableDef,
    slices: u32,
    map: SliceMap,
    load_id: String,
    scheduler: Arc<Scheduler>,
    streams: HashMap<u32, SliceStream>,
    next_even: u64,
    rows: u64,
}

impl Router {
    pub fn new(table: TableDef, slices: u32, map: SliceMap, scheduler: Arc<Scheduler>) -> Self {
        let next_even = table.total_rows();
        Self {
            table,
            slices: slices.max(1),
            map,
            load_id: format!("load-{}", uuid::Uuid::new_v4().simple()),
            scheduler,
            streams: HashMap::new(),
            next_even,
            rows: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Routes a batch of the table's schema.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.rows += n as u64;
        match self.table.dist.clone() {
            DistStyle::All => {
                for slice in self.map.first_slices() {
                    self.send(slice, batch.clone()).await?;
                }
            }
            DistStyle::Even => {
                let start = self.next_even;
                self.next_even += n as u64;
                let s = u64::from(self.slices);
                let targets: Vec<u32> = (0..n as u64).map(|i| ((start + i) % s) as u32).collect();
                self.scatter(&batch, &targets).await?;
            }
            DistStyle::Key { column } => {
                let targets = slice_of_rows(batch.column(column), self.slices)?;
                self.scatter(&batch, &targets).await?;
            }
        }
        Ok(())
    }

    async fn scatter(&mut self, batch: &RecordBatch, targets: &[u32]) -> Result<()> {
        let mut per_slice: Vec<Vec<u32>> = vec![Vec::new(); self.slices as usize];
        for (row, slice) in targets.iter().enumerate() {
            per_slice[*slice as usize].push(row as u32);
        }
        for (slice, rows) in per_slice.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            self.send(slice as u32, part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, slice: u32, batch: RecordBatch) -> Result<()> {
        if !self.streams.contains_key(&slice) {
            let stream = self.open(slice, batch.schema())?;
            self.streams.insert(slice, stream);
        }
        let Some(stream) = self.streams.get(&slice) else {
            return Err(Error::sql(
                sqlstate::INTERNAL_ERROR,
                "slice stream vanished",
            ));
        };
        if stream.tx.send(batch).await.is_err() {
            // The node's side ended early: its task has the reason.
            if let Some(s) = self.streams.remove(&slice) {
                return match s.task.await {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(_)) => Err(Error::sql(
                        sqlstate::CONNECTION_FAILURE,
                        format!("compute node closed the load stream of slice {slice}"),
                    )),
                    Err(e) => Err(Error::sql(sqlstate::INTERNAL_ERROR, e.to_string())),
                };
            }
        }
        Ok(())
    }

    fn open(&self, slice: u32, schema: arrow::datatypes::SchemaRef) -> Result<SliceStream> {
        let addr = self
            .map
            .addr(slice as usize)
            .ok_or_else(|| {
                Error::sql(
                    sqlstate::INTERNAL_ERROR,
                    format!("no owner for slice {slice}"),
                )
            })?
            .to_string();
        let request = LoadRequest {
            load_id: self.load_id.clone(),
            table_id: self.table.id,
            slice,
            sort_columns: self.table.sort_key.iter().map(|c| *c as u32).collect(),
            row_group_rows: ROW_GROUP_ROWS,
        };
        let (tx, rx) = mpsc::channel::<RecordBatch>(4);
        let scheduler = self.scheduler.clone();
        let task = tokio::spawn(async move {
            let mut client = scheduler.channels.flight_client(&addr)?;
            let encode_error: Arc<Mutex<Option<FlightError>>> = Arc::new(Mutex::new(None));
            let slot = encode_error.clone();
            let data = FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .with_flight_descriptor(Some(FlightDescriptor::new_cmd(request.encode_to_vec())))
                .build(ReceiverStream::new(rx).map(Ok))
                .map(move |r| match r {
                    Ok(d) => Some(d),
                    Err(e) => {
                        if let Ok(mut s) = slot.lock() {
                            *s = Some(e);
                        }
                        None
                    }
                })
                .take_while(|d| futures::future::ready(d.is_some()))
                .filter_map(futures::future::ready);
            let response = client.do_put(data).await.map_err(|s| {
                let e = blueshift_common::Error::from_status(&s, &addr);
                if e.sqlstate() == sqlstate::CONNECTION_FAILURE {
                    scheduler.membership.suspect(&addr);
                }
                Error::Common(e)
            })?;
            if let Ok(mut s) = encode_error.lock()
                && let Some(e) = s.take()
            {
                return Err(Error::sql(
                    sqlstate::INTERNAL_ERROR,
                    format!("encoding rows for slice {slice}: {e}"),
                ));
            }
            let mut results = response.into_inner();
            let result = results
                .message()
                .await
                .map_err(|s| Error::Common(blueshift_common::Error::from_status(&s, &addr)))?
                .ok_or_else(|| {
                    Error::sql(
                        sqlstate::CONNECTION_FAILURE,
                        "compute node sent no load result",
                    )
                })?;
            let load = LoadResult::decode(result.app_metadata).map_err(|e| {
                Error::sql(sqlstate::INTERNAL_ERROR, format!("bad load result: {e}"))
            })?;
            Ok(load
                .segments
                .into_iter()
                .map(|s| Segment {
                    path: s.path,
                    slice: s.slice,
                    rows: s.rows,
                    bytes: s.bytes,
                })
                .collect())
        });
        Ok(SliceStream { tx, task })
    }

    /// Closes every slice stream and waits for the nodes' segment lists.
    pub async fn finish(self) -> Result<Vec<Segment>> {
        let mut segments = Vec::new();
        let mut first_error = None;
        for (_, s) in self.streams {
            drop(s.tx);
            match s.task.await {
                Ok(Ok(segs)) => segments.extend(segs),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::sql(sqlstate::INTERNAL_ERROR, e.to_string()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(segments),
        }
    }
}
