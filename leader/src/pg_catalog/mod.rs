//! PostgreSQL catalog emulation for client tools (psql `\d`, JDBC `DatabaseMetaData`,
//! SQLAlchemy's inspector, BI tools): the `pg_catalog` and `information_schema` schemas and
//! the catalog functions they call, over Blueshift's own catalog.
//!
//! The tables and most functions come from `datafusion-pg-catalog`; this module supplies
//! what they read (our tables, our users), keeps object OIDs stable for the life of the
//! leader (a client looks a table up by name in one statement and by OID in the next), and
//! adds the functions that crate lacks. It must not rewrite queries (see
//! [`crate::sql::compat`]) and must not answer for catalog objects Blueshift does not have:
//! defaults, indexes and constraints are truly absent here, so empty tables are the right
//! answers. Comments (`COMMENT ON`) are listed by `pg_description`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProviderList, SchemaProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, PgCatalogTable, array_bounds_udf, format_type,
    quote_ident_udf,
};
use datafusion_pg_catalog::pg_catalog::{
    create_current_schemas_udf, create_pg_backend_pid_udf, create_pg_encoding_to_char_udf,
    create_pg_get_constraintdef, create_pg_get_partition_ancestors_udf,
    create_pg_get_partkeydef_udf, create_pg_get_statisticsobjdef_columns_udf,
    create_pg_relation_is_publishable_udf, create_pg_relation_size_udf,
    create_pg_stat_get_numscans, create_pg_table_is_visible, create_pg_total_relation_size_udf,
};

mod comments;
mod functions;
mod information_schema;
mod privileges;
mod redshift;
mod roles;
mod views;

pub use roles::{RoleInfo, RoleSource};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::planner::DEFAULT_CATALOG;
use functions::{
    CurrentDatabaseTable, JsonBuildObject, NoDescription, ToRegtype, current_database,
    pg_collation_is_visible, pg_type_is_visible,
};

use crate::sql::names::SYSTEM_SCHEMAS;

/// The crate's empty `pg_catalog` tables that [`WithRoles`] answers from our catalog.
const FILLED_HERE: [&str; 3] = ["pg_views", "pg_description", "pg_attrdef"];

/// The `pg_catalog` schema of the leader, built once so that OIDs stay put between
/// statements.
pub struct PgCatalog {
    schema: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
    roles: RoleSource,
    keywords: Arc<dyn datafusion::catalog::TableFunctionImpl>,
    /// `generate_series` / `range` taking PostgreSQL's int4 bounds, built once (wrapping
    /// them per statement would copy the whole session state twice).
    int4_table_functions: Vec<(String, Arc<dyn datafusion::catalog::TableFunctionImpl>)>,
    to_regtype: ScalarUDF,
    /// `pg_catalog` tables that never have a row here (`pg_policy`, `pg_trigger`, ...).
    pub empty_tables: Arc<HashSet<String>>,
}

impl PgCatalog {
    pub fn new(catalog: Arc<Catalog>, roles: RoleSource) -> Result<Self> {
        let static_tables = Arc::new(PgCatalogStaticTables::try_new()?);
        let schema = PgCatalogSchemaProvider::try_new(
            UserTables {
                catalog: catalog.clone(),
            },
            static_tables.clone(),
            Roles {
                roles: roles.clone(),
            },
        )?;
        let mut empty_tables = HashSet::new();
        for name in schema.table_names() {
            let empty = match schema.build_table_by_name(&name)? {
                Some(PgCatalogTable::Static(t)) => t.data().iter().all(|b| b.num_rows() == 0),
                Some(PgCatalogTable::Empty(_)) => true,
                _ => false,
            };
            // Tables the crate leaves empty and we fill in are not empty.
            if empty && !FILLED_HERE.contains(&name.as_str()) {
                empty_tables.insert(name);
            }
        }
        Ok(PgCatalog {
            schema: Arc::new(WithRoles {
                inner: Arc::new(schema),
                roles: roles.clone(),
                catalog: catalog.clone(),
            }),
            catalog,
            roles,
            keywords: static_tables.pg_get_keywords.clone(),
            int4_table_functions: int4_table_functions(),
            to_regtype: ScalarUDF::new_from_impl(ToRegtype::new(static_tables.pg_type.data())?),
            empty_tables: Arc::new(empty_tables),
        })
    }

