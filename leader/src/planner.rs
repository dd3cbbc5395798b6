//! The query front end: a DataFusion session over one pinned catalog version, planned with
//! `target_partitions = slices` so that the partitioned physical plan is the distributed plan,
//! then cut into fragments ([`distribute`]) that run on compute nodes.
//!
//! * [`table`]: the table provider whose scan is a `SliceScanExec`.
//! * [`distribute`]: cutting the plan at exchanges and gathers.

pub mod distribute;
pub mod table;

use std::sync::Arc;

use blueshift_common::functions::register_functions;
use blueshift_common::store::register_store;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::LeaderState;
use crate::catalog::CatalogState;
use crate::cluster::SliceMap;
use crate::error::Result;
use crate::scheduler::{RemoteFragmentExec, SchedulerHandle};
use crate::system_tables;

pub const DEFAULT_CATALOG: &str = "dev";
pub const DEFAULT_SCHEMA: &str = "public";

/// Everything one statement plans against.
pub struct QueryContext {
    pub ctx: SessionContext,
    pub catalog: Arc<CatalogState>,
    pub slices: SliceMap,
    pub query_id: String,
}

/// Shared DataFusion runtime of the leader (segment store registered once).
pub fn leader_runtime(store_url: &str) -> Result<Arc<RuntimeEnv>> {
    let runtime = Arc::new(RuntimeEnv::default());
    register_store(&runtime, store_url)?;
    Ok(runtime)
}

/// Builds a session over the current catalog version and live slice map.
pub fn query_context(leader: &LeaderState) -> Result<QueryContext> {
    let catalog = leader.catalog.snapshot();
    let slices = leader.membership.slice_map(catalog.slices)?;
    let config = SessionConfig::new()
        .with_target_partitions(catalog.slices.max(1) as usize)
        .with_batch_size(8192)
        .with_information_schema(true)
        .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", false)
        .set_bool("datafusion.optimizer.prefer_existing_sort", false);
    let ctx = SessionContext::new_with_config_rt(config, leader.runtime.clone());
    register_functions(&ctx);

    let schema = Arc::new(MemorySchemaProvider::new());
    for def in catalog
        .tables
        .values()
        .filter(|t| t.schema == DEFAULT_SCHEMA)
    {
        schema.register_table(
            def.name.clone(),
            Arc::new(table::BlueshiftTable::new(def.clone(), catalog.slices)),
        )?;
    }
    system_tables::register(&schema, leader, &catalog, &slices)?;
    let cat = Arc::new(MemoryCatalogProvider::new());
    cat.register_schema(DEFAULT_SCHEMA, schema)?;
    ctx.register_catalog(DEFAULT_CATALOG, cat);

    Ok(QueryContext {
        ctx,
        catalog,
        slices,
        query_id: uuid::Uuid::new_v4().simple().to_string(),
    })
}

impl QueryContext {
    /// Cuts a physical plan into the leader part and remote fragments.
    pub fn distribute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        scheduler: Arc<SchedulerHandle>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut d =
            distribute::Distributor::new(self.query_id.clone(), self.slices.clone(), scheduler);
        d.distribute(plan)
    }
}

/// Renders a distributed plan for EXPLAIN: the leader's steps, then each fragment and
/// where it runs.
pub fn explain_lines(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut lines = vec!["Leader (final steps, runs on the leader node):".to_string()];
    for l in displayable(plan.as_ref()).indent(true).to_string().lines() {
        lines.push(format!("  {l}"));
    }
    let mut fragments = Vec::new();
    collect_fragments(plan, &mut fragments);
    for f in fragments {
        let parts = f.fragment().output_partitioning_count();
        lines.push(format!(
            "Fragment {} (runs on the compute nodes, one instance per slice, {parts} slices):",
            f.fragment_id()
        ));
        for l in displayable(f.fragment().as_ref())
            .indent(true)
            .to_string()
            .lines()
        {
            lines.push(format!("  {l}"));
        }
    }
    lines
}

fn collect_fragments<'a>(plan: &'a Arc<dyn ExecutionPlan>, out: &mut Vec<&'a RemoteFragmentExec>) {
    if let Some(r) = plan.downcast_ref::<RemoteFragmentExec>() {
        out.push(r);
        return;
    }
    for c in plan.children() {
        collect_fragments(c, out);
    }
}

trait PartitionCount {
    fn output_partitioning_count(&self) -> usize;
}

impl PartitionCount for Arc<dyn ExecutionPlan> {
    fn output_partitioning_count(&self) -> usize {
        self.properties().output_partitioning().partition_count()
    }
}
