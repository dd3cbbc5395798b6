//! The datafusion-proto extension codec for Blueshift's own plan nodes, so plan fragments can
//! be shipped from the leader to compute nodes: [`SliceScanExec`] and [`ExchangeReaderExec`].
//! Built-in DataFusion nodes use datafusion-proto's own encoding.

use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, PlanProperties};
use datafusion_proto::physical_plan::{
    AsExecutionPlan, DefaultPhysicalProtoConverter, PhysicalExtensionCodec,
    PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{self, PhysicalPlanNode};
use prost::Message;

use crate::exchange::{ExchangeReaderExec, ReadMode};
use crate::scan::SliceScanExec;
use crate::types::Segment;

/// One of our extension nodes.
#[derive(Clone, PartialEq, prost::Message)]
struct BlueshiftNode {
    #[prost(oneof = "Node", tags = "1, 2")]
    node: Option<Node>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Node {
    #[prost(message, tag = "1")]
    Scan(Box<SliceScanNode>),
    #[prost(message, tag = "2")]
    Reader(ExchangeReaderNode),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExchangeReaderNode {
    #[prost(string, tag = "1")]
    query_id: String,
    #[prost(uint32, tag = "2")]
    stage_id: u32,
    /// True for [`ReadMode::Gather`].
    #[prost(bool, tag = "3")]
    gather: bool,
    #[prost(string, repeated, tag = "4")]
    producers: Vec<String>,
    #[prost(message, optional, tag = "5")]
    schema: Option<protobuf::Schema>,
    #[prost(uint32, tag = "6")]
    partitions: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SliceScanNode {
    #[prost(string, tag = "1")]
    table: String,
    #[prost(message, optional, tag = "2")]
    schema: Option<protobuf::Schema>,
    #[prost(bool, tag = "3")]
    has_projection: bool,
    #[prost(uint32, repeated, tag = "4")]
    projection: Vec<u32>,
    #[prost(message, repeated, tag = "5")]
    slices: Vec<SliceSegments>,
    #[prost(message, optional, tag = "6")]
    predicate: Option<protobuf::PhysicalExprNode>,
    #[prost(uint64, optional, tag = "7")]
    limit: Option<u64>,
    /// The scan adds the segment column (DELETE / UPDATE).
    #[prost(bool, tag = "8")]
    segment_column: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SliceSegments {
    #[prost(message, repeated, tag = "1")]
    segments: Vec<SegmentNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SegmentNode {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(uint32, tag = "2")]
    slice: u32,
    #[prost(uint64, tag = "3")]
    rows: u64,
    #[prost(uint64, tag = "4")]
    bytes: u64,
}

/// Codec for Blueshift's extension plan nodes.
#[derive(Debug, Default, Clone)]
pub struct BlueshiftCodec;

impl PhysicalExtensionCodec for BlueshiftCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(DataFusionError::Internal(
                "Blueshift extension node with unexpected inputs".into(),
            ));
        }
        let node = BlueshiftNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("bad Blueshift plan node: {e}")))?;
        match node.node {
            Some(Node::Scan(scan)) => self.decode_scan(*scan, ctx, proto_converter),
            Some(Node::Reader(reader)) => decode_reader(reader),
            None => Err(DataFusionError::Internal(
                "empty Blueshift plan node".into(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let msg = if let Some(scan) = node.downcast_ref::<SliceScanExec>() {
            Node::Scan(Box::new(self.encode_scan(scan, proto_converter)?))
        } else if let Some(reader) = node.downcast_ref::<ExchangeReaderExec>() {
            Node::Reader(ExchangeReaderNode {
                query_id: reader.query_id().to_string(),
                stage_id: reader.stage_id(),
                gather: reader.mode() == ReadMode::Gather,
                producers: reader.producers().to_vec(),
                schema: Some(reader.schema().as_ref().try_into()?),
                partitions: reader.partition_count() as u32,
            })
        } else {
            return Err(DataFusionError::Internal(format!(
                "cannot ship plan node {} to compute nodes",
                node.name()
            )));
        };
        BlueshiftNode { node: Some(msg) }
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding {}: {e}", node.name())))
    }
}

fn decode_reader(node: ExchangeReaderNode) -> Result<Arc<dyn ExecutionPlan>> {
    let schema_proto = node
        .schema
        .ok_or_else(|| DataFusionError::Internal("ExchangeReaderExec without schema".into()))?;
    let schema = Arc::new(Schema::try_from(&schema_proto)?);
    // Only the partition count matters where the plan is executed: nothing re-plans it.
    let properties = Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(node.partitions.max(1) as usize),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ));
    let mode = if node.gather {
        ReadMode::Gather
    } else {
        ReadMode::Buckets
    };
    Ok(Arc::new(ExchangeReaderExec::new(
        node.query_id,
        node.stage_id,
        mode,
        node.producers,
        schema,
        properties,
    )))
}

impl BlueshiftCodec {
    fn decode_scan(
        &self,
        node: SliceScanNode,
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema_proto = node
            .schema
            .ok_or_else(|| DataFusionError::Internal("SliceScanExec without schema".into()))?;
        let schema = Arc::new(Schema::try_from(&schema_proto)?);
        // The predicate is over the scan's schema (with the segment column, if any).
        let scan_schema = if node.segment_column {
            crate::scan::with_segment_field(&schema)
        } else {
            schema.clone()
        };
        let predicate = match &node.predicate {
            Some(p) => {
                let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
                Some(proto_converter.proto_to_physical_expr(p, &scan_schema, &decode_ctx)?)
            }
            None => None,
        };
        let slices = node
            .slices
            .into_iter()
            .map(|s| {
                s.segments
                    .into_iter()
                    .map(|g| Segment {
                        path: g.path,
                        slice: g.slice,
                        rows: g.rows,
                        bytes: g.bytes,
                    })
                    .collect()
            })
            .collect();
        let projection = node
            .has_projection
            .then(|| node.projection.iter().map(|i| *i as usize).collect());
        Ok(Arc::new(SliceScanExec::try_new(
            node.table,
            schema,
            projection,
            slices,
            predicate,
            node.limit.map(|l| l as usize),
            node.segment_column,
        )?))
    }

    fn encode_scan(
        &self,
        scan: &SliceScanExec,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<SliceScanNode> {
        let predicate = match scan.predicate() {
            Some(p) => Some(proto_converter.physical_expr_to_proto(p, self)?),
            None => None,
        };
        let msg = SliceScanNode {
            table: scan.table().to_string(),
            schema: Some(scan.table_schema().as_ref().try_into()?),
            has_projection: scan.projection().is_some(),
            projection: scan
                .projection()
                .map(|p| p.iter().map(|i| *i as u32).collect())
                .unwrap_or_default(),
            slices: scan
                .slices()
                .iter()
                .map(|segs| SliceSegments {
                    segments: segs
                        .iter()
                        .map(|s| SegmentNode {
                            path: s.path.clone(),
                            slice: s.slice,
                            rows: s.rows,
                            bytes: s.bytes,
                        })
                        .collect(),
                })
                .collect(),
            predicate,
            limit: scan.limit().map(|l| l as u64),
            segment_column: scan.segment_column(),
        };
        Ok(msg)
    }
}

/// Serializes a plan fragment for a compute node.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Bytes> {
    datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(plan, &BlueshiftCodec)
}

/// Deserializes a plan fragment received from the leader, and refuses it unless it is made
/// of what the leader itself sends ([`check_sources`]).
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    let node = PhysicalPlanNode::decode(bytes)
        .map_err(|e| DataFusionError::Internal(format!("bad plan fragment bytes: {e}")))?;
    let converter = DefaultPhysicalProtoConverter {};
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, &BlueshiftCodec);
    let plan = converter.proto_to_execution_plan(&node, &decode_ctx)?;
    check_sources(&plan)?;
    Ok(plan)
}

