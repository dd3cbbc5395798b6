//! The user schemas of one statement's session: each schema's tables (scans of their
//! segments at the pinned catalog version) and views, planned from their stored SQL when a
//! statement names them (so a view always reads the current definitions of what it names,
//! and a late-binding view may name relations created after it).
//!
//! DataFusion qualifies an unqualified name with one default schema; the search path is
//! honoured by making that schema's provider look a name it lacks up in the later schemas
//! of the path, and last in the system tables (`svv_table_info`, `stv_slices`, ...), which
//! every schema finds as PostgreSQL finds `pg_catalog`. A consequence, documented in
//! ARCHITECTURE.md: `first.t` written out also finds `t` of a later search-path schema when
//! `first` has none.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use blueshift_common::error::sqlstate;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlanBuilder, col};

use crate::catalog::ViewDef;
use crate::error::Error;

/// A copy of the statement's session state, while the session lives.
pub type StateSource = Box<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// What a view's planning needs from the statement's session.
pub struct ViewPlanner {
    /// The statement's session state, set once the session is built (holding it weakly:
    /// the state owns the schemas that own this).
    state: OnceLock<StateSource>,
    empty_tables: Arc<std::collections::HashSet<String>>,
    /// The statement's catalog version and the built-in users: who may read a view.
    catalog: Arc<crate::catalog::CatalogState>,
    builtin_users: Arc<Vec<String>>,
}

impl ViewPlanner {
    pub fn new(
        empty_tables: Arc<std::collections::HashSet<String>>,
        catalog: Arc<crate::catalog::CatalogState>,
        builtin_users: Arc<Vec<String>>,
    ) -> Arc<Self> {
        Arc::new(ViewPlanner {
            state: OnceLock::new(),
            empty_tables,
            catalog,
            builtin_users,
        })
    }

    pub fn bind(&self, state: StateSource) {
        let _ = self.state.set(state);
    }

    /// The view as a table: its query planned in the statement's session.
    async fn plan(&self, view: &ViewDef) -> DfResult<Arc<dyn TableProvider>> {
        let state = self
            .state
            .get()
            .and_then(|source| source())
            .ok_or_else(|| DataFusionError::Internal("the session of a view is gone".into()))?;
        let outer = PLANNING.try_with(|ids| ids.clone()).unwrap_or_default();
        if outer.contains(&view.id) {
            return Err(Error::sql(
                sqlstate::INVALID_OBJECT_DEFINITION,
                format!("infinite recursion detected in view \"{}\"", view.name),
            )
            .into());
        }
        // Reading the view needs SELECT on it (for whoever reads it: the statement's user,
        // or the owner of the view that reads this one); what it reads is then read with
        // its owner's rights (see `crate::privileges`).
        let reader = read_as().unwrap_or_else(crate::session::current_user);
        let access = crate::privileges::Access::new(&self.catalog, &self.builtin_users, &reader);
        access.require_schema(&view.schema, crate::catalog::acl::Privileges::USAGE)?;
        if !access.has_on_columns(
            crate::catalog::Relation::View(view),
            crate::catalog::acl::Privileges::SELECT,
            &[],
        ) {
            return Err(crate::privileges::denied("relation", &view.name).into());
        }
        let owner = if view.owner.is_empty() {
            self.builtin_users.first().cloned().unwrap_or_default()
        } else {
            view.owner.clone()
        };
        let mut inner = outer;
        inner.push(view.id);
        let plan = READ_AS
            .scope(
                owner,
                PLANNING.scope(inner, async {
                    let ast = crate::sql::statement::parse_stored_query(&view.query)?;
                    crate::sql::guard::refuse_known_wrong_answers(&ast)?;
                    crate::sql::compat::logical_plan(&state, &ast, &self.empty_tables).await
                }),
            )
            .await
            .map_err(|e| view_error(view, e))?;
        let plan = if view.column_names.is_empty() {
            plan
        } else {
            let fields = plan.schema().columns();
            if fields.len() < view.column_names.len() {
                return Err(Error::sql(
                    sqlstate::INVALID_OBJECT_DEFINITION,
                    format!(
                        "view \"{}\" names {} columns but its query has {}",
                        view.name,
                        view.column_names.len(),
                        fields.len()
                    ),
                )
                .into());
            }
            let exprs =
                fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| match view.column_names.get(i) {
                        Some(name) => col(c).alias(name),
                        None => col(c),
                    });
            LogicalPlanBuilder::from(plan).project(exprs)?.build()?
        };
        Ok(Arc::new(ViewTable::new(plan, Some(view.query.clone()))))
    }
}

/// A failure to plan a view names the view and keeps its SQLSTATE (a late-binding view
/// whose table was dropped fails when it is read, as in Redshift).
fn view_error(view: &ViewDef, e: Error) -> Error {
    Error::Common(blueshift_common::Error::Remote {
        code: e.sqlstate(),
        message: format!("{} (in view \"{}\")", e.user_message(), view.name),
    })
}

