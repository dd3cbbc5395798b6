//! `COPY t FROM STDIN <options>` and its rows: the input's first line is the option text
//! (parsed by the COPY statement parser), the rest the data the client sends, read by the
//! CSV / text reader into a table with a column of each type. Bad options and bad rows are
//! errors (or, under MAXERROR, rejected rows); a panic is a bug.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use blueshift_common::types::{ColumnDef, ColumnType, DistStyle, TableDef};
use blueshift_leader::load::source::{ReadSpec, read_stdin};
use blueshift_leader::sql::statement::{Statement, parse};
use libfuzzer_sys::fuzz_target;

fn table() -> TableDef {
    let columns = [
        ("i", ColumnType::Integer),
        ("s", ColumnType::SmallInt),
        ("b", ColumnType::BigInt),
        (
            "n",
            ColumnType::Decimal {
                precision: 12,
                scale: 3,
            },
        ),
        ("r", ColumnType::Real),
        ("f", ColumnType::Double),
        ("t", ColumnType::Boolean),
        ("c", ColumnType::Char { len: 4 }),
        ("v", ColumnType::Varchar { len: 16 }),
        ("d", ColumnType::Date),
        ("ts", ColumnType::Timestamp),
        ("tz", ColumnType::TimestampTz),
    ]
    .into_iter()
    .map(|(name, ty)| ColumnDef::new(name, ty, true))
    .collect();
    TableDef {
        id: 1,
        schema: "public".into(),
        name: "t".into(),
        columns,
        dist: DistStyle::Even,
        dist_auto: false,
        sort_key: vec![],
        segments: BTreeMap::new(),
        hash_version: 1,
        owner: String::new(),
        dropped_columns: vec![],
        temporary: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (options, rows) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(options) = std::str::from_utf8(options) else {
        return;
    };
    let Ok(statements) = parse(&format!("copy t from stdin {options}")) else {
        return;
    };
    let Some(Statement::CopyFrom(copy)) = statements.into_iter().next().map(|p| p.statement) else {
        return;
    };
    let table = table();
    let spec = ReadSpec {
        defaults: vec![None; table.columns.len()],
        table,
        columns: None,
        options: copy.options.clone(),
        query_id: "fuzz".into(),
        errors: Arc::default(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let rows = rows.to_vec();
    let reader = std::thread::spawn(move || {
        read_stdin(spec, Box::new(std::io::Cursor::new(rows)), tx);
    });
    while rx.blocking_recv().is_some() {}
    // A panic in the reader is the bug this target looks for.
    if reader.join().is_err() {
        panic!("the COPY reader panicked");
    }
});