    /// Adds `pg_catalog` and the catalog functions to a statement's session.
    /// `listing` is the statement's user schemas as `information_schema` lists them;
    /// `system` the statement's system tables (`svv_table_info`, ...), which Redshift keeps
    /// in `pg_catalog`, so `pg_catalog.svv_table_info` finds them too.
    /// `has_table_privilege` & co. for one statement: answered from its catalog version
    /// `catalog`, for its `user` (see [`privileges`]).
    pub fn register_privileges(
        &self,
        ctx: &SessionContext,
        catalog: &Arc<crate::catalog::CatalogState>,
        builtin: &[String],
        user: &str,
        database: &str,
    ) {
        for udf in privileges::udfs(privileges::PrivilegeSource {
            catalog: catalog.clone(),
            builtin: Arc::new(builtin.to_vec()),
            user: user.to_string(),
            search_path: crate::session::search_path(),
            database: database.to_string(),
            roles: self.roles.clone(),
        }) {
            ctx.register_udf(udf);
        }
    }

    pub fn register(
        &self,
        ctx: &SessionContext,
        listing: &Arc<datafusion::catalog::MemoryCatalogProvider>,
        system: Arc<dyn SchemaProvider>,
        current_schema: &str,
        database: &str,
        user: &str,
    ) -> Result<()> {
        let cat = ctx.catalog(DEFAULT_CATALOG).ok_or_else(|| {
            DataFusionError::Internal(format!("catalog {DEFAULT_CATALOG} is not registered"))
        })?;
        let listings = Arc::new(datafusion::catalog::MemoryCatalogProviderList::new());
        listings.register_catalog(DEFAULT_CATALOG.to_string(), listing.clone());
        let information_schema = Arc::new(information_schema::InformationSchema::new(
            listings,
            self.catalog.clone(),
        ));
        let pg_catalog: Arc<dyn SchemaProvider> = Arc::new(WithSystem {
            inner: self.schema.clone(),
            system,
        });
        for c in [
            &cat,
            &(listing.clone() as Arc<dyn datafusion::catalog::CatalogProvider>),
        ] {
            c.register_schema("pg_catalog", pg_catalog.clone())?;
            c.register_schema("information_schema", information_schema.clone())?;
        }
        ctx.register_udtf("pg_get_keywords", self.keywords.clone());
        for udf in [
            functions::session_constant("current_schema", current_schema),
            create_current_schemas_udf(),
            roles::pg_get_userbyid((self.roles)()),
            roles::current_user("session_user", user),
            roles::current_user("current_user", user),
            roles::current_user("user", user),
            create_pg_table_is_visible(),
            format_type::create_format_type_udf(),
            redshift::pg_get_expr(),
            create_pg_encoding_to_char_udf(),
            create_pg_backend_pid_udf(),
            create_pg_relation_size_udf(),
            create_pg_total_relation_size_udf(),
            create_pg_get_constraintdef(),
            create_pg_get_statisticsobjdef_columns_udf(),
            create_pg_get_partkeydef_udf(),
            create_pg_relation_is_publishable_udf(),
            create_pg_get_partition_ancestors_udf(),
            create_pg_stat_get_numscans(),
            quote_ident_udf::create_quote_ident_udf(),
            quote_ident_udf::create_parse_ident_udf(),
            array_bounds_udf::create_array_upper_udf(),
            array_bounds_udf::create_array_lower_udf(),
        ] {
            ctx.register_udf(udf);
        }
        ctx.register_udf(current_database(database));
        ctx.register_udtf(
            "current_database",
            Arc::new(CurrentDatabaseTable {
                name: database.to_string(),
            }),
        );
        ctx.register_udf(self.to_regtype.clone());
        ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
        ctx.register_udf(pg_collation_is_visible());
        ctx.register_udf(pg_type_is_visible());
        ctx.register_udf(functions::pg_is_other_temp_schema());
        let statement = crate::session::statement_settings();
        ctx.register_udf(functions::current_setting(statement.settings));
        ctx.register_udf(functions::set_config(statement.changes));
        ctx.register_udf(redshift::format_encoding());
        ctx.register_udf(redshift::pg_get_viewdef());
        ctx.register_udtf(
            "pg_get_late_binding_view_cols",
            Arc::new(views::LateBindingViewCols {
                catalog: self.catalog.clone(),
            }),
        );
        // NULL: these take OIDs, which are not mapped back to our objects here; comments are
        // listed by pg_description (what dbt's and psql's catalog joins read).
        for name in ["col_description", "obj_description", "shobj_description"] {
            ctx.register_udf(ScalarUDF::new_from_impl(NoDescription::new(name)));
        }
        for (name, f) in &self.int4_table_functions {
            ctx.register_udtf(name, f.clone());
        }
        Ok(())
    }
}