tokio::task_local! {
    /// The views being planned, outermost first: a view met again is a cycle.
    static PLANNING: Vec<u64>;
    /// While a view's query is planned: the view's owner, whose rights its reads use.
    static READ_AS: String;
    /// The relations a statement names itself (not those its views name), while
    /// [`named_relations`] collects them.
    static NAMED: std::sync::Mutex<Vec<u64>>;
}

/// Runs `f` (the planning of a statement) and gives back, with its output, the catalog
/// relations the statement names directly: the tables and views a bound view depends on.
/// DataFusion inlines a view's plan where it is read, so the plan alone cannot tell a view's
/// own tables from those of the views it reads.
pub async fn named_relations<F: std::future::Future>(f: F) -> (F::Output, Vec<u64>) {
    NAMED
        .scope(std::sync::Mutex::new(Vec::new()), async {
            let out = f.await;
            let ids = NAMED
                .try_with(|n| match n.lock() {
                    Ok(ids) => ids.clone(),
                    Err(p) => p.into_inner().clone(),
                })
                .unwrap_or_default();
            (out, ids)
        })
        .await
}

/// The owner of the view being planned, if one is.
fn read_as() -> Option<String> {
    READ_AS.try_with(|u| u.clone()).ok()
}

/// Records a relation the statement being collected names (outside any view's planning).
fn note_named(id: u64) {
    if PLANNING.try_with(|p| !p.is_empty()).unwrap_or(false) {
        return;
    }
    let _ = NAMED.try_with(|n| {
        let mut ids = match n.lock() {
            Ok(ids) => ids,
            Err(p) => p.into_inner(),
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    });
}

/// One user schema of a statement.
pub struct UserSchema {
    tables: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    views: HashMap<String, ViewDef>,
    /// Where a name this schema lacks is looked up next (see the module doc).
    fallback: Vec<Arc<dyn SchemaProvider>>,
    planner: Arc<ViewPlanner>,
}

impl std::fmt::Debug for UserSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserSchema")
    }
}

impl UserSchema {
    pub fn new(
        tables: HashMap<String, Arc<dyn TableProvider>>,
        views: Vec<ViewDef>,
        fallback: Vec<Arc<dyn SchemaProvider>>,
        planner: Arc<ViewPlanner>,
    ) -> Self {
        UserSchema {
            tables: RwLock::new(tables),
            views: views.into_iter().map(|v| (v.name.clone(), v)).collect(),
            fallback,
            planner,
        }
    }

    fn own_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        match self.tables.read() {
            Ok(t) => t.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }
}

/// An empty schema to hold the system tables.
pub fn system_schema() -> Arc<MemorySchemaProvider> {
    Arc::new(MemorySchemaProvider::new())
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self.tables.read() {
            Ok(t) => t.keys().cloned().collect(),
            Err(p) => p.into_inner().keys().cloned().collect(),
        };
        names.extend(self.views.keys().cloned());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.own_table(name) {
            if let Some(table) =
                (t.as_ref() as &dyn std::any::Any).downcast_ref::<super::table::BlueshiftTable>()
            {
                note_named(table.def().id);
                // Inside a view: the scan remembers whose rights it is read with (DataFusion
                // inlines the view's plan, so the scan is all that is left of it).
                if let Some(owner) = read_as() {
                    return Ok(Some(Arc::new(table.read_as(owner))));
                }
            }
            return Ok(Some(t));
        }
        if let Some(view) = self.views.get(name) {
            note_named(view.id);
            return Ok(Some(self.planner.plan(view).await?));
        }
        for next in &self.fallback {
            if let Some(t) = next.table(name).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(match self.tables.write() {
            Ok(mut t) => t.insert(name, table),
            Err(p) => p.into_inner().insert(name, table),
        })
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(match self.tables.write() {
            Ok(mut t) => t.remove(name),
            Err(p) => p.into_inner().remove(name),
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        self.own_table(name).is_some()
            || self.views.contains_key(name)
            || self.fallback.iter().any(|f| f.table_exist(name))
    }
}

/// A view as catalog listings (`information_schema`) see it: its recorded columns and
/// definition, never planned (listing must not fail on a late-binding view whose relations
/// are gone, nor plan every view of the database).
#[derive(Debug)]
pub struct ListedView {
    schema: arrow::datatypes::SchemaRef,
    definition: String,
}

impl ListedView {
    pub fn new(view: &ViewDef) -> Self {
        let fields: Vec<arrow::datatypes::Field> = view
            .columns
            .iter()
            .map(|c| arrow::datatypes::Field::new(&c.name, c.ty.to_arrow(), c.nullable))
            .collect();
        ListedView {
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
            definition: view.query.clone(),
        }
    }
}

#[async_trait]
impl TableProvider for ListedView {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Err(DataFusionError::Internal(
            "a listed view is not read: the view itself is".into(),
        ))
    }
}
