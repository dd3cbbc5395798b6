//! Test support for Blueshift's end-to-end suite (`tests/e2e/`): real clusters driven by real
//! clients, with DuckDB as the independent oracle for answers.
//!
//! ```text
//!   e2e test ─┬─ Cluster::start ──▶ blueshift local (leader + N compute processes)
//!             │                      ▲ tokio-postgres, simple query protocol (pg)
//!             ├─ tpch_data ─────────▶ target/tpch-data/sf0.01/*.parquet (tpchgen-cli, once)
//!             │     └─ load_tpch: CREATE TABLE + COPY ... FORMAT AS PARQUET
//!             └─ DuckDb ────────────▶ .venv python + duckdb over the same files
//!                   └─ compare: cell by cell, numbers within 1e-6 relative
//! ```
//!
//! Modules:
//! - [`cluster`]: [`Cluster`], which owns a `blueshift local` process group (ready file,
//!   logs, SIGTERM stop, SIGKILL on drop).
//! - [`process`]: [`Process`], a child process started by hand, killed on drop.
//! - [`pg`]: connect, run SQL, read text rows, capture errors with their SQLSTATE.
//! - [`duckdb`]: [`DuckDb`], the oracle.
//! - [`s3`]: [`S3Server`], a moto S3 server on loopback for clusters on an S3 store.
//! - [`netns`]: [`netns::Hosts`], network namespaces on a bridge, for clusters spread over
//!   "hosts" that share only the network.
//! - [`tpch`]: TPC-H SF 0.01 data, DDL, loader, Q1 and Q6.
//! - [`tpch_queries`]: the text of all 22 TPC-H queries (validation parameters) and their
//!   ORDER BY columns.
//! - [`compare`]: result-set comparison with readable diffs.
//! - [`slt`]: the sqllogictest [`sqllogictest::AsyncDB`] over tokio-postgres.
//! - [`paths`]: where the binary, the venv Python and the data cache are.
//!
//! Environment: `BLUESHIFT_BIN` (the binary, default `target/debug/blueshift`),
//! `BLUESHIFT_PYTHON` (default `.venv/bin/python`), `BLUESHIFT_READY_TIMEOUT_SECS`
//! (default 120).

pub mod cluster;
pub mod compare;
pub mod duckdb;
pub mod http;
pub mod jepsen;
pub mod netns;
pub mod paths;
pub mod pg;
pub mod process;
pub mod s3;
pub mod slt;
pub mod tpch;
pub mod tpch_queries;

pub use cluster::{Cluster, ClusterOptions};
pub use compare::{assert_rows_eq, compare_rows, compare_rows_ordered_by};
pub use duckdb::DuckDb;
pub use process::Process;
pub use s3::S3Server;
pub use tpch::{TpchData, load_tpch, tpch_data, tpch_ddl};
pub use tpch_queries::TPCH_QUERIES;

/// A result set as text: rows of cells, SQL NULL as `None`.
pub type Rows = Vec<Vec<Option<String>>>;