/// DataFusion's `generate_series` and `range`, wrapped to take int4 bounds.
fn int4_table_functions() -> Vec<(String, Arc<dyn datafusion::catalog::TableFunctionImpl>)> {
    use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
    let ctx = SessionContext::new();
    CoerceIntArgsToBigInt::widen(&ctx);
    let state = ctx.state();
    ["generate_series", "range"]
        .into_iter()
        .filter_map(|name| {
            state
                .table_functions()
                .get(name)
                .map(|tf| (name.to_string(), Arc::clone(tf.function())))
        })
        .collect()
}

/// The type planner that lets `::regclass`, `::oid`, `::regtype` and friends parse.
pub fn type_planner() -> Arc<dyn datafusion::logical_expr::planner::TypePlanner> {
    Arc::new(datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner)
}

/// Our relations as `pg_class` / `pg_attribute` see them: the current catalog version's
/// tables and views, in their schemas of the one database.
#[derive(Clone)]
struct UserTables {
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for UserTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserTables")
    }
}

impl UserTables {
    /// One of our relations, by name: its columns and whether it is a view.
    fn relation(&self, catalog: &str, schema: &str, table: &str) -> Option<(SchemaRef, TableType)> {
        if catalog != DEFAULT_CATALOG {
            return None;
        }
        let state = self.catalog.snapshot();
        if let Some(t) = state.table_by_name(schema, table) {
            return Some((t.arrow_schema(), TableType::Base));
        }
        let v = state.view_by_name(schema, table)?;
        let fields: Vec<arrow::datatypes::Field> = v
            .columns
            .iter()
            .map(|c| arrow::datatypes::Field::new(&c.name, c.ty.to_arrow(), c.nullable))
            .collect();
        Some((
            Arc::new(arrow::datatypes::Schema::new(fields)),
            TableType::View,
        ))
    }
}

