//! The Blueshift leader: the node clients talk to. It owns the catalog, plans every query,
//! and hands the work to compute nodes.
//!
//! ```text
//!  psql / drivers ──▶ pgwire ──▶ session ──▶ sql (Redshift DDL, COPY) ──▶ catalog (commands)
//!                                    │
//!                                    └──▶ planner (DataFusion, target_partitions = slices)
//!                                           └──▶ distribute: stages ──▶ scheduler ──Flight──▶ compute
//!  compute nodes ──gRPC──▶ cluster (register, heartbeat, slice map)
//! ```
//!
//! Modules: [`pgwire`] (PostgreSQL protocol), [`session`] (statement dispatch), [`sql`]
//! (parsing what DataFusion does not), [`catalog`] (the state machine), [`replica`] (its raft
//! group: log on disk, driver thread, transport),
//! [`cluster`] (membership), [`planner`] and [`scheduler`] (distributed execution),
//! [`interrupt`] (cancel requests, statement_timeout), [`limits`] (per-query memory),
//! [`load`] (COPY / INSERT), [`gc`] (garbage collection of the segment store),
//! [`system_tables`], [`demo`]. It must not depend on the
//! compute crate: the two talk only through `proto` types over gRPC / Flight.

pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod flight_sql;
pub mod gc;
pub mod history;
pub mod http;
pub mod interrupt;
pub mod limits;
pub mod load;
pub mod pg_catalog;
pub mod pgwire;
pub mod planner;
pub mod privileges;
pub mod replica;
pub mod scheduler;
pub mod session;
pub mod sql;
pub mod system_tables;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blueshift_proto::MAX_MESSAGE_BYTES;
use blueshift_proto::v1::cluster_server::ClusterServer;
use blueshift_proto::v1::raft_server::RaftServer;
use datafusion::execution::runtime_env::RuntimeEnv;
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::catalog::Catalog;
use crate::cluster::{ClusterService, Membership};
use crate::load::SharedLoadErrors;
use crate::scheduler::Scheduler;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub data_dir: PathBuf,
    /// Slices of a new cluster (`nodes x slices_per_node`); ignored once bootstrapped.
    pub slices: u32,
    /// Segment store URL; default `file://<data_dir>/store`.
    pub store_url: Option<String>,
    /// Settings and credentials of an `s3://` store (unset ones from `AWS_*`).
    pub s3: blueshift_common::store::S3Options,
    /// Wait for this many compute nodes before reporting ready.
    pub expect_nodes: usize,
    /// Users that may log in without a password (local mode).
    pub users: Vec<String>,
    pub database: String,
    /// The built-in users (`users`) may log in without a password from loopback while they
    /// have none. Off unless asked for (`blueshift local` asks): anything that connects from
    /// 127.0.0.1, a proxy relaying remote clients included, would be let in.
    pub trust_loopback: bool,
    /// A password the first built-in user gets on start while it has none (bootstrapping a
    /// cluster without `trust_loopback`).
    pub initial_password: Option<InitialPassword>,
    /// Load the TPC-H demo data set once ready.
    pub demo: bool,
    /// Default per-query memory limit per compute node, bytes (0 = none); see [`limits`].
    pub query_memory_limit: u64,
    /// Written (atomically) with the bound ports once the cluster is ready.
    pub ready_file: Option<PathBuf>,
    /// TLS certificate and key (PEM) for the PostgreSQL port; `None`: a self-signed pair
    /// generated under `data_dir/tls` (see [`tls`]).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long an unreferenced segment stays in the store before [`gc`] deletes it.
    pub gc_grace: Duration,
    /// This leader's place in its replica group (a group of one by default).
    pub replica: replica::ReplicaConfig,
    /// Directories `COPY ... FROM '/path'` may read below (superusers only; none: off).
    pub allowed_paths: Vec<PathBuf>,
    /// Directories it may never read below; the data dir is always one.
    pub denied_paths: Vec<PathBuf>,
    /// Whether MD5 password authentication exists at all (see [`auth`]).
    pub md5_auth: bool,
    /// How long a Flight SQL bearer token lives.
    pub flight_sql_token_ttl: Duration,
    /// Sessions the PostgreSQL port takes at once (superusers have a few more).
    pub max_connections: usize,
    /// Failed logins per source address per minute before it is refused (0: no limit).
    pub auth_failure_limit: u32,
}

