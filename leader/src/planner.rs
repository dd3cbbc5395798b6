//! The query front end: a DataFusion session over one pinned catalog version, planned with
//! `target_partitions = slices` so that the partitioned physical plan is the distributed plan,
//! then cut into stages ([`distribute`]) that run on compute nodes.
//!
//! * [`table`]: the table provider whose scan is a `SliceScanExec` (hash-distributed for
//!   `DISTKEY` tables, one partition for `DISTSTYLE ALL`).
//! * [`join_modes`]: the optimizer rule that picks broadcast or partitioned hash joins for a
//!   cluster (collocated joins stay put; outer/semi/anti joins are never broadcast).
//! * [`schemas`]: the user schemas, views planned when named, the search path.
//! * [`distribute`]: cutting the plan at exchanges and gathers.
//! * [`explain`]: rendering the distributed plan with Redshift's join labels.

pub mod defaults;
pub mod distribute;
pub mod explain;
pub mod join_modes;
pub mod schemas;
pub mod table;

pub use explain::{analyze_lines, explain_lines};

use std::sync::Arc;

use blueshift_common::functions::register_functions;
use blueshift_common::store::SegmentStore;
use datafusion::catalog::MemoryCatalogProvider;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::LeaderState;
use crate::catalog::CatalogState;
use crate::cluster::SliceMap;
use crate::error::Result;
use crate::scheduler::SchedulerHandle;
use crate::system_tables;

pub const DEFAULT_CATALOG: &str = "dev";
pub const DEFAULT_SCHEMA: &str = "public";

/// Everything one statement plans against.
#[derive(Clone)]
pub struct QueryContext {
    pub ctx: SessionContext,
    pub catalog: Arc<CatalogState>,
    pub slices: SliceMap,
    pub query_id: String,
    /// `pg_catalog` tables that are always empty (see [`crate::sql::compat`]).
    pub empty_catalog_tables: Arc<std::collections::HashSet<String>>,
    /// The configured built-in (superuser) users, for the privilege check.
    pub builtin_users: Arc<Vec<String>>,
}

/// Shared DataFusion runtime of the leader (segment store registered once).
pub fn leader_runtime(store: &SegmentStore) -> Result<Arc<RuntimeEnv>> {
    let runtime = Arc::new(RuntimeEnv::default());
    SegmentStore::register_with(&runtime, store.object_store())?;
    Ok(runtime)
}

/// Builds a session over the current catalog version and live slice map.
pub fn query_context(leader: &LeaderState) -> Result<QueryContext> {
    // Taken before the catalog version: GC keeps what this statement may read while the
    // pin lives, which is as long as the statement's task context (the config extension).
    let pin = Arc::new(leader.pins.pin());
    // The statement's transaction block's state, if it runs in one.
    let catalog = crate::session::tx::snapshot(leader);
    let slices = leader.membership.slice_map(catalog.slices)?;
    let config = SessionConfig::new()
        .with_extension(pin)
        // Likewise the slice map's lease: a draining node waits until it is dropped.
        .with_extension(Arc::new(slices.clone()))
        .with_target_partitions(catalog.slices.max(1) as usize)
        .with_batch_size(8192)
        // Ours (`pg_catalog::information_schema`) wraps DataFusion's.
        .with_information_schema(false)
        .with_default_catalog_and_schema(DEFAULT_CATALOG, default_schema(&catalog))
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", false)
        .set_bool("datafusion.optimizer.prefer_existing_sort", false)
        // Keep a UNION as a union: DataFusion may turn one whose inputs are hash partitioned
        // alike into an InterleaveExec, which cannot be rebuilt once stage cutting changes
        // an input's partitioning (an internal assertion failed on dbt's snapshot query).
        .set_bool("datafusion.optimizer.prefer_existing_union", true)
        // Partitions are slices, not threads: a round-robin split only moves rows between
        // nodes for nothing.
        .set_bool("datafusion.optimizer.enable_round_robin_repartition", false)
        // Dynamic filters are shared in memory between a join and its probe side, and
        // partitioned ones route by DataFusion's hash, not the slice hash.
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
        .set_bool(
            "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
            false,
        )
        .set_bool(
            "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
            false,
        )
        .set_bool(
            "datafusion.optimizer.enable_aggregate_dynamic_filter_pushdown",
            false,
        )
        // An uncorrelated scalar subquery planned as `ScalarSubqueryExec` shares its result
        // with the filters above through process memory; as a join it ships like any other.
        .set_bool(
            "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
            false,
        );
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(statement_runtime(&leader.runtime)?)
        .with_default_features()
        .with_physical_optimizer_rules(physical_rules())
        .with_type_planner(crate::pg_catalog::type_planner())
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_functions(&ctx);

    let (listing, system) = register_user_schemas(&ctx, leader, &catalog, &slices)?;
    leader.pg_catalog.register(
        &ctx,
        &listing,
        system,
        &current_schema(&catalog),
        &leader.database,
        &crate::session::current_user(),
    )?;
    leader.pg_catalog.register_privileges(
        &ctx,
        &catalog,
        &leader.users,
        &crate::session::current_user(),
        &leader.database,
    );

    Ok(QueryContext {
        ctx,
        catalog,
        slices,
        query_id: uuid::Uuid::new_v4().simple().to_string(),
        empty_catalog_tables: leader.pg_catalog.empty_tables.clone(),
        builtin_users: Arc::new(leader.users.clone()),
    })
}

