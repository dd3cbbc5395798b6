//! Redshift's system views, built from the leader's state at the pinned catalog version:
//!
//! * `stv_slices (node, slice, address, state)`: which node serves each slice.
//! * `stv_tbl_perm (slice, id, name, rows, segments)`: rows of every table on every slice.
//! * `svv_table_info (table_id, schema, "table", encoded, diststyle, sortkey1, max_varchar,
//!   sortkey1_enc, sortkey_num, size, pct_used, unsorted, stats_off, tbl_rows, skew_sortkey1,
//!   skew_rows)`: one row per table, Redshift's columns in Redshift's order; `size` in 1 MB
//!   blocks as Redshift reports it, `skew_rows` the ratio of the fullest slice to the
//!   emptiest, `encoded` always `N` and `sortkey1_enc` `none` (segments are Parquet; no
//!   column has a Redshift encoding), `max_varchar` the widest declared VARCHAR. Blueshift
//!   does not measure `pct_used` (the store has no fixed capacity), nor yet `unsorted`,
//!   `stats_off` and `skew_sortkey1` (no sort-order tracking or statistics): they are NULL,
//!   which tools that read the view (dbt's catalog) accept.
//! * `stl_load_errors (query, starttime, filename, line_number, colname, raw_field_value,
//!   err_code, err_reason)`: rows that `COPY ... MAXERROR n` rejected (most recent 10 000).
//! * `svv_external_schemas`, `svv_external_tables`, `svv_external_columns`: Spectrum's
//!   views, always empty (no external tables).
//! * `stl_retries (query, starttime, attempt, sqlstate, error, querytxt)`: statements run
//!   again after they lost a compute node (most recent 1000).
//! * `stl_connection_log (event, recordtime, remotehost, remoteport, pid, dbname, username,
//!   authmethod, duration, sslversion, application_name)`: logins started, authenticated and
//!   failed, and sessions ended (`duration` in microseconds), on the PostgreSQL and Flight
//!   SQL ports of this replica (most recent 10 000). A superuser sees every row, anyone else
//!   their own.
//! * `stv_node_cache (node, address, capacity_bytes, used_bytes, segments, hits, misses,
//!   store_bytes, cached_bytes, evictions)`: every live node's segment cache, asked when the
//!   view is scanned.
//! * `stv_leader_replicas (node_id, address, is_self, role, term, leader_id, commit_index,
//!   applied_index, catalog_version)`: the leader replicas' raft group as the replica that
//!   runs the statement sees it: its own row complete, the others' role only (`leader`,
//!   `follower` or `learner`: added, still catching up; their progress is on their own
//!   rows, asked on them). Its own role may also be `undecided`, `joining` or `removed`.
//! * `svv_store_usage (kind, table_id, tablename, segments, bytes)`: the store's size by table
//!   (`kind = 'table'`, from the catalog) and the unreferenced segments garbage collection
//!   has found but not deleted yet (`kind = 'awaiting_gc'`, by table id).

mod lazy;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;

use crate::LeaderState;
use crate::catalog::CatalogState;
use crate::cluster::SliceMap;
use crate::error::Result;
use blueshift_common::types::DistStyle;

pub fn register(
    schema: &MemorySchemaProvider,
    leader: &LeaderState,
    catalog: &CatalogState,
    slices: &SliceMap,
) -> Result<()> {
    schema.register_table("stv_slices".into(), stv_slices(leader, slices)?)?;
    schema.register_table("stv_tbl_perm".into(), stv_tbl_perm(catalog)?)?;
    schema.register_table("svv_table_info".into(), svv_table_info(catalog)?)?;
    schema.register_table("stl_load_errors".into(), stl_load_errors(leader)?)?;
    schema.register_table("stl_retries".into(), stl_retries(leader)?)?;
    schema.register_table("stl_connection_log".into(), stl_connection_log(leader)?)?;
    schema.register_table("svv_store_usage".into(), svv_store_usage(leader, catalog)?)?;
    schema.register_table("stv_node_cache".into(), stv_node_cache(leader))?;
    schema.register_table(
        "stv_leader_replicas".into(),
        stv_leader_replicas(leader, catalog)?,
    )?;
    for (name, columns) in EXTERNAL_VIEWS {
        // Same shape as a SHOW listing: `(name, integer?)`, all nullable.
        let schema_ref = crate::sql::show::result_schema(columns);
        schema.register_table(
            name.to_string(),
            Arc::new(MemTable::try_new(schema_ref, vec![vec![]])?),
        )?;
    }
    Ok(())
}

