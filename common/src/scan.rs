//! `SliceScanExec`: the table scan. It has one output partition per slice, and partition `i`
//! reads slice `i`'s segments and nothing else, so executing one partition on the node that
//! owns slice `i` never double-counts (DataFusion's own `DataSourceExec` may share file
//! groups between partitions through a work queue). Predicates pushed into the scan prune
//! row groups and pages by their statistics: the sort key's zone maps.
//!
//! This node is built by the leader's table provider and executed on compute nodes; the
//! segment list it carries is the catalog version the query pinned.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::EmptyRecordBatchStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use crate::store::segment_store_url;
use crate::types::Segment;

/// The hidden column a scan adds when asked ([`SliceScanExec::with_segment_column`]): the
/// path of the segment each row is in. DELETE / UPDATE use it to find the segments they
/// rewrite; ordinary queries never see it.
pub const SEGMENT_COLUMN: &str = "__blueshift_segment";

#[derive(Debug, Clone)]
pub struct SliceScanExec {
    table: String,
    /// Full table schema (what the segments hold).
    table_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    projected_schema: SchemaRef,
    /// Segments per slice; `slices.len()` is the number of output partitions.
    slices: Vec<Vec<Segment>>,
    /// Conjunction of pushed-down filters over the table schema, for pruning only: the
    /// plan above still applies the filter exactly.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    /// Whether the scan's schema ends with [`SEGMENT_COLUMN`] (projection indexes count it).
    segment_column: bool,
    properties: Arc<PlanProperties>,
    /// The Parquet scans this node started, whose metrics (rows read, row groups and
    /// pages pruned by statistics) are this node's.
    started: Arc<Mutex<Vec<Arc<DataSourceExec>>>>,
}

/// `schema` with the [`SEGMENT_COLUMN`] after its fields.
pub fn with_segment_field(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(segment_field()));
    Arc::new(arrow::datatypes::Schema::new(fields))
}

fn segment_field() -> arrow::datatypes::Field {
    arrow::datatypes::Field::new(SEGMENT_COLUMN, arrow::datatypes::DataType::Utf8, false)
}

/// Statistics the planner uses to choose join strategies: row counts from the catalog.
fn slice_statistics(schema: &SchemaRef, segments: &[&Segment]) -> Statistics {
    let rows: u64 = segments.iter().map(|s| s.rows).sum();
    // Byte sizes are left unknown: Parquet sizes say little about the rows in memory, and
    // DataFusion then decides broadcasts by row count.
    Statistics::new_unknown(schema).with_num_rows(Precision::Inexact(rows as usize))
}

impl SliceScanExec {
    /// The scan of `slices`; with `segment_column`, the [`SEGMENT_COLUMN`] follows the
    /// table's columns.
    pub fn try_new(
        table: String,
        table_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        slices: Vec<Vec<Segment>>,
        predicate: Option<Arc<dyn PhysicalExpr>>,
        limit: Option<usize>,
        segment_column: bool,
    ) -> Result<Self> {
        let scan_schema = if segment_column {
            with_segment_field(&table_schema)
        } else {
            table_schema.clone()
        };
        let projected_schema = match &projection {
            Some(p) => Arc::new(scan_schema.project(p)?),
            None => scan_schema,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(projected_schema.clone()),
            Partitioning::UnknownPartitioning(slices.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            table,
            table_schema,
            projection,
            projected_schema,
            slices,
            predicate,
            limit,
            segment_column,
            properties,
            started: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Whether the scan adds the [`SEGMENT_COLUMN`].
    pub fn segment_column(&self) -> bool {
        self.segment_column
    }

    /// Declares that the rows of slice `i` are exactly those whose slice hash of
    /// `column` (an index into the table schema) is `i`: true for `DISTSTYLE KEY`. The planner
    /// then leaves collocated joins and aggregations on the key where they are. Only the
    /// leader plans with it; it is not shipped.
    pub fn with_hash_distribution(mut self, column: usize) -> Self {
        let n = self.slices.len();
        if n <= 1 {
            return self;
        }
        let position = match &self.projection {
            Some(p) => p.iter().position(|c| *c == column),
            None => Some(column),
        };
        let Some(position) = position else {
            return self;
        };
        let Some(field) = self.projected_schema.fields().get(position) else {
            return self;
        };
        let expr: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), position));
        let mut properties = self.properties.as_ref().clone();
        properties.partitioning = Partitioning::Hash(vec![expr], n);
        self.properties = Arc::new(properties);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table_schema
    }
    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }
    pub fn slices(&self) -> &[Vec<Segment>] {
        &self.slices
    }
    pub fn predicate(&self) -> Option<&Arc<dyn PhysicalExpr>> {
        self.predicate.as_ref()
    }
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl DisplayAs for SliceScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let segments: usize = self.slices.iter().map(Vec::len).sum();
        write!(
            f,
            "SliceScanExec: table={}, slices={}, segments={}",
            self.table,
            self.slices.len(),
            segments
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .filter_map(|i| {
                    self.table_schema
                        .fields()
                        .get(*i)
                        .map(|f| f.name().as_str())
                })
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        if let Some(pred) = &self.predicate {
            write!(f, ", prune={pred}")?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SliceScanExec {
    fn name(&self) -> &str {
        "SliceScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.predicate {
            Some(p) => f(p),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::leaf::leaf_with_new_children(self, children)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let segments: Vec<&Segment> = match partition {
            Some(p) => self
                .slices
                .get(p)
                .map(|s| s.iter().collect())
                .unwrap_or_default(),
            None => self.slices.iter().flatten().collect(),
        };
        let mut stats = slice_statistics(&self.projected_schema, &segments);
        if let Some(limit) = self.limit {
            stats.num_rows = stats.num_rows.map(|r| r.min(limit));
        }
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(segments) = self.slices.get(partition) else {
            return Err(DataFusionError::Internal(format!(
                "SliceScanExec: partition {partition} out of range ({} slices)",
                self.slices.len()
            )));
        };
        if segments.is_empty() {
            return Ok(Box::pin(EmptyRecordBatchStream::new(
                self.projected_schema.clone(),
            )));
        }
        // The segment column is a partition column: each file's path is its value.
        let partition_cols = if self.segment_column {
            vec![Arc::new(segment_field())]
        } else {
            vec![]
        };
        let table_schema = TableSchema::builder(self.table_schema.clone())
            .with_table_partition_cols(partition_cols)
            .build();
        let mut source = ParquetSource::new(table_schema).with_enable_page_index(true);
        if let Some(pred) = &self.predicate {
            source = source.with_predicate(pred.clone());
        }
        let files: Vec<PartitionedFile> = segments
            .iter()
            .map(|s| {
                let mut file = PartitionedFile::new(s.path.clone(), s.bytes);
                if self.segment_column {
                    file.partition_values = vec![ScalarValue::Utf8(Some(s.path.clone()))];
                }
                file
            })
            .collect();
        let config = FileScanConfigBuilder::new(segment_store_url()?, Arc::new(source))
            .with_file_group(FileGroup::new(files))
            .with_projection_indices(self.projection.clone())?
            .with_limit(self.limit)
            .build();
        let scan = DataSourceExec::from_data_source(config);
        let stream = scan.execute(0, context)?;
        match self.started.lock() {
            Ok(mut started) => started.push(scan),
            Err(poisoned) => poisoned.into_inner().push(scan),
        }
        Ok(stream)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let started = match self.started.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut set = MetricsSet::new();
        for scan in started.iter() {
            for metric in scan.metrics().iter().flat_map(|m| m.iter()) {
                set.push(metric.clone());
            }
        }
        Some(set.aggregate_by_name())
    }
}
