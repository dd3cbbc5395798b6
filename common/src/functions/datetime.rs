//! Date and time functions with Redshift's names and semantics.
//!
//! * `GETDATE()`: the start time of the current statement as a `timestamp` (without time
//!   zone, UTC), truncated to whole seconds as Redshift's is. Like DataFusion's `now()`, it
//!   is replaced by a literal when the leader simplifies the plan, so every row, and every
//!   compute node that runs a fragment of the statement, sees the same value.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{ScalarValue, internal_err};
use datafusion::error::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct GetDate {
    signature: Signature,
}

pub(super) fn getdate() -> ScalarUDF {
    ScalarUDF::new_from_impl(GetDate {
        signature: Signature::nullary(Volatility::Stable),
    })
}

impl ScalarUDFImpl for GetDate {
    fn name(&self) -> &str {
        "getdate"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Evaluating it per batch would give different rows (and nodes) different times.
        internal_err!("getdate() must be simplified to the statement's start time")
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let Some(start) = info.query_execution_start_time() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let seconds = start.timestamp();
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            ScalarValue::TimestampMicrosecond(seconds.checked_mul(1_000_000), None),
            None,
        )))
    }
}