/// Redshift Spectrum's views of external schemas, tables and columns: always empty, as
/// Blueshift has no external tables (Redshift tools read them beside `pg_class`).
const EXTERNAL_VIEWS: [(&str, &[(&str, bool)]); 3] = [
    (
        "svv_external_schemas",
        &[
            ("esoid", true),
            ("eskind", true),
            ("schemaname", false),
            ("esowner", true),
            ("databasename", false),
            ("esoptions", false),
        ],
    ),
    (
        "svv_external_tables",
        &[
            ("redshift_database_name", false),
            ("schemaname", false),
            ("tablename", false),
            ("tabletype", false),
            ("location", false),
            ("input_format", false),
            ("output_format", false),
            ("serialization_lib", false),
            ("serde_parameters", false),
            ("compressed", true),
            ("parameters", false),
        ],
    ),
    (
        "svv_external_columns",
        &[
            ("redshift_database_name", false),
            ("schemaname", false),
            ("tablename", false),
            ("columnname", false),
            ("external_type", false),
            ("columnnum", true),
            ("part_key", true),
            ("is_nullable", false),
        ],
    ),
];

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn stv_slices(leader: &LeaderState, slices: &SliceMap) -> Result<Arc<MemTable>> {
    let nodes = leader.membership.nodes();
    let mut node = Vec::new();
    let mut slice = Vec::new();
    let mut address = Vec::new();
    let mut state = Vec::new();
    for (i, (id, addr)) in slices.owners.iter().enumerate() {
        let node_state = nodes
            .iter()
            .find(|n| n.id == *id)
            .map_or("gone", |n| n.state());
        node.push(*id as i32);
        slice.push(i as i32);
        address.push(addr.clone());
        state.push(node_state.to_string());
    }
    table(
        vec![
            Field::new("node", DataType::Int32, false),
            Field::new("slice", DataType::Int32, false),
            Field::new("address", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
        ],
        vec![
            Arc::new(Int32Array::from(node)),
            Arc::new(Int32Array::from(slice)),
            Arc::new(StringArray::from(address)),
            Arc::new(StringArray::from(state)),
        ],
    )
}

fn stv_tbl_perm(catalog: &CatalogState) -> Result<Arc<MemTable>> {
    let mut slice = Vec::new();
    let mut id = Vec::new();
    let mut name = Vec::new();
    let mut rows = Vec::new();
    let mut segments = Vec::new();
    for t in catalog.tables.values() {
        for s in 0..catalog.slices {
            let segs = t.segments.get(&s);
            slice.push(s as i32);
            id.push(t.id as i64);
            name.push(t.name.clone());
            rows.push(
                segs.map(|v| v.iter().map(|g| g.rows).sum::<u64>())
                    .unwrap_or(0) as i64,
            );
            segments.push(segs.map(Vec::len).unwrap_or(0) as i64);
        }
    }
    table(
        vec![
            Field::new("slice", DataType::Int32, false),
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("segments", DataType::Int64, false),
        ],
        vec![
            Arc::new(Int32Array::from(slice)),
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(name)),
            Arc::new(Int64Array::from(rows)),
            Arc::new(Int64Array::from(segments)),
        ],
    )
}

