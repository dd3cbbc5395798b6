//! `information_schema` as PostgreSQL tools read it: DataFusion's views (`schemata`, `tables`,
//! `columns`, `views`, ...) with `columns.data_type` in SQL terms (`integer`, `character
//! varying`, `numeric`, `timestamp without time zone`, ...; DataFusion writes Arrow's names),
//! `character_maximum_length` from the declared VARCHAR/CHAR length, and the constraint views
//! (`table_constraints`, `key_column_usage`, `referential_constraints`,
//! `constraint_column_usage`), which are empty: Blueshift tables have no constraints; and
//! `views` listing views only.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::Catalog;

/// Views with no rows (no constraints exist), with PostgreSQL's columns.
const CONSTRAINT_VIEWS: [(&str, &[&str]); 4] = [
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position",
            "position_in_unique_constraint",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
    ),
    (
        "constraint_column_usage",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
        ],
    ),
];

pub struct InformationSchema {
    inner: InformationSchemaProvider,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationSchema")
    }
}

impl InformationSchema {
    pub fn new(catalogs: Arc<dyn CatalogProviderList>, catalog: Arc<Catalog>) -> Self {
        InformationSchema {
            inner: InformationSchemaProvider::new(catalogs),
            catalog,
        }
    }
}

fn constraint_view(columns: &[&str]) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let dt = if c.ends_with("position") || c.starts_with("position") {
                    DataType::Int32
                } else {
                    DataType::Utf8
                };
                Field::new(*c, dt, true)
            })
            .collect::<Vec<_>>(),
    ));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(CONSTRAINT_VIEWS.iter().map(|(n, _)| n.to_string()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if let Some((_, cols)) = CONSTRAINT_VIEWS.iter().find(|(n, _)| *n == lower) {
            return Ok(Some(constraint_view(cols)?));
        }
        let inner = self.inner.table(name).await?;
        Ok(match (lower.as_str(), inner) {
            ("columns", Some(t)) => Some(Arc::new(SqlColumns {
                inner: t,
                catalog: self.catalog.clone(),
            })),
            ("views", Some(t)) => Some(Arc::new(OnlyViews { inner: t })),
            (_, other) => other,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        CONSTRAINT_VIEWS.iter().any(|(n, _)| *n == lower) || self.inner.table_exist(name)
    }
}

/// `information_schema.views` as PostgreSQL has it: views only (DataFusion lists every table,
/// with a NULL definition for those that are not views), `view_definition` (DataFusion says
/// `definition`) and the updatability columns (views are read-only: all `NO`).
#[derive(Debug)]
struct OnlyViews {
    inner: Arc<dyn TableProvider>,
}

/// The columns after `view_definition`, all `NO` but `check_option` (`NONE`).
const VIEW_FLAGS: [(&str, &str); 6] = [
    ("check_option", "NONE"),
    ("is_updatable", "NO"),
    ("is_insertable_into", "NO"),
    ("is_trigger_updatable", "NO"),
    ("is_trigger_deletable", "NO"),
    ("is_trigger_insertable_into", "NO"),
];

impl OnlyViews {
    fn pg_schema() -> SchemaRef {
        let mut fields: Vec<Field> = ["table_catalog", "table_schema", "table_name"]
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        fields.push(Field::new("view_definition", DataType::Utf8, true));
        fields.extend(
            VIEW_FLAGS
                .iter()
                .map(|(n, _)| Field::new(*n, DataType::Utf8, true)),
        );
        Arc::new(Schema::new(fields))
    }
}

#[async_trait]
impl TableProvider for OnlyViews {
    fn schema(&self) -> SchemaRef {
        Self::pg_schema()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let inner = self.inner.schema();
        let at = |name: &str| inner.index_of(name);
        let (cat, sch, tab, def) = (
            at("table_catalog")?,
            at("table_schema")?,
            at("table_name")?,
            at("definition")?,
        );
        let schema = Self::pg_schema();
        let rewrite = |b: RecordBatch| {
            let keep = arrow::compute::is_not_null(b.column(def))?;
            let b = arrow::compute::filter_record_batch(&b, &keep)?;
            let mut columns: Vec<ArrayRef> = [cat, sch, tab, def]
                .iter()
                .map(|i| arrow::compute::cast(b.column(*i), &DataType::Utf8))
                .collect::<Result<_, _>>()?;
            for (_, value) in VIEW_FLAGS {
                columns.push(Arc::new(StringArray::from(vec![value; b.num_rows()])));
            }
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        };
        let args = ScanArgs(state, projection, filters, limit);
        rewritten_scan(&self.inner, schema.clone(), args, rewrite).await
    }
}

/// A scan's arguments, passed on to the in-memory table of [`rewritten_scan`].
struct ScanArgs<'a>(
    &'a dyn Session,
    Option<&'a Vec<usize>>,
    &'a [Expr],
    Option<usize>,
);

/// Reads all of `inner`, rewrites each batch to `schema`, and scans the result (these
/// tables are small: one row per relation or column).
async fn rewritten_scan(
    inner: &Arc<dyn TableProvider>,
    schema: SchemaRef,
    ScanArgs(state, projection, filters, limit): ScanArgs<'_>,
    rewrite: impl Fn(RecordBatch) -> DfResult<RecordBatch>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let plan = inner.scan(state, None, &[], None).await?;
    let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    let batches = batches
        .into_iter()
        .map(rewrite)
        .collect::<DfResult<Vec<_>>>()?;
    MemTable::try_new(schema, vec![batches])?
        .scan(state, projection, filters, limit)
        .await
}

/// `information_schema.columns` with SQL type names.
struct SqlColumns {
    inner: Arc<dyn TableProvider>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for SqlColumns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlColumns")
    }
}

