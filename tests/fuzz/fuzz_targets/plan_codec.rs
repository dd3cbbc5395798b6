//! Plan fragments as a compute node decodes them (`codec::decode_plan`: datafusion-proto
//! with our extension nodes, then the allow-list of sources). The first byte picks the
//! input: raw bytes as received, or SQL text planned by DataFusion over empty tables,
//! encoded and decoded again (our encoder's output must decode). A panic is a bug.
#![no_main]

use blueshift_common::codec::{decode_plan, encode_plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    let (runtime, ctx) = blueshift_fuzz::planning_context();
    let task = ctx.task_ctx();
    if kind % 2 == 0 {
        let _ = decode_plan(rest, &task);
        return;
    }
    let Ok(sql) = std::str::from_utf8(rest) else {
        return;
    };
    let plan = runtime.block_on(async {
        // Queries only: DDL would register tables (and read files) in the context.
        let options = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await.ok()?;
        df.create_physical_plan().await.ok()
    });
    if let Some(plan) = plan
        && let Ok(bytes) = encode_plan(plan)
    {
        let _ = decode_plan(&bytes, &task);
    }
});
