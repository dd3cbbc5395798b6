//! System information functions: `version()`, and the internal function the leader's rewrite
//! of scalar subqueries calls when a subquery returns more than one row.

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The string `version()` returns: drivers look for "PostgreSQL", people for "Blueshift".
pub fn version_string() -> String {
    format!(
        "PostgreSQL {} on {}-unknown-linux-gnu, compiled by rustc, Blueshift {}",
        crate::PG_SERVER_VERSION,
        std::env::consts::ARCH,
        crate::VERSION
    )
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VersionUdf {
    signature: Signature,
}

impl ScalarUDFImpl for VersionUdf {
    fn name(&self) -> &str {
        "version"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            version_string(),
        ))))
    }
}

/// Fails when called on any row: the branch a scalar subquery takes when it returns more
/// than one row (see the leader's `sql::compat`). Volatile, so that it is never folded at
/// planning time; CASE evaluates it only on the rows that take the branch.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MoreThanOneRowUdf {
    signature: Signature,
}

/// Name of [`MoreThanOneRowUdf`].
pub const MORE_THAN_ONE_ROW: &str = "blueshift_subquery_more_than_one_row";

impl ScalarUDFImpl for MoreThanOneRowUdf {
    fn name(&self) -> &str {
        MORE_THAN_ONE_ROW
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Null)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.number_rows > 0 {
            return Err(crate::Error::sql(
                crate::error::sqlstate::CARDINALITY_VIOLATION,
                "more than one row returned by a subquery used as an expression",
            )
            .into_datafusion());
        }
        Ok(ColumnarValue::Scalar(ScalarValue::Null))
    }
}

pub(super) fn version() -> ScalarUDF {
    ScalarUDF::new_from_impl(VersionUdf {
        signature: Signature::exact(vec![], Volatility::Stable),
    })
}

pub(super) fn more_than_one_row() -> ScalarUDF {
    ScalarUDF::new_from_impl(MoreThanOneRowUdf {
        signature: Signature::exact(vec![], Volatility::Volatile),
    })
}