#[async_trait]
impl CatalogInfo for UserTables {
    async fn catalog_names(&self) -> DfResult<Vec<String>> {
        Ok(vec![DEFAULT_CATALOG.to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> DfResult<Option<Vec<String>>> {
        if catalog != DEFAULT_CATALOG {
            return Ok(None);
        }
        let state = self.catalog.snapshot();
        let mut names = state.schema_names();
        names.extend(SYSTEM_SCHEMAS.iter().map(|s| s.to_string()));
        // Every session's temporary schema, as PostgreSQL's pg_namespace lists them.
        names.extend(state.temp_schema_names());
        Ok(Some(names))
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> DfResult<Option<Vec<String>>> {
        if catalog != DEFAULT_CATALOG {
            return Ok(None);
        }
        if SYSTEM_SCHEMAS.contains(&schema) {
            return Ok(Some(vec![]));
        }
        let state = self.catalog.snapshot();
        if !state.schema_exists(schema) && !crate::catalog::is_temp_schema(schema) {
            return Ok(None);
        }
        Ok(Some(
            state
                .tables
                .values()
                .filter(|t| t.schema == schema)
                .map(|t| t.name.clone())
                .chain(
                    state
                        .views
                        .values()
                        .filter(|v| v.schema == schema)
                        .map(|v| v.name.clone()),
                )
                .collect(),
        ))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DfResult<Option<SchemaRef>> {
        Ok(self.relation(catalog, schema, table).map(|(s, _)| s))
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DfResult<Option<TableType>> {
        Ok(self.relation(catalog, schema, table).map(|(_, t)| t))
    }
}

/// The users, as the crate's tables (`pg_roles` is ours, see [`WithRoles`]) see them.
#[derive(Clone)]
struct Roles {
    roles: RoleSource,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Roles")
    }
}

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        (self.roles)().into_iter().map(|r| r.name).collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        let r = (self.roles)().into_iter().find(|r| r.name == name)?;
        Some(Role {
            name: name.to_string(),
            is_superuser: r.superuser,
            can_login: true,
            can_create_db: r.create_db || r.superuser,
            can_create_role: r.superuser,
            can_create_user: r.superuser,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}

/// The crate's `pg_catalog` with our `pg_roles` and `pg_user` (real OIDs and flags), and
/// Redshift's columns on `pg_class`, `pg_attribute` and `pg_attrdef` ([`redshift`]).
/// `pg_catalog` with the statement's system tables behind it (only where `pg_catalog` has no
/// table of the name; listed with it, as Redshift lists them).
struct WithSystem {
    inner: Arc<dyn SchemaProvider>,
    system: Arc<dyn SchemaProvider>,
}

impl std::fmt::Debug for WithSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithSystem")
    }
}

#[async_trait]
impl SchemaProvider for WithSystem {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for extra in self.system.table_names() {
            if !names.contains(&extra) {
                names.push(extra);
            }
        }
        names
    }

    async fn table(
        &self,
        name: &str,
    ) -> DfResult<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        match self.inner.table(name).await? {
            Some(t) => Ok(Some(t)),
            None => self.system.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name) || self.system.table_exist(name)
    }
}

struct WithRoles {
    inner: Arc<dyn SchemaProvider>,
    roles: RoleSource,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for WithRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithRoles")
    }
}

#[async_trait]
impl SchemaProvider for WithRoles {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for extra in ["pg_roles", "pg_user"] {
            if !names.iter().any(|n| n == extra) {
                names.push(extra.to_string());
            }
        }
        names
    }

    async fn table(
        &self,
        name: &str,
    ) -> DfResult<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        let inner = |n: &'static str| async move {
            self.inner
                .table(n)
                .await?
                .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog has no {n}")))
        };
        match name.to_ascii_lowercase().as_str() {
            "pg_roles" => Ok(Some(roles::pg_roles(&(self.roles)())?)),
            "pg_views" => Ok(Some(views::pg_views(&self.catalog)?)),
            "pg_tables" => Ok(Some(
                views::pg_tables(inner("pg_tables").await?, &self.catalog).await?,
            )),
            "pg_description" => Ok(Some(
                comments::pg_description(
                    inner("pg_description").await?,
                    inner("pg_class").await?,
                    inner("pg_namespace").await?,
                    &self.catalog,
                )
                .await?,
            )),
            "pg_user" => Ok(Some(roles::pg_user(&(self.roles)())?)),
            "pg_class" => Ok(Some(
                redshift::pg_class(
                    inner("pg_class").await?,
                    inner("pg_namespace").await?,
                    &self.catalog,
                    &self.roles,
                )
                .await?,
            )),
            "pg_attribute" => Ok(Some(
                redshift::pg_attribute(
                    inner("pg_attribute").await?,
                    inner("pg_class").await?,
                    inner("pg_namespace").await?,
                    &self.catalog,
                )
                .await?,
            )),
            "pg_attrdef" => Ok(Some(
                redshift::pg_attrdef(
                    inner("pg_attrdef").await?,
                    inner("pg_class").await?,
                    inner("pg_namespace").await?,
                    &self.catalog,
                )
                .await?,
            )),
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(name.to_ascii_lowercase().as_str(), "pg_roles" | "pg_user")
            || self.inner.table_exist(name)
    }
}
