//! Column defaults: a column's `DEFAULT` (stored as SQL text, as `pg_attrdef.adsrc` shows
//! it) planned into an expression of the column's type in the statement's session, so
//! functions such as `GETDATE()` mean what they mean in a query. DataFusion's INSERT
//! planner fills an omitted column with it (see [`super::table`]); a COPY evaluates it once
//! per statement. CREATE TABLE and ADD COLUMN check it here before it is stored.
//!
//! It must not read any column: a default is a value, not a row function.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::Schema;
use blueshift_common::error::sqlstate;
use blueshift_common::types::ColumnDef;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable};

use crate::error::{Error, Result};

/// The column's default as an expression of its type, or `None` if it has none.
pub fn default_expr(state: &SessionState, column: &ColumnDef) -> Result<Option<Expr>> {
    let Some(text) = &column.default else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| {
        Error::sql(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "default for column \"{}\" ({text}) is not a value of type {}: {e}",
                column.name,
                column.ty.sql_name()
            ),
        )
    };
    let empty = DFSchema::empty();
    let expr = state.create_logical_expr(text, &empty).map_err(|e| {
        if e.to_string().contains("No field named") {
            Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot use column reference in DEFAULT expression of column \"{}\"",
                    column.name
                ),
            )
        } else {
            bad(&e)
        }
    })?;
    let expr = expr
        .cast_to(&column.ty.to_arrow(), &empty)
        .map_err(|e| bad(&e))?;
    Ok(Some(expr))
}

/// The column's default evaluated once (for a COPY, and to check it at CREATE).
pub fn default_value(state: &SessionState, column: &ColumnDef) -> Result<Option<ScalarValue>> {
    let Some(expr) = default_expr(state, column)? else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| {
        Error::sql(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "default for column \"{}\" cannot be computed as type {}: {e}",
                column.name,
                column.ty.sql_name()
            ),
        )
    };
    // Statement-time functions (GETDATE()) are simplified to the time it starts.
    let simplify = datafusion::logical_expr::simplify::SimplifyContext::builder()
        .with_config_options(Arc::new(state.config_options().as_ref().clone()))
        .with_current_time()
        .build();
    let expr = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(simplify)
        .simplify(expr)
        .map_err(|e| bad(&e))?;
    let physical = state
        .create_physical_expr(expr, &DFSchema::empty())
        .map_err(|e| bad(&e))?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = physical
        .evaluate(&one_row)
        .and_then(|v| v.into_array(1))
        .and_then(|a| ScalarValue::try_from_array(&a, 0))
        .map_err(|e| bad(&e))?;
    if value.is_null() && !column.nullable {
        return Err(Error::sql(
            sqlstate::NOT_NULL_VIOLATION,
            format!(
                "default for column \"{}\" is NULL but the column is NOT NULL",
                column.name
            ),
        ));
    }
    Ok(Some(value))
}