fn svv_table_info(catalog: &CatalogState) -> Result<Arc<MemTable>> {
    let mut table_id = Vec::new();
    let mut schema = Vec::new();
    let mut name = Vec::new();
    let mut diststyle = Vec::new();
    let mut sortkey1 = Vec::new();
    let mut sortkey_num = Vec::new();
    let mut tbl_rows = Vec::new();
    let mut size = Vec::new();
    let mut skew = Vec::new();
    let mut max_varchar = Vec::new();
    let mut sortkey1_enc = Vec::new();
    for t in catalog.tables.values() {
        max_varchar.push(
            t.columns
                .iter()
                .filter_map(|c| match c.ty {
                    blueshift_common::types::ColumnType::Varchar { len } => Some(len as i32),
                    _ => None,
                })
                .max(),
        );
        sortkey1_enc.push((!t.sort_key.is_empty()).then_some("none"));
        table_id.push(t.id as i64);
        schema.push(t.schema.clone());
        name.push(t.name.clone());
        diststyle.push(match &t.dist {
            DistStyle::Key { column } => format!(
                "KEY({})",
                t.columns
                    .get(*column)
                    .map(|c| c.name.as_str())
                    .unwrap_or("?")
            ),
            other if t.dist_auto => format!("AUTO({})", other.name()),
            other => other.name().to_string(),
        });
        sortkey1.push(
            t.sort_key
                .first()
                .and_then(|i| t.columns.get(*i))
                .map(|c| c.name.clone()),
        );
        sortkey_num.push(t.sort_key.len() as i32);
        tbl_rows.push(t.total_rows() as i64);
        size.push(t.total_bytes().div_ceil(1024 * 1024) as i64);
        let per_slice: Vec<u64> = (0..catalog.slices)
            .map(|s| {
                t.segments
                    .get(&s)
                    .map(|v| v.iter().map(|g| g.rows).sum())
                    .unwrap_or(0)
            })
            .collect();
        let max = per_slice.iter().copied().max().unwrap_or(0);
        let min = per_slice.iter().copied().min().unwrap_or(0);
        skew.push(if t.dist == DistStyle::All || max == 0 {
            None
        } else {
            Some(max as f64 / (min.max(1)) as f64)
        });
    }
    let n = table_id.len();
    table(
        vec![
            Field::new("table_id", DataType::Int64, false),
            Field::new("schema", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("encoded", DataType::Utf8, false),
            Field::new("diststyle", DataType::Utf8, false),
            Field::new("sortkey1", DataType::Utf8, true),
            Field::new("max_varchar", DataType::Int32, true),
            Field::new("sortkey1_enc", DataType::Utf8, true),
            Field::new("sortkey_num", DataType::Int32, false),
            Field::new("size", DataType::Int64, false),
            Field::new("pct_used", DataType::Float64, true),
            Field::new("unsorted", DataType::Float64, true),
            Field::new("stats_off", DataType::Float64, true),
            Field::new("tbl_rows", DataType::Int64, false),
            Field::new("skew_sortkey1", DataType::Float64, true),
            Field::new("skew_rows", DataType::Float64, true),
        ],
        vec![
            Arc::new(Int64Array::from(table_id)),
            Arc::new(StringArray::from(schema)),
            Arc::new(StringArray::from(name)),
            Arc::new(StringArray::from(vec!["N"; n])),
            Arc::new(StringArray::from(diststyle)),
            Arc::new(StringArray::from(sortkey1)),
            Arc::new(Int32Array::from(max_varchar)),
            Arc::new(StringArray::from(sortkey1_enc)),
            Arc::new(Int32Array::from(sortkey_num)),
            Arc::new(Int64Array::from(size)),
            Arc::new(Float64Array::new_null(n)),
            Arc::new(Float64Array::new_null(n)),
            Arc::new(Float64Array::new_null(n)),
            Arc::new(Int64Array::from(tbl_rows)),
            Arc::new(Float64Array::new_null(n)),
            Arc::new(Float64Array::from(skew)),
        ],
    )
}

fn stl_load_errors(leader: &LeaderState) -> Result<Arc<MemTable>> {
    let rows = leader.load_errors.events();
    let ts: Vec<i64> = rows
        .iter()
        .map(|r| r.starttime.timestamp_micros())
        .collect();
    table(
        vec![
            Field::new("query", DataType::Utf8, false),
            Field::new(
                "starttime",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("filename", DataType::Utf8, false),
            Field::new("line_number", DataType::Int64, false),
            Field::new("colname", DataType::Utf8, false),
            Field::new("raw_field_value", DataType::Utf8, false),
            Field::new("err_code", DataType::Utf8, false),
            Field::new("err_reason", DataType::Utf8, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.query_id.as_str()),
            )),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(ts)),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.filename.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.line_number),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.colname.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.raw_field_value.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.err_code.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.err_reason.as_str()),
            )),
        ],
    )
}

