//! A Blueshift compute node. It owns no catalog: it joins the cluster by registering with the
//! leader over gRPC, heartbeats, and serves Arrow Flight for everything that moves rows:
//!
//! ```text
//!   leader ──do_action(StartStage)──▶ exchange: run this node's partitions of a stage,
//!                                     bucket their rows (in memory, spilling to disk)
//!   leader or node ──do_get(ExchangeTicket)──▶ exchange: stream one bucket ──▶ batches
//!   leader ──do_action(ReleaseQuery)──▶ exchange: stop producers, free rows and spill files
//!   leader ──do_put(LoadRequest + batches)──▶ storage: sort by SORTKEY, write segments
//!                                             ──▶ LoadResult (segment list, not yet visible)
//! ```
//!
//! Modules: [`flight`] (the Flight service), [`exchange`] (stage producers and their
//! buffers), [`exec`] (the DataFusion engine), [`cache`] (the local cache of segment files
//! read from the store), [`storage`] (writing sorted Parquet segments), [`membership`]
//! (register + heartbeat), [`drain`] (leaving the cluster on SIGTERM without failing a
//! query).
//! It must not depend on the leader crate: the two talk only through `proto` types.

pub mod cache;
pub mod drain;
pub mod error;
pub mod exchange;
pub mod exec;
pub mod flight;
pub mod membership;
pub mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use blueshift_proto::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;

pub use error::{Error, Result};

/// How long the Flight server may take to close its connections once the node drained.
const SERVER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a compute node needs to start.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    /// The leader's gRPC address, e.g. `http://127.0.0.1:5440`; with leader replicas,
    /// all of theirs, comma-separated (the node registers and heartbeats with each).
    pub leader: String,
    /// Local working directory (node identity, spill files).
    pub data_dir: PathBuf,
    /// Host name other nodes and the leader use to reach this node's Flight port; `None`:
    /// the listening IP, or if that is 0.0.0.0 the local address of the route to the leader.
    pub advertise_host: Option<String>,
    /// Bytes of segment files the node keeps in `data_dir/cache`; `None`: 10% of the file
    /// system under `data_dir`, at least 1 GiB.
    pub cache_bytes: Option<u64>,
    /// This node's S3 settings and credentials (the leader's non-secret settings fill in
    /// what is unset; the `AWS_*` environment what is still unset).
    pub s3: blueshift_common::store::S3Options,
    /// How long a drain may wait for running work before the node stops anyway.
    pub drain_timeout: std::time::Duration,
}

/// Runs a compute node on `listener` until `shutdown` resolves, then drains it
/// ([`drain`]) and returns.
pub async fn run(
    config: ComputeConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    // Only this OS user may enter it (a data dir made before this rule included).
    std::fs::set_permissions(
        &config.data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let local: SocketAddr = listener.local_addr()?;
    let advertise_host = match &config.advertise_host {
        Some(h) => h.clone(),
        None => match membership::default_advertise_host(
            membership::leader_addresses(&config.leader)
                .first()
                .map_or("", String::as_str),
            local.ip(),
        )
        .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot find this host's address on the route to the leader; advertising \
                     127.0.0.1, which only a leader on this host reaches (set advertise_host)"
                );
                "127.0.0.1".to_string()
            }
        },
    };
    let flight_addr = if advertise_host.contains(':') && !advertise_host.starts_with('[') {
        format!("[{advertise_host}]:{}", local.port())
    } else {
        format!("{advertise_host}:{}", local.port())
    };
    // One registration per leader replica: each schedules work on this node.
    let name = membership::node_name(&config.data_dir)?;
    let cache_bytes = config
        .cache_bytes
        .unwrap_or_else(|| cache::default_cache_bytes(&config.data_dir));
    let engine = Arc::new(exec::Engine::new(
        config.s3.clone(),
        config.data_dir.join("cache"),
        cache_bytes,
    ));
    // Spill files of a previous run belong to queries that are gone.
    let spill_dir = config.data_dir.join("spill");
    if spill_dir.exists() {
        let _ = std::fs::remove_dir_all(&spill_dir);
    }
    let exchanges = Arc::new(exchange::Exchanges::new(spill_dir));
    let sweeper = {
        let exchanges = exchanges.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                exchanges.sweep_abandoned();
            }
        })
    };

    let loads = Arc::new(drain::InFlight::default());
    let service =
        flight::ComputeFlightService::new(engine.clone(), exchanges.clone(), loads.clone());
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    // Only members of the cluster (with its secret) reach the service.
    let server = tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(
            blueshift_common::cluster_auth::check,
        ))
        .add_service(
            FlightServiceServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            blueshift_common::net::incoming_nodelay(listener),
            async move {
                let _ = server_stopped.await;
            },
        );
    // Spawned, so that it keeps accepting connections while the node drains.
    let mut server = tokio::spawn(server);

    let leaders = membership::Leaders::start(
        membership::leader_addresses(&config.leader),
        name,
        flight_addr.clone(),
        engine.clone(),
    );
    tracing::info!(%flight_addr, leader = %config.leader, "compute node serving Arrow Flight");
    let early = tokio::select! {
        r = &mut server => Some(r),
        _ = shutdown => None,
    };
    if early.is_none() {
        // Drain from every leader replica at once; each stops its heartbeats before its
        // goodbye, so that it does not register again.
        let nodes = leaders.close();
        futures::future::join_all(nodes.iter().map(|(node, membership)| {
            drain::drain(node, &loads, config.drain_timeout, || membership.abort())
        }))
        .await;
        let _ = stop_server.send(());
    }
    leaders.stop();
    sweeper.abort();
    let result = match early {
        Some(r) => r,
        // A graceful stop waits for every connection to close; a peer that vanished without
        // closing its TCP connection would hold it forever.
        None => match tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    "connections still open {SERVER_STOP_TIMEOUT:?} after the drain; closing them"
                );
                server.abort();
                return Ok(());
            }
        },
    };
    match result {
        Ok(r) => r.map_err(|e| Error::Transport(e.to_string())),
        Err(e) => Err(Error::Transport(format!(
            "the Flight server task failed: {e}"
        ))),
    }
}