/// The built-in user's initial password; `Debug` (`--config-check`) does not show it.
#[derive(Clone)]
pub struct InitialPassword(pub String);

impl std::fmt::Debug for InitialPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialPassword(***)")
    }
}

/// State shared by every session of the leader.
pub struct LeaderState {
    pub catalog: Arc<Catalog>,
    /// `pg_catalog` for client tools, over `catalog`.
    pub pg_catalog: pg_catalog::PgCatalog,
    pub membership: Arc<Membership>,
    pub scheduler: Arc<Scheduler>,
    pub runtime: Arc<RuntimeEnv>,
    /// The cluster's default per-query memory limit (bytes per node, 0 = none).
    pub query_memory_limit: u64,
    pub load_errors: SharedLoadErrors,
    /// Statements run again after losing a compute node (`stl_retries`).
    pub retries: session::retry::RetryLog,
    /// Running statements, which keep the segments they may read from [`gc`].
    pub pins: Arc<gc::Pins>,
    pub gc: Arc<gc::Gc>,
    pub users: Vec<String>,
    pub database: String,
    pub trust_loopback: bool,
    /// Identity columns' values handed out (see [`load::identity`]).
    pub identity: load::identity::IdentityAllocator,
    /// Which server files COPY may read ([`load::access`]).
    pub file_access: load::access::FileAccess,
    /// MD5 logins and MD5 secrets are allowed ([`auth`]).
    pub md5_auth: bool,
    /// How long a Flight SQL bearer token lives ([`flight_sql`]).
    pub flight_sql_token_ttl: Duration,
    pub max_connections: usize,
    /// The PostgreSQL port's sessions ([`pgwire::sessions`]).
    pub sessions: Arc<pgwire::sessions::Sessions>,
    /// Failed logins by address ([`auth::throttle`]).
    pub auth_throttle: auth::throttle::Throttle,
}

impl LeaderState {
    /// Whether `user` may manage users: a built-in user, or one created `CREATEUSER`.
    pub fn is_superuser(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == user)
            || self
                .catalog
                .snapshot()
                .users
                .get(user)
                .is_some_and(|u| u.superuser)
    }
}

/// The users `pg_roles` and friends list: the configured password-less users (OIDs from 10)
/// and those of `CREATE USER` (their own OIDs).
fn role_source(trusted: Vec<String>, catalog: Arc<Catalog>) -> pg_catalog::RoleSource {
    Arc::new(move || {
        let users = catalog.snapshot().users.clone();
        let mut roles: Vec<pg_catalog::RoleInfo> = trusted
            .iter()
            .enumerate()
            .filter(|(_, name)| !users.contains_key(*name))
            .map(|(i, name)| pg_catalog::RoleInfo {
                name: name.clone(),
                oid: 10 + i as i32,
                superuser: true,
                create_db: true,
                has_password: false,
                connection_limit: -1,
            })
            .collect();
        roles.extend(users.values().map(|u| {
            pg_catalog::RoleInfo {
                name: u.name.clone(),
                oid: u.id as i32,
                superuser: u.superuser,
                create_db: u.create_db,
                has_password: u.has_password(),
                connection_limit: u
                    .connection_limit
                    .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            }
        }));
        roles
    })
}