fn stl_connection_log(leader: &LeaderState) -> Result<Arc<MemTable>> {
    let me = crate::session::current_user();
    let all = !me.is_empty() && leader.is_superuser(&me);
    let events: Vec<_> = leader
        .sessions
        .log()
        .into_iter()
        .filter(|e| all || e.user == me)
        .collect();
    let text = |f: &dyn Fn(&crate::pgwire::sessions::ConnectionEvent) -> String| {
        Arc::new(StringArray::from_iter_values(events.iter().map(f))) as ArrayRef
    };
    table(
        vec![
            Field::new("event", DataType::Utf8, false),
            Field::new(
                "recordtime",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("remotehost", DataType::Utf8, false),
            Field::new("remoteport", DataType::Utf8, false),
            Field::new("pid", DataType::Int32, false),
            Field::new("dbname", DataType::Utf8, false),
            Field::new("username", DataType::Utf8, false),
            Field::new("authmethod", DataType::Utf8, false),
            Field::new("duration", DataType::Int64, false),
            Field::new("sslversion", DataType::Utf8, false),
            Field::new("application_name", DataType::Utf8, false),
        ],
        vec![
            text(&|e| e.event.to_string()),
            Arc::new(arrow::array::TimestampMicrosecondArray::from_iter_values(
                events.iter().map(|e| e.time.timestamp_micros()),
            )),
            text(&|e| e.remote.ip().to_string()),
            text(&|e| e.remote.port().to_string()),
            Arc::new(Int32Array::from_iter_values(events.iter().map(|e| e.pid))),
            text(&|e| e.database.clone()),
            text(&|e| e.user.clone()),
            text(&|e| e.method.to_string()),
            Arc::new(Int64Array::from_iter_values(
                events.iter().map(|e| e.duration_us),
            )),
            // Which TLS version is not known here; Redshift leaves it empty without TLS.
            text(&|e| if e.tls { "TLS" } else { "" }.to_string()),
            text(&|e| e.application_name.clone()),
        ],
    )
}

fn stl_retries(leader: &LeaderState) -> Result<Arc<MemTable>> {
    let events = leader.retries.events();
    let text = |f: fn(&crate::session::retry::RetryEvent) -> &str| {
        Arc::new(StringArray::from_iter_values(events.iter().map(f))) as ArrayRef
    };
    table(
        vec![
            Field::new("query", DataType::Utf8, false),
            Field::new(
                "starttime",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("attempt", DataType::Int32, false),
            Field::new("sqlstate", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("querytxt", DataType::Utf8, false),
        ],
        vec![
            text(|e| e.query_id.as_str()),
            Arc::new(arrow::array::TimestampMicrosecondArray::from_iter_values(
                events.iter().map(|e| e.time.timestamp_micros()),
            )),
            Arc::new(Int32Array::from_iter_values(
                events.iter().map(|e| e.attempt as i32),
            )),
            text(|e| e.sqlstate.as_str()),
            text(|e| e.error.as_str()),
            text(|e| e.statement.as_str()),
        ],
    )
}

fn stv_leader_replicas(leader: &LeaderState, catalog: &CatalogState) -> Result<Arc<MemTable>> {
    let status = leader.catalog.replica_status();
    let mut ids: Vec<u64> = status.voters.clone();
    ids.extend(status.learners.iter().copied());
    if !ids.contains(&status.node_id) {
        ids.push(status.node_id);
    }
    ids.sort();
    let mine = |id: u64, v: u64| (id == status.node_id).then_some(v as i64);
    table(
        vec![
            Field::new("node_id", DataType::Int64, false),
            Field::new("address", DataType::Utf8, true),
            Field::new("is_self", DataType::Boolean, false),
            Field::new("role", DataType::Utf8, false),
            Field::new("term", DataType::Int64, true),
            Field::new("leader_id", DataType::Int64, true),
            Field::new("commit_index", DataType::Int64, true),
            Field::new("applied_index", DataType::Int64, true),
            Field::new("catalog_version", DataType::Int64, true),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| *i as i64))),
            Arc::new(StringArray::from_iter(
                ids.iter()
                    .map(|i| status.peers.get(i).filter(|a| !a.is_empty()).cloned()),
            )),
            Arc::new(arrow::array::BooleanArray::from_iter(
                ids.iter().map(|i| Some(*i == status.node_id)),
            )),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| {
                if *i == status.node_id {
                    status.role
                } else if *i == status.leader_id {
                    "leader"
                } else if status.learners.contains(i) {
                    "learner"
                } else {
                    "follower"
                }
            }))),
            Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| mine(*i, status.term)),
            )),
            Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| mine(*i, status.leader_id)),
            )),
            Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| mine(*i, status.commit_index)),
            )),
            Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| mine(*i, status.applied_index)),
            )),
            Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| mine(*i, catalog.version)),
            )),
        ],
    )
}

