//! The table provider for a Blueshift table at one pinned catalog version. Its scan is a
//! [`SliceScanExec`] with one partition per slice and the pushed-down filters kept for
//! row-group pruning (DataFusion still applies them exactly above the scan).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use blueshift_common::scan::SliceScanExec;
use blueshift_common::types::{DistStyle, TableDef};
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug, Clone)]
pub struct BlueshiftTable {
    def: TableDef,
    slices: u32,
    schema: SchemaRef,
    /// The schema ends with the hidden segment column (for the target of a DELETE or
    /// UPDATE only).
    segment_column: bool,
    /// Columns' `DEFAULT`s, planned (see [`super::defaults`]).
    defaults: HashMap<String, Expr>,
    /// Read inside a view: the view owner's rights apply to it (see `crate::privileges`).
    read_as: Option<String>,
}

impl BlueshiftTable {
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The same table as read inside a view owned by `owner`.
    pub fn read_as(&self, owner: String) -> Self {
        BlueshiftTable {
            read_as: Some(owner),
            ..self.clone()
        }
    }

    /// Whose rights a read of this scan is checked with, when not the statement's user's.
    pub fn reader(&self) -> Option<&str> {
        self.read_as.as_deref()
    }

    /// Whether this is the target of a DELETE / UPDATE / MERGE (its scan exposes the
    /// segment column): its reads are covered by the statement's own privilege check.
    pub fn is_dml_target(&self) -> bool {
        self.segment_column
    }

    pub fn new(def: TableDef, slices: u32) -> Self {
        // The planner must accept the NULLs an INSERT plans for missing identity values.
        let schema = def.pending_identity_schema();
        Self {
            def,
            slices,
            schema,
            segment_column: false,
            defaults: HashMap::new(),
            read_as: None,
        }
    }

    /// The table with its columns' defaults planned in `state` (what an INSERT that leaves
    /// a column out stores there).
    pub fn with_defaults(
        mut self,
        state: &datafusion::execution::SessionState,
    ) -> crate::error::Result<Self> {
        for c in &self.def.columns {
            if let Some(expr) = super::defaults::default_expr(state, c)? {
                self.defaults.insert(c.name.clone(), expr);
            }
        }
        Ok(self)
    }

    /// The table with [`blueshift_common::scan::SEGMENT_COLUMN`] after its columns.
    pub fn with_segment_column(def: TableDef, slices: u32) -> Self {
        let schema = blueshift_common::scan::with_segment_field(&def.arrow_schema());
        Self {
            def,
            slices,
            schema,
            segment_column: true,
            defaults: HashMap::new(),
            read_as: None,
        }
    }
}

#[async_trait]
impl TableProvider for BlueshiftTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut slices = self.def.segments_by_slice(self.slices);
        if self.def.dist == DistStyle::All {
            // Every node holds a full copy: the scan is one partition reading one copy, so a
            // join against it needs no rows moved (DS_DIST_ALL_NONE).
            let copy = slices
                .iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_default();
            slices = vec![copy];
        }
        // Filters on the segment column are not for pruning (the plan above applies them).
        let prunable = filters.iter().filter(|f| {
            !f.column_refs()
                .iter()
                .any(|c| c.name == blueshift_common::scan::SEGMENT_COLUMN)
        });
        let predicate = match conjunction(prunable.cloned()) {
            Some(expr) => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        // A limit may only be pushed when no filter remains above the scan.
        let limit = if filters.is_empty() { limit } else { None };
        let scan = SliceScanExec::try_new(
            self.def.name.clone(),
            self.def.arrow_schema(),
            projection.cloned(),
            slices,
            predicate,
            limit,
            self.segment_column,
        )?;
        let scan = match &self.def.dist {
            DistStyle::Key { column } => scan.with_hash_distribution(*column),
            _ => scan,
        };
        Ok(Arc::new(scan))
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