/// Gives the first built-in user `password` if it has none yet (every replica tries; the
/// first one's wins, the others see a password and leave it).
async fn set_initial_password(leader: &Arc<LeaderState>, password: &str) {
    let Some(user) = leader.users.first().cloned() else {
        return;
    };
    let has_one = |leader: &LeaderState| {
        leader
            .catalog
            .snapshot()
            .users
            .get(&user)
            .is_some_and(|u| u.has_password())
    };
    if has_one(leader) {
        return;
    }
    let executor = session::Executor {
        leader: leader.clone(),
    };
    let mut settings =
        std::collections::HashMap::from([(session::SESSION_USER.to_string(), user.clone())]);
    // The password rules refuse quotes; doubling them keeps the statement one string anyway.
    let sql = format!(
        "alter user \"{user}\" password '{}'",
        password.replace('\'', "''")
    );
    match executor.execute_sql(&sql, &mut settings).await {
        Ok(_) => tracing::info!(%user, "the built-in user got its initial password"),
        Err(_) if has_one(leader) => {}
        // The error names the rule the password broke, never the password.
        Err(e) => {
            tracing::error!(%user, error = %e.user_message(), "cannot set the initial password")
        }
    }
}

/// Runs the leader until `shutdown` resolves.
pub async fn run(
    config: LeaderConfig,
    pg_listener: TcpListener,
    grpc_listener: TcpListener,
    flight_sql_listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    // Only this OS user may enter it (a data dir made before this rule included).
    std::fs::set_permissions(
        &config.data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let store_url = match &config.store_url {
        Some(u) => u.clone(),
        None => blueshift_common::store::file_url(&config.data_dir.join("store"))?,
    };
    let catalog = Arc::new(Catalog::open(
        &config.data_dir.join("catalog"),
        config.slices,
        &config.replica,
    )?);
    let membership = Arc::new(Membership::new(store_url.clone(), &config.s3));
    // The cluster port serves the other replicas' raft messages (and compute nodes'
    // registrations) before the catalog is ready: a new group elects its leader over it.
    let grpc_addr = grpc_listener.local_addr()?;
    // Only members of the cluster (with its secret) reach the services.
    let grpc = tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(
            blueshift_common::cluster_auth::check,
        ))
        .add_service(
            ClusterServer::new(ClusterService {
                membership: membership.clone(),
                catalog: catalog.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServer::new(catalog.raft_service())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming(blueshift_common::net::incoming_nodelay(grpc_listener));
    let grpc_task = tokio::spawn(grpc);
    // /health and /ready answer from the start (not ready until the catalog is).
    let health = Arc::new(http::Health {
        catalog: catalog.clone(),
        membership: membership.clone(),
        expect_nodes: config.expect_nodes,
        catalog_loaded: std::sync::atomic::AtomicBool::new(false),
    });
    let http_addr = match &http_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let http_task = http_listener.map(|l| tokio::spawn(http::serve(l, health.clone())));
    catalog.wait_ready().await?;
    health
        .catalog_loaded
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Temporary tables whose sessions a stop or crash of this replica ended.
    let prefix = session::tx::temp_schema_prefix(config.replica.node_id);
    let temporary: Vec<u64> = catalog
        .snapshot()
        .tables
        .values()
        .filter(|t| t.temporary && t.schema.starts_with(&prefix))
        .map(|t| t.id)
        .collect();
    for id in temporary {
        catalog
            .execute(|s| {
                s.drop_command(&[id], true).ok_or_else(|| {
                    error::Error::sql(
                        blueshift_common::error::sqlstate::UNDEFINED_TABLE,
                        "temporary table is gone",
                    )
                })
            })
            .await?;
    }
    let pg_catalog = pg_catalog::PgCatalog::new(
        catalog.clone(),
        role_source(config.users.clone(), catalog.clone()),
    )?;

    let store = blueshift_common::store::SegmentStore::open(&store_url, &config.s3)?;
    {
        // Exchange readers report unreachable nodes so the next query avoids them.
        let membership = membership.clone();
        blueshift_common::exchange::set_unreachable_hook(Box::new(move |addr| {
            membership.suspect(addr)
        }));
    }
    let runtime = planner::leader_runtime(&store)?;
    let pins = Arc::new(gc::Pins::default());
    let gc = Arc::new(gc::Gc::new(
        store,
        catalog.clone(),
        pins.clone(),
        config.gc_grace,
    ));
    let leader = Arc::new(LeaderState {
        catalog,
        pg_catalog,
        membership: membership.clone(),
        scheduler: Arc::new(Scheduler {
            channels: blueshift_common::exchange::Channels::global(),
            membership: membership.clone(),
        }),
        runtime,
        query_memory_limit: config.query_memory_limit,
        load_errors: Default::default(),
        retries: Default::default(),
        pins,
        gc: gc.clone(),
        users: config.users.clone(),
        database: config.database.clone(),
        trust_loopback: config.trust_loopback,
        md5_auth: config.md5_auth,
        flight_sql_token_ttl: config.flight_sql_token_ttl,
        max_connections: config.max_connections,
        sessions: Default::default(),
        auth_throttle: auth::throttle::Throttle::new(config.auth_failure_limit),
        identity: Default::default(),
        file_access: load::access::FileAccess::new(&config.allowed_paths, &{
            let mut denied = config.denied_paths.clone();
            denied.push(config.data_dir.clone());
            denied
        }),
    });
    let pg_addr = pg_listener.local_addr()?;
    let flight_sql_addr = flight_sql_listener.local_addr()?;

    // Sweep a few times per grace period (at least every second, at most every minute).
    let gc_interval = (config.gc_grace / 3).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let gc_task = tokio::spawn(gc.run(gc_interval));
    let tls = tls::acceptor(&tls::files(config.tls.clone(), &config.data_dir)?)?;
    let pg_task = tokio::spawn(pgwire::serve(leader.clone(), pg_listener, Some(tls)));
    let flight_sql_task = {
        let leader = leader.clone();
        tokio::spawn(async move {
            if let Err(e) = flight_sql::serve(leader, flight_sql_listener).await {
                tracing::error!(error = %e.user_message(), "Flight SQL endpoint stopped");
            }
        })
    };
    tracing::info!(%pg_addr, %grpc_addr, slices = leader.catalog.snapshot().slices, "leader listening");

    let ready_leader = leader.clone();
    let ready_task = tokio::spawn(async move {
        while ready_leader.membership.live_nodes().len() < config.expect_nodes {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(password) = &config.initial_password {
            set_initial_password(&ready_leader, &password.0).await;
        } else if !config.trust_loopback
            && !ready_leader
                .catalog
                .snapshot()
                .users
                .values()
                .any(|u| u.has_password())
        {
            tracing::warn!(
                "nobody can log in: no user has a password, there is no initial password \
                 (--initial-password-file / BLUESHIFT_INITIAL_PASSWORD) and password-less \
                 logins from loopback are off (--trust-loopback)"
            );
        }
        if config.demo {
            let executor = session::Executor {
                leader: ready_leader.clone(),
            };
            tracing::info!(
                "loading the TPC-H demo data set (scale factor {})",
                demo::DEMO_SCALE_FACTOR
            );
            if let Err(e) = demo::load_demo(&executor).await {
                tracing::error!(error = %e.user_message(), "demo load failed");
            }
        }
        if let Some(path) = &config.ready_file {
            let body = serde_json::json!({
                "pg_port": pg_addr.port(),
                "grpc_port": grpc_addr.port(),
                "flight_sql_port": flight_sql_addr.port(),
                "http_port": http_addr.map(|a| a.port()),
            });
            let tmp = path.with_extension("tmp");
            if let Err(e) =
                std::fs::write(&tmp, body.to_string()).and_then(|_| std::fs::rename(&tmp, path))
            {
                tracing::error!(error = %e, "cannot write the ready file");
            }
        }
        tracing::info!(%pg_addr, "cluster ready");
    });

    shutdown.await;
    ready_task.abort();
    pg_task.abort();
    flight_sql_task.abort();
    grpc_task.abort();
    if let Some(t) = http_task {
        t.abort();
    }
    gc_task.abort();
    leader.catalog.stop();
    Ok(())
}