/// The first existing schema of the search path (`public` when none exists, so that system
/// tables still resolve): `current_schema()`, where CREATE puts what it makes.
fn current_schema(catalog: &CatalogState) -> String {
    catalog
        .current_schema(&crate::session::search_path())
        .unwrap_or_else(|| DEFAULT_SCHEMA.to_string())
}

/// The session's temporary schema, if it holds a table in this catalog version.
fn temp_schema(catalog: &CatalogState) -> Option<String> {
    crate::session::tx::temp_schema().filter(|s| catalog.tables.values().any(|t| t.schema == *s))
}

/// The schema DataFusion qualifies unqualified names with: the session's temporary schema
/// while it has tables (so they shadow others of their names), else [`current_schema`].
fn default_schema(catalog: &CatalogState) -> String {
    temp_schema(catalog).unwrap_or_else(|| current_schema(catalog))
}

/// Registers every user schema of the catalog version (tables and views), the default one
/// looking names it lacks up through the rest of the search path, and the system tables
/// every schema finds (see [`schemas`]). Returns the same schemas for catalog listings,
/// with views that are listed, not planned ([`schemas::ListedView`]), and the system
/// tables (which `pg_catalog` also finds, as Redshift's are in it).
fn register_user_schemas(
    ctx: &SessionContext,
    leader: &LeaderState,
    catalog: &Arc<CatalogState>,
    slices: &SliceMap,
) -> Result<(
    Arc<MemoryCatalogProvider>,
    Arc<dyn datafusion::catalog::SchemaProvider>,
)> {
    let system = schemas::system_schema();
    system_tables::register(&system, leader, catalog, slices)?;
    let planner = schemas::ViewPlanner::new(
        leader.pg_catalog.empty_tables.clone(),
        catalog.clone(),
        Arc::new(leader.users.clone()),
    );
    let default = current_schema(catalog);
    let temp = temp_schema(catalog);
    let path = crate::session::search_path();
    let names = catalog.schema_names();
    // Defaults are planned with the session's functions (only when some table has one:
    // the state is a copy).
    let state = catalog
        .tables
        .values()
        .any(|t| t.columns.iter().any(|c| c.default.is_some()))
        .then(|| ctx.state());
    // Each table's provider, built once and shared by the schemas below.
    type Tables = std::collections::HashMap<String, Arc<dyn datafusion::catalog::TableProvider>>;
    let mut by_schema: std::collections::HashMap<&str, Tables> = std::collections::HashMap::new();
    for def in catalog.tables.values() {
        let mut table = table::BlueshiftTable::new(def.clone(), catalog.slices);
        if let Some(state) = &state {
            table = table.with_defaults(state)?;
        }
        by_schema
            .entry(def.schema.as_str())
            .or_default()
            .insert(def.name.clone(), Arc::new(table));
    }
    let tables_of = |schema: &str| by_schema.get(schema).cloned().unwrap_or_default();
    let views_of = |schema: &str| {
        catalog
            .views
            .values()
            .filter(|v| v.schema == schema)
            .cloned()
            .collect::<Vec<_>>()
    };
    // The schemas without fallbacks first: the default one falls back to them.
    let mut plain: std::collections::HashMap<String, Arc<dyn SchemaProvider>> =
        std::collections::HashMap::new();
    for name in &names {
        let fallback: Vec<Arc<dyn SchemaProvider>> = vec![system.clone()];
        plain.insert(
            name.clone(),
            Arc::new(schemas::UserSchema::new(
                tables_of(name),
                views_of(name),
                fallback,
                planner.clone(),
            )),
        );
    }
    let cat = Arc::new(MemoryCatalogProvider::new());
    for name in &names {
        let provider = if *name == default {
            let mut fallback: Vec<Arc<dyn SchemaProvider>> = path
                .iter()
                .filter(|s| **s != default)
                .filter_map(|s| plain.get(s).cloned())
                .collect();
            fallback.push(system.clone());
            Arc::new(schemas::UserSchema::new(
                tables_of(name),
                views_of(name),
                fallback,
                planner.clone(),
            )) as Arc<dyn SchemaProvider>
        } else {
            plain[name].clone()
        };
        cat.register_schema(name, provider.clone())?;
        // The session's temporary tables come first, then the search path as above.
        if *name == default
            && let Some(temp) = &temp
        {
            cat.register_schema(
                temp,
                Arc::new(schemas::UserSchema::new(
                    tables_of(temp),
                    vec![],
                    vec![provider],
                    planner.clone(),
                )),
            )?;
        }
    }
    ctx.register_catalog(DEFAULT_CATALOG, cat);
    let weak = ctx.state_weak_ref();
    planner.bind(Box::new(move || weak.upgrade().map(|s| s.read().clone())));
    let listing = Arc::new(MemoryCatalogProvider::new());
    for name in names.iter().chain(&temp) {
        let schema = datafusion::catalog::MemorySchemaProvider::new();
        for (table, provider) in tables_of(name) {
            schema.register_table(table, provider)?;
        }
        for view in views_of(name) {
            schema.register_table(view.name.clone(), Arc::new(schemas::ListedView::new(&view)))?;
        }
        listing.register_schema(name, Arc::new(schema))?;
    }
    Ok((listing, system))
}

