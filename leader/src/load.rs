//! Loading rows into a table: `COPY` from files and `INSERT`. Every load follows one path:
//!
//! ```text
//!  source (CSV / Parquet files, or a query)  ──▶ coerce to the table's types (clear errors)
//!    ──▶ route rows to slices (KEY: slice hash; EVEN: round-robin; ALL: every node)
//!    ──▶ Flight do_put per slice to its node ──▶ node sorts by SORTKEY, writes segments
//!    ──▶ one catalog command commits every segment, or nothing is committed
//! ```
//!
//! * [`source`]: finding files and reading CSV / Parquet into batches of the table's schema.
//! * [`coerce`]: casting columns to the table's types, NOT NULL and length checks.
//! * [`identity`]: identity columns' values for rows that have none.
//! * [`router`]: routing rows to slices and shipping them to compute nodes.

pub mod access;
pub mod coerce;
pub mod identity;
pub mod router;
pub mod source;

use std::sync::Arc;

/// One rejected row, as `stl_load_errors` shows it.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub query_id: String,
    pub filename: String,
    pub line_number: i64,
    pub colname: String,
    pub raw_field_value: String,
    pub err_code: String,
    pub err_reason: String,
    pub starttime: chrono::DateTime<chrono::Utc>,
}

const MAX_LOAD_ERRORS: usize = 10_000;

/// The most recent rejected rows (bounded, newest last).
pub type LoadErrorLog = crate::history::History<LoadError, MAX_LOAD_ERRORS>;

pub type SharedLoadErrors = Arc<LoadErrorLog>;