fn svv_store_usage(leader: &LeaderState, catalog: &CatalogState) -> Result<Arc<MemTable>> {
    let mut kind = Vec::new();
    let mut id = Vec::new();
    let mut name: Vec<Option<String>> = Vec::new();
    let mut segments = Vec::new();
    let mut bytes = Vec::new();
    for t in catalog.tables.values() {
        let segs: Vec<_> = t.segments.values().flatten().collect();
        kind.push("table");
        id.push(t.id as i64);
        name.push(Some(t.name.clone()));
        segments.push(segs.len() as i64);
        bytes.push(segs.iter().map(|s| s.bytes as i64).sum::<i64>());
    }
    for (table_id, (files, size)) in leader.gc.stats().pending {
        kind.push("awaiting_gc");
        id.push(table_id as i64);
        name.push(catalog.tables.get(&table_id).map(|t| t.name.clone()));
        segments.push(files as i64);
        bytes.push(size as i64);
    }
    table(
        vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("table_id", DataType::Int64, false),
            Field::new("tablename", DataType::Utf8, true),
            Field::new("segments", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from(kind)),
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(name)),
            Arc::new(Int64Array::from(segments)),
            Arc::new(Int64Array::from(bytes)),
        ],
    )
}

fn stv_node_cache(leader: &LeaderState) -> Arc<lazy::LazyTable> {
    let fields = [
        "capacity_bytes",
        "used_bytes",
        "segments",
        "hits",
        "misses",
        "store_bytes",
        "cached_bytes",
        "evictions",
    ];
    let mut all = vec![
        Field::new("node", DataType::Int32, false),
        Field::new("address", DataType::Utf8, false),
    ];
    all.extend(
        fields
            .iter()
            .map(|f| Field::new(*f, DataType::Int64, false)),
    );
    let schema = Arc::new(Schema::new(all));
    let nodes = leader.membership.live_nodes();
    let scheduler = leader.scheduler.clone();
    let out_schema = schema.clone();
    let rows: lazy::Rows = Arc::new(move || {
        let nodes = nodes.clone();
        let scheduler = scheduler.clone();
        let schema = out_schema.clone();
        Box::pin(async move {
            let asks = nodes.iter().map(|n| {
                let scheduler = scheduler.clone();
                async move { scheduler.cache_stats(&n.flight_addr).await }
            });
            let stats = futures::future::try_join_all(asks).await?;
            let column = |f: fn(&blueshift_proto::v1::CacheStats) -> u64| {
                Arc::new(Int64Array::from_iter_values(
                    stats.iter().map(|s| f(s) as i64),
                )) as ArrayRef
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from_iter_values(
                    nodes.iter().map(|n| n.id as i32),
                )),
                Arc::new(StringArray::from_iter_values(
                    nodes.iter().map(|n| n.flight_addr.as_str()),
                )),
                column(|s| s.capacity_bytes),
                column(|s| s.used_bytes),
                column(|s| s.entries),
                column(|s| s.hits),
                column(|s| s.misses),
                column(|s| s.store_bytes),
                column(|s| s.cached_bytes),
                column(|s| s.evictions),
            ];
            Ok(RecordBatch::try_new(schema, columns)?)
        })
    });
    Arc::new(lazy::LazyTable::new(schema, rows))
}
