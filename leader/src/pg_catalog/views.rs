//! The catalog listings of views: `pg_views` (every view with its owner and stored query),
//! `pg_tables` without them (the crate lists every relation there),
//! and Redshift's `pg_get_late_binding_view_cols()` (the columns of late-binding views, as
//! recorded when each was created: such a view is not planned to be listed).
//!
//! Both read the latest catalog version, as `pg_class` does.

use std::sync::Arc;

use arrow::array::{AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use crate::catalog::Catalog;

/// `pg_views`: schemaname, viewname, viewowner, definition.
pub fn pg_views(catalog: &Catalog) -> DfResult<Arc<MemTable>> {
    let state = catalog.snapshot();
    let views: Vec<_> = state.views.values().collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, true),
        Field::new("viewname", DataType::Utf8, true),
        Field::new("viewowner", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, true),
    ]));
    let text = |f: &dyn Fn(&crate::catalog::ViewDef) -> String| {
        Arc::new(StringArray::from_iter_values(views.iter().map(|v| f(v))))
            as arrow::array::ArrayRef
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            text(&|v| v.schema.clone()),
            text(&|v| v.name.clone()),
            text(&|v| v.owner.clone()),
            // PostgreSQL ends a view's definition with a semicolon.
            text(&|v| format!("{};", v.query)),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `pg_get_late_binding_view_cols()`: one row per column of each late-binding view (those
/// whose columns could not be known at CREATE have none).
pub struct LateBindingViewCols {
    pub catalog: Arc<Catalog>,
}

impl std::fmt::Debug for LateBindingViewCols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateBindingViewCols")
    }
}

impl datafusion::catalog::TableFunctionImpl for LateBindingViewCols {
    fn call(&self, _args: &[datafusion::logical_expr::Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let state = self.catalog.snapshot();
        let schema = Arc::new(Schema::new(vec![
            Field::new("view_schema", DataType::Utf8, true),
            Field::new("view_name", DataType::Utf8, true),
            Field::new("col_name", DataType::Utf8, true),
            Field::new("col_type", DataType::Utf8, true),
            Field::new("col_num", DataType::Int32, true),
        ]));
        let (mut schemas, mut names, mut cols, mut types, mut nums) =
            (vec![], vec![], vec![], vec![], vec![]);
        for view in state.views.values().filter(|v| v.late_binding) {
            for (i, c) in view.columns.iter().enumerate() {
                schemas.push(view.schema.clone());
                names.push(view.name.clone());
                cols.push(c.name.clone());
                types.push(c.ty.sql_name());
                nums.push(i as i32 + 1);
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(cols)),
                Arc::new(StringArray::from(types)),
                Arc::new(Int32Array::from(nums)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// The crate's `pg_tables` without our views: tools (dbt's relation cache) take a relation
/// listed there for a table.
pub async fn pg_tables(
    inner: Arc<dyn TableProvider>,
    catalog: &Catalog,
) -> DfResult<Arc<MemTable>> {
    let state = catalog.snapshot();
    let (schema, batches) = super::redshift::collect(inner).await?;
    let batches = batches
        .iter()
        .map(|b| {
            let schemas =
                arrow::compute::cast(super::redshift::column(b, "schemaname")?, &DataType::Utf8)?;
            let names =
                arrow::compute::cast(super::redshift::column(b, "tablename")?, &DataType::Utf8)?;
            let (schemas, names) = (schemas.as_string::<i32>(), names.as_string::<i32>());
            let keep: arrow::array::BooleanArray = (0..b.num_rows())
                .map(|i| {
                    Some(
                        state
                            .view_by_name(schemas.value(i), names.value(i))
                            .is_none(),
                    )
                })
                .collect();
            Ok(arrow::compute::filter_record_batch(b, &keep)?)
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
