//! Pieces shared by the Blueshift leader and compute nodes. It depends on no other crate of
//! ours except `proto`, and holds no server: only types, pure functions and DataFusion
//! extensions both sides must agree on.
//!
//! * [`cluster_auth`]: the proof of cluster membership every internal gRPC call carries.
//! * [`error`]: the crate error, SQLSTATE codes, and their trip across gRPC / Flight.
//! * [`types`]: catalog types (tables, columns, distribution, segments).
//! * [`leaf`]: what our leaf plan nodes share.
//! * [`hash`]: the versioned slice hash that places `DISTSTYLE KEY` rows on slices.
//! * [`scan`]: `SliceScanExec`, the table scan whose partition `i` reads slice `i` only.
//! * [`exchange`]: `ExchangeReaderExec`, the consuming end of an exchange between stages.
//! * [`codec`]: the datafusion-proto extension codec that ships our plan nodes.
//! * [`functions`]: SQL functions both sides must know (e.g. `version()`).
//! * [`store`]: opening the segment store and registering it with DataFusion.
//! * [`net`]: accepting connections with TCP_NODELAY.
//! * [`runtime`]: the dedicated runtime query work runs on.
//! * [`logging`]: tracing setup for the binaries.

pub mod cluster_auth;
pub mod codec;
pub mod error;
pub mod exchange;
pub mod functions;
pub mod hash;
pub mod leaf;
pub mod logging;
pub mod net;
pub mod runtime;
pub mod scan;
pub mod store;
pub mod types;

pub use error::{Error, Result};

/// The Blueshift version, reported by `version()` and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The PostgreSQL version we present to clients (drivers gate features on it).
pub const PG_SERVER_VERSION: &str = "15.4";