/// The allow-list of a compute node's plans. datafusion-proto decodes file scans (CSV,
/// Parquet, JSON, Avro, Arrow at any path or URL) and file sinks, which a plan from
/// anyone but Blueshift's leader could use to read or write the node's files. Every leaf
/// must be a source the leader plans (a slice scan of the segment store, an exchange
/// reader, rows carried in the plan, one empty row or none, a recursive query's work
/// table), and nothing may write: operators between the leaves only compute on the rows
/// their children give them.
pub fn check_sources(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::datasource::sink::DataSinkExec;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
    use datafusion::physical_plan::work_table::WorkTableExec;
    let refuse = |what: &str| {
        Err(crate::error::Error::sql(
            crate::error::sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("compute nodes do not run plans with {what}"),
        )
        .into_datafusion())
    };
    if plan.is::<DataSinkExec>() {
        return refuse(&format!("a data sink ({})", plan.name()));
    }
    let children = plan.children();
    if children.is_empty() {
        let allowed = plan.is::<SliceScanExec>()
            || plan.is::<ExchangeReaderExec>()
            || plan.is::<EmptyExec>()
            || plan.is::<PlaceholderRowExec>()
            || plan.is::<WorkTableExec>()
            || plan
                .downcast_ref::<DataSourceExec>()
                .is_some_and(|d| d.data_source().is::<MemorySourceConfig>());
        if !allowed {
            return refuse(&format!("this source: {}", plan.name()));
        }
    }
    for child in children {
        check_sources(child)?;
    }
    Ok(())
}

#[allow(unused_imports)]
use AsExecutionPlan as _;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{CsvReadOptions, SessionContext};

    async fn round_trip(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        decode_plan(&encode_plan(plan)?, &ctx.task_ctx())
    }

    #[tokio::test]
    async fn a_plan_that_scans_a_file_is_refused_and_one_of_constants_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.csv");
        std::fs::write(&file, "a,b\n1,2\n").unwrap();
        let ctx = SessionContext::new();
        ctx.register_csv("f", file.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let err = round_trip(&ctx, "select a from f where b > 0")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("do not run plans with this source"),
            "{err}"
        );
        round_trip(&ctx, "select 1 + 1 as two").await.unwrap();
        round_trip(
            &ctx,
            "select * from (values (1, 'a'), (2, 'b')) t(x, y) where x > 1",
        )
        .await
        .unwrap();
    }
}