/// The SQL name of an Arrow type as `information_schema.columns.data_type` shows it.
fn sql_type_name(arrow: &str) -> String {
    let base = arrow.split('(').next().unwrap_or(arrow);
    match base {
        "Int8" | "Int16" | "UInt8" => "smallint".into(),
        "Int32" | "UInt16" => "integer".into(),
        "Int64" | "UInt32" | "UInt64" => "bigint".into(),
        "Float16" | "Float32" => "real".into(),
        "Float64" => "double precision".into(),
        "Decimal32" | "Decimal64" | "Decimal128" | "Decimal256" => "numeric".into(),
        "Boolean" => "boolean".into(),
        "Utf8" | "LargeUtf8" | "Utf8View" => "character varying".into(),
        "Binary" | "LargeBinary" | "BinaryView" | "FixedSizeBinary" => "bytea".into(),
        "Date32" | "Date64" => "date".into(),
        "Time32" | "Time64" => "time without time zone".into(),
        // `Timestamp(µs)` / `Timestamp(Microsecond, None)`: no time zone.
        "Timestamp" if arrow.contains("None") || !arrow.contains(',') => {
            "timestamp without time zone".into()
        }
        "Timestamp" => "timestamp with time zone".into(),
        "Interval" | "Duration" => "interval".into(),
        "List" | "LargeList" | "FixedSizeList" | "ListView" => "ARRAY".into(),
        _ => arrow.to_string(),
    }
}

impl SqlColumns {
    fn rewrite(&self, b: RecordBatch) -> DfResult<RecordBatch> {
        let schema = b.schema();
        let snapshot = self.catalog.snapshot();
        let mut columns: Vec<ArrayRef> = b.columns().to_vec();
        if let Ok(i) = schema.index_of("data_type") {
            let types = b.column(i).as_string::<i32>();
            let named: StringArray = types.iter().map(|t| t.map(sql_type_name)).collect();
            columns[i] = Arc::new(named);
        }
        // Our column of each row (None: a system table's, or a view's).
        let ours: Vec<Option<&blueshift_common::types::ColumnDef>> = match (
            schema.index_of("table_schema"),
            schema.index_of("table_name"),
            schema.index_of("column_name"),
        ) {
            (Ok(s), Ok(t), Ok(c)) => {
                let (s, t, c) = (
                    b.column(s).as_string::<i32>(),
                    b.column(t).as_string::<i32>(),
                    b.column(c).as_string::<i32>(),
                );
                (0..b.num_rows())
                    .map(|r| {
                        snapshot
                            .table_by_name(s.value(r), t.value(r))
                            .and_then(|def| def.columns.iter().find(|col| col.name == c.value(r)))
                    })
                    .collect()
            }
            _ => vec![None; b.num_rows()],
        };
        // Declared lengths of our VARCHAR / CHAR columns.
        if let Ok(at) = schema.index_of("character_maximum_length") {
            let old = arrow::compute::cast(b.column(at), &DataType::Int64)?;
            let old = old.as_primitive::<arrow::datatypes::Int64Type>();
            let lens: arrow::array::Int64Array = ours
                .iter()
                .enumerate()
                .map(|(r, col)| {
                    col.and_then(|col| col.ty.max_len().map(i64::from))
                        .or_else(|| old.is_valid(r).then(|| old.value(r)))
                })
                .collect();
            columns[at] = arrow::compute::cast(&lens, schema.field(at).data_type())?;
        }
        // Our columns' defaults, as pg_attrdef.adsrc has them.
        if let Ok(at) = schema.index_of("column_default") {
            let defaults: StringArray = ours
                .iter()
                .map(|col| col.and_then(|col| col.default.clone()))
                .collect();
            columns[at] = arrow::compute::cast(&defaults, schema.field(at).data_type())?;
        }
        // The declared nullability (an identity column is NOT NULL, though INSERT plans its
        // missing values as NULLs).
        if let Ok(at) = schema.index_of("is_nullable") {
            let old = arrow::compute::cast(b.column(at), &DataType::Utf8)?;
            let old = old.as_string::<i32>();
            let nullable: StringArray = ours
                .iter()
                .enumerate()
                .map(|(r, col)| match col {
                    Some(col) => Some(if col.nullable { "YES" } else { "NO" }.to_string()),
                    None => old.is_valid(r).then(|| old.value(r).to_string()),
                })
                .collect();
            columns[at] = arrow::compute::cast(&nullable, schema.field(at).data_type())?;
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[async_trait]
impl TableProvider for SqlColumns {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs(state, projection, filters, limit);
        rewritten_scan(&self.inner, self.schema(), args, |b| self.rewrite(b)).await
    }
}
