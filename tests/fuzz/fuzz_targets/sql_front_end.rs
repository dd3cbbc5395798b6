//! The SQL front end on arbitrary text: the statement parser (tokenize once, split, parse
//! each statement into our AST: Redshift's DDL, COPY, GRANT, users, ...), then for queries
//! and INSERTs the compatibility rewrites and DataFusion's logical planning against a few
//! empty tables. Errors are fine; a panic is a bug.
#![no_main]

use blueshift_leader::sql::statement::{Statement, parse};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statements) = parse(text) else {
        return;
    };
    let (runtime, ctx) = blueshift_fuzz::planning_context();
    for parsed in statements {
        let ast = match &parsed.statement {
            Statement::Query(ast) | Statement::Insert(ast) => ast.clone(),
            _ => continue,
        };
        let state = ctx.state();
        let _ = runtime.block_on(blueshift_leader::sql::compat::logical_plan(
            &state,
            &ast,
            &HashSet::new(),
        ));
    }
});
