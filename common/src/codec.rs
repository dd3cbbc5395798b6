//! The datafusion-proto extension codec for Blueshift's own plan nodes, so plan fragments can
//! be shipped from the leader to compute nodes. Today that is [`SliceScanExec`]; the exchange
//! nodes will join it. Built-in DataFusion nodes use datafusion-proto's own encoding.

use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, DefaultPhysicalProtoConverter, PhysicalExtensionCodec,
    PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{self, PhysicalPlanNode};
use prost::Message;

use crate::scan::SliceScanExec;
use crate::types::Segment;

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
        let node = SliceScanNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("bad SliceScanExec bytes: {e}")))?;
        let schema_proto = node
            .schema
            .ok_or_else(|| DataFusionError::Internal("SliceScanExec without schema".into()))?;
        let schema = Arc::new(Schema::try_from(&schema_proto)?);
        let predicate = match &node.predicate {
            Some(p) => {
                let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
                Some(proto_converter.proto_to_physical_expr(p, &schema, &decode_ctx)?)
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
        )?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<SliceScanExec>() else {
            return Err(DataFusionError::Internal(format!(
                "cannot ship plan node {} to compute nodes",
                node.name()
            )));
        };
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
        };
        msg.encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding SliceScanExec: {e}")))
    }
}

/// Serializes a plan fragment for a compute node.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Bytes> {
    datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(plan, &BlueshiftCodec)
}

/// Deserializes a plan fragment received from the leader.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    let node = PhysicalPlanNode::decode(bytes)
        .map_err(|e| DataFusionError::Internal(format!("bad plan fragment bytes: {e}")))?;
    let converter = DefaultPhysicalProtoConverter {};
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, &BlueshiftCodec);
    converter.proto_to_execution_plan(&node, &decode_ctx)
}

#[allow(unused_imports)]
use AsExecutionPlan as _;
