//! What the fuzz targets share: a tokio runtime and a DataFusion context with a few empty
//! tables to plan SQL against (built once per fuzzing process).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// `t (a int, b text, c double)` and `u (a bigint, d date, e decimal(12, 2))`, empty.
pub fn planning_context() -> &'static (tokio::runtime::Runtime, SessionContext) {
    static CONTEXT: OnceLock<(tokio::runtime::Runtime, SessionContext)> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let ctx = SessionContext::new();
        for (name, fields) in [
            (
                "t",
                vec![
                    Field::new("a", DataType::Int32, true),
                    Field::new("b", DataType::Utf8, true),
                    Field::new("c", DataType::Float64, true),
                ],
            ),
            (
                "u",
                vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("d", DataType::Date32, true),
                    Field::new("e", DataType::Decimal128(12, 2), true),
                ],
            ),
        ] {
            let schema = Arc::new(Schema::new(fields));
            let table = MemTable::try_new(schema, vec![vec![]]).expect("an empty table");
            ctx.register_table(name, Arc::new(table))
                .expect("registering a table");
        }
        (runtime, ctx)
    })
}
