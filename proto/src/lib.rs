//! Protobuf messages and gRPC services spoken between the Blueshift leader and its compute
//! nodes. This crate owns only the wire format: no logic, no I/O.
//!
//! * [`v1::cluster_server`] / [`v1::cluster_client`]: node registration and heartbeats
//!   (served by the leader).
//! * [`v1::StartStage`] / [`v1::ReleaseQuery`]: Arrow Flight `do_action` bodies that start
//!   a query stage's producers on a compute node and free them when the query ends.
//! * [`v1::ExchangeTicket`]: the Arrow Flight `do_get` ticket that reads one bucket of a
//!   stage's output (between compute nodes, and from compute nodes to the leader).
//! * [`v1::LoadRequest`] / [`v1::LoadResult`]: the Arrow Flight `do_put` descriptor and result
//!   for writing one slice's rows as sorted Parquet segments.

/// Version 1 of the Blueshift control protocol.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("blueshift.v1");
}

/// Largest gRPC / Flight message we accept or send. Plans for wide queries and big Arrow
/// batches exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