/// The runtime one statement's leader-side operators run with: the leader's object stores,
/// and a memory pool of the statement's `query_memory_limit` (final aggregations, merges and
/// joins gathered to the leader spill or fail with 53200 like those on the nodes).
fn statement_runtime(leader: &Arc<RuntimeEnv>) -> Result<Arc<RuntimeEnv>> {
    let limit = crate::limits::current();
    let mut builder =
        RuntimeEnvBuilder::new().with_object_store_registry(leader.object_store_registry.clone());
    if limit > 0 {
        builder = builder.with_memory_pool(Arc::new(FairSpillPool::new(limit as usize)));
    }
    Ok(builder.build_arc()?)
}

/// DataFusion's physical optimizer rules with ours after join selection.
fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map(|i| i + 1)
        .unwrap_or(0);
    rules.insert(at, Arc::new(join_modes::DistributedJoinModes));
    rules
}

impl QueryContext {
    /// The same pinned catalog version and slice map for another query of the same
    /// statement (DELETE and UPDATE run several), under a query id of its own.
    pub fn next_query(&self) -> QueryContext {
        QueryContext {
            query_id: uuid::Uuid::new_v4().simple().to_string(),
            ..self.clone()
        }
    }

    /// Makes `def`'s scan in this statement expose the hidden segment column (the target
    /// of a DELETE or UPDATE).
    pub fn expose_segments(&self, def: &blueshift_common::types::TableDef) -> Result<()> {
        let schema = self
            .ctx
            .catalog(DEFAULT_CATALOG)
            .and_then(|c| c.schema(&def.schema))
            .ok_or_else(|| {
                crate::error::Error::sql(
                    blueshift_common::error::sqlstate::INTERNAL_ERROR,
                    format!("schema {} is not registered", def.schema),
                )
            })?;
        schema.deregister_table(&def.name)?;
        schema.register_table(
            def.name.clone(),
            Arc::new(table::BlueshiftTable::with_segment_column(
                def.clone(),
                self.catalog.slices,
            )),
        )?;
        Ok(())
    }

    /// The logical plan of one statement (after the PostgreSQL compatibility rewrites).
    pub async fn logical_plan(
        &self,
        statement: &crate::sql::statement::Ast,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        // An INSERT's DEFAULT keywords and identity rules, settled on its AST first (when it
        // runs and when a client prepares it). Boxed: a statement is large, and this
        // future is nested deeply when views and subqueries are planned.
        let settled: Option<Box<crate::sql::statement::Ast>> =
            crate::session::settle_insert_defaults(
                statement,
                &self.catalog,
                &crate::session::search_path(),
            )?
            .map(Box::new);
        let statement = settled.as_deref().unwrap_or(statement);
        let plan = crate::sql::compat::logical_plan(
            &self.ctx.state(),
            statement,
            &self.empty_catalog_tables,
        )
        .await?;
        // Every read of the statement, checked before anything runs (views with their
        // owners' rights).
        crate::privileges::Access::new(
            &self.catalog,
            &self.builtin_users,
            &crate::session::current_user(),
        )
        .check_reads(&plan)?;
        Ok(plan)
    }

    /// Plans one statement, ready to run.
    pub async fn dataframe(
        &self,
        statement: &crate::sql::statement::Ast,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let plan = self.logical_plan(statement).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Cuts a physical plan into the leader's part and stages on the compute nodes.
    pub fn distribute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        scheduler: Arc<SchedulerHandle>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        distribute::Distributor::new(self.query_id.clone(), self.slices.clone())
            .distribute(plan, scheduler)
    }
}
