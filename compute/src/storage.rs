//! Writing a slice's rows as segments: immutable Parquet files sorted by the table's SORTKEY,
//! with row-group statistics and page indexes (the zone maps scans prune with). Rows are
//! buffered up to [`MAX_SEGMENT_ROWS`] and then sorted and written, so memory stays bounded
//! however big the load. Segments become visible only when the leader commits them to the
//! catalog; until then they are invisible files that garbage collection may delete.

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use blueshift_common::store::SegmentStore;
use blueshift_proto::v1::SegmentInfo;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::{Error, Result};

/// Rows buffered before a segment is cut.
pub const MAX_SEGMENT_ROWS: usize = 2_000_000;

pub struct SliceWriter {
    store: SegmentStore,
    prefix: String,
    slice: u32,
    sort_columns: Vec<usize>,
    row_group_rows: usize,
    schema: Option<SchemaRef>,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    segments: Vec<SegmentInfo>,
}

impl SliceWriter {
    pub fn new(
        store: SegmentStore,
        table_id: u64,
        slice: u32,
        load_id: &str,
        sort_columns: Vec<usize>,
        row_group_rows: usize,
    ) -> Self {
        Self {
            store,
            prefix: format!("tables/{table_id}/slice-{slice:04}/{load_id}"),
            slice,
            sort_columns,
            row_group_rows: row_group_rows.max(1024),
            schema: None,
            buffered: Vec::new(),
            buffered_rows: 0,
            segments: Vec::new(),
        }
    }

    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if self.schema.is_none() {
            self.schema = Some(batch.schema());
        }
        self.buffered_rows += batch.num_rows();
        self.buffered.push(batch);
        if self.buffered_rows >= MAX_SEGMENT_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<Vec<SegmentInfo>> {
        self.flush().await?;
        Ok(self.segments)
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(schema) = self.schema.clone() else {
            return Ok(());
        };
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let batch = concat_batches(&schema, &self.buffered).map_err(df)?;
        self.buffered.clear();
        self.buffered_rows = 0;
        let batch = sort_batch(batch, &self.sort_columns)?;
        let rows = batch.num_rows() as u64;
        let data = encode_parquet(&batch, self.row_group_rows)?;
        let bytes = data.len() as u64;
        let path = format!("{}-{:04}.parquet", self.prefix, self.segments.len());
        // Durable and write-once: the leader commits the segment after this returns.
        self.store.put_once(&path, data).await?;
        self.segments.push(SegmentInfo {
            path,
            slice: self.slice,
            rows,
            bytes,
        });
        Ok(())
    }
}

fn df(e: arrow::error::ArrowError) -> Error {
    Error::Common(e.into())
}

fn sort_batch(batch: RecordBatch, sort_columns: &[usize]) -> Result<RecordBatch> {
    if sort_columns.is_empty() || batch.num_rows() <= 1 {
        return Ok(batch);
    }
    let columns = sort_columns
        .iter()
        .map(|i| {
            batch
                .columns()
                .get(*i)
                .cloned()
                .map(|values| SortColumn {
                    values,
                    options: None,
                })
                .ok_or_else(|| Error::BadRequest(format!("sort column {i} out of range")))
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None).map_err(df)?;
    take_record_batch(&batch, &indices).map_err(df)
}

fn encode_parquet(batch: &RecordBatch, row_group_rows: usize) -> Result<Bytes> {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| Error::Common(e.into()))?,
        ))
        .build();
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))
        .map_err(|e| Error::Common(e.into()))?;
    writer.write(batch).map_err(|e| Error::Common(e.into()))?;
    writer.close().map_err(|e| Error::Common(e.into()))?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use std::sync::Arc;

    #[test]
    fn segments_are_sorted_by_the_sort_key() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![3, 1, 2]))]).unwrap();
        let sorted = sort_batch(batch, &[0]).unwrap();
        let col = sorted.column(0).as_primitive::<Int32Type>();
        assert_eq!(col.values().to_vec(), vec![1, 2, 3]);
        assert_eq!(col.len(), 3);
    }
}
