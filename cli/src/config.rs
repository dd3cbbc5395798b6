//! Settings for `blueshift leader` and `blueshift compute`. Precedence: a TOML file
//! (`--config`) < `BLUESHIFT_*` environment variables < flags. `deploy/blueshift.toml` is a
//! commented example.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use blueshift_common::store::S3Options;
use blueshift_compute::ComputeConfig;
use blueshift_leader::LeaderConfig;
use clap::Args;
use serde::Deserialize;
use tokio::net::TcpListener;

#[derive(Args, Debug, Default)]
pub struct LeaderArgs {
    /// TOML config file (its `[leader]` table).
    #[arg(long, env = "BLUESHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the catalog (and, by default, the segment store).
    #[arg(long, env = "BLUESHIFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL protocol listen address [default: 0.0.0.0:5439].
    #[arg(long, env = "BLUESHIFT_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,
    /// Arrow Flight SQL listen address [default: 0.0.0.0:8815].
    #[arg(long, env = "BLUESHIFT_FLIGHT_SQL_LISTEN")]
    pub flight_sql_listen: Option<SocketAddr>,
    /// gRPC listen address for compute nodes [default: 0.0.0.0:5440].
    #[arg(long, env = "BLUESHIFT_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// HTTP admin endpoint (`/health`, `/ready`) listen address [default: 0.0.0.0:8080].
    #[arg(long, env = "BLUESHIFT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Slices of a new cluster (compute nodes x slices per node) [default: 4].
    #[arg(long, env = "BLUESHIFT_SLICES")]
    pub slices: Option<u32>,
    /// Segment store URL: file:///abs/dir or s3://bucket/prefix
    /// [default: file://<data-dir>/store].
    #[arg(long, env = "BLUESHIFT_STORE_URL")]
    pub store_url: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Report ready only once this many compute nodes have joined.
    #[arg(long, env = "BLUESHIFT_EXPECT_NODES")]
    pub expect_nodes: Option<usize>,
    /// Memory one query may use on each compute node, e.g. `2GB` (0: no limit)
    /// [default: 4GB]. Sessions change it with `SET query_memory_limit`.
    #[arg(long, env = "BLUESHIFT_QUERY_MEMORY_LIMIT")]
    pub query_memory_limit: Option<String>,
    /// TLS certificate (PEM) for the PostgreSQL port [default: a self-signed one generated
    /// in <data-dir>/tls on first start]. Needs --tls-key.
    #[arg(long, env = "BLUESHIFT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "BLUESHIFT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds an unreferenced segment file (of a dropped table or a failed load) stays in
    /// the store before garbage collection deletes it [default: 600].
    #[arg(long, env = "BLUESHIFT_GC_GRACE_SECS")]
    pub gc_grace_secs: Option<u64>,
    /// This replica's id in its group of leader replicas [default: 1].
    #[arg(long, env = "BLUESHIFT_NODE_ID")]
    pub node_id: Option<u64>,
    /// Every replica of a new leader group, this one included, as id=host:port of their
    /// cluster (gRPC) ports, e.g. `1=10.0.0.1:5440,2=10.0.0.2:5440,3=10.0.0.3:5440`
    /// [default: this replica alone].
    #[arg(long, env = "BLUESHIFT_PEERS", conflicts_with = "join")]
    pub peers: Option<String>,
    /// Join an existing group of leader replicas: the cluster (gRPC) address of one or more
    /// of its replicas, comma-separated. This replica (with an empty data dir and an id no
    /// replica has) is added once it has caught up. Needs --advertise-address unless
    /// --grpc-listen names a reachable IP.
    #[arg(long, env = "BLUESHIFT_JOIN")]
    pub join: Option<String>,
    /// host:port at which the other leader replicas reach this one's cluster port
    /// [default: its --peers entry, else --grpc-listen].
    #[arg(long, env = "BLUESHIFT_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// File holding the cluster secret every leader replica and compute node shares (at least
    /// 16 bytes; internal calls carry proof of it, see ARCHITECTURE.md). The secret itself
    /// may instead come in BLUESHIFT_CLUSTER_SECRET. One of the two is required.
    #[arg(long, env = "BLUESHIFT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Directories whose files a superuser's `COPY t FROM '/path'` may read, comma-separated
    /// [default: none: COPY reads server files not at all; COPY FROM STDIN always works].
    #[arg(long, env = "BLUESHIFT_ALLOWED_PATHS", value_delimiter = ',')]
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// Directories COPY may never read, even under --allowed-paths, comma-separated (the
    /// data dir always is one).
    #[arg(long, env = "BLUESHIFT_DENIED_PATHS", value_delimiter = ',')]
    pub denied_paths: Option<Vec<PathBuf>>,
    /// Allow MD5 password authentication (Redshift's drivers use it) for users whose
    /// password was set with `password_encryption = 'md5'` or given as `'md5...'`; `false`
    /// turns MD5 off altogether: SCRAM-SHA-256 only [default: true].
    #[arg(long, env = "BLUESHIFT_MD5_AUTH")]
    pub md5_auth: Option<bool>,
    /// Seconds a Flight SQL bearer token lives; a password change or DROP USER revokes it
    /// sooner [default: 3600].
    #[arg(long, env = "BLUESHIFT_FLIGHT_SQL_TOKEN_TTL_SECS")]
    pub flight_sql_token_ttl_secs: Option<u64>,
    /// Sessions the PostgreSQL port takes at once; superusers have 3 more [default: 500].
    #[arg(long, env = "BLUESHIFT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Let the built-in user `blueshift` log in without a password from loopback while it has
    /// none. Only on a machine of your own: anything that connects from 127.0.0.1 or ::1, a
    /// proxy on the same host relaying remote clients included, is let in. `blueshift local`
    /// sets it; without it, bootstrap with --initial-password-file.
    #[arg(long, env = "BLUESHIFT_TRUST_LOOPBACK")]
    pub trust_loopback: bool,
    /// File holding the password the built-in superuser `blueshift` gets on start while it
    /// has none (or the password itself in BLUESHIFT_INITIAL_PASSWORD).
    #[arg(long, env = "BLUESHIFT_INITIAL_PASSWORD_FILE")]
    pub initial_password_file: Option<PathBuf>,
    /// Failed logins an address may have per minute before its logins are refused for the
    /// rest of the minute; 0: no limit [default: 20].
    #[arg(long, env = "BLUESHIFT_AUTH_FAILURE_LIMIT")]
    pub auth_failure_limit: Option<u32>,
    /// Load the TPC-H SF 0.1 demo data set once ready (if not loaded yet).
    #[arg(long)]
    pub demo: bool,
    /// Write `{"pg_port":..,"grpc_port":..}` here once the cluster is ready.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Write the bound ports here as soon as the listeners are open.
    #[arg(long)]
    pub ports_file: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub config_check: bool,
}

#[derive(Args, Debug, Default)]
pub struct ComputeArgs {
    /// TOML config file (its `[compute]` table).
    #[arg(long, env = "BLUESHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The leader's gRPC address, e.g. http://10.0.0.1:5440; with leader replicas, all of
    /// theirs, comma-separated.
    #[arg(long, env = "BLUESHIFT_LEADER")]
    pub leader: Option<String>,
    /// Working directory of this node.
    #[arg(long, env = "BLUESHIFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Arrow Flight listen address [default: 0.0.0.0:5441].
    #[arg(long, env = "BLUESHIFT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host name the leader and peers use to reach this node [default: the --listen IP, or
    /// if that is 0.0.0.0 this host's address on the route to the leader].
    #[arg(long, env = "BLUESHIFT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// File holding the cluster secret every leader replica and compute node shares (at least
    /// 16 bytes; internal calls carry proof of it, see ARCHITECTURE.md). The secret itself
    /// may instead come in BLUESHIFT_CLUSTER_SECRET. One of the two is required.
    #[arg(long, env = "BLUESHIFT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Bytes of segment files kept in <data-dir>/cache, e.g. `20GB` [default: 10% of the
    /// disk under the data dir, at least 1GB].
    #[arg(long, env = "BLUESHIFT_CACHE_SIZE")]
    pub cache_size: Option<String>,
    /// On SIGTERM the node drains: it takes no new work, finishes what runs, leaves the
    /// cluster and exits 0. After this many seconds it exits anyway [default: 300]. A second
    /// SIGTERM / Ctrl-C stops it at once.
    #[arg(long, env = "BLUESHIFT_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub config_check: bool,
}

/// Settings of an `s3://` segment store. Each one left unset comes from the config file's
/// `s3` table, then from the standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`). Credentials are read only from the file or the environment, never
/// from flags (which other users of the machine can see).
#[derive(Args, Debug, Default, Clone)]
pub struct S3Args {
    /// S3 endpoint, e.g. http://10.0.0.5:9000 for an S3-compatible server.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Allow an http:// S3 endpoint.
    #[arg(long)]
    pub s3_allow_http: bool,
    /// Virtual-hosted-style requests (bucket.host) instead of path-style (host/bucket).
    #[arg(long)]
    pub s3_virtual_hosted_style: bool,
}

impl S3Args {
    /// These flags over the file's `s3` table.
    pub fn over(&self, file: S3Options) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http.then_some(true),
            virtual_hosted_style: self.s3_virtual_hosted_style.then_some(true),
            ..Default::default()
        }
        .or(&file)
    }

    /// The same flags, for a child process (`blueshift local`).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = &self.s3_endpoint {
            out.extend(["--s3-endpoint".to_string(), v.clone()]);
        }
        if let Some(v) = &self.s3_region {
            out.extend(["--s3-region".to_string(), v.clone()]);
        }
        if self.s3_allow_http {
            out.push("--s3-allow-http".to_string());
        }
        if self.s3_virtual_hosted_style {
            out.push("--s3-virtual-hosted-style".to_string());
        }
        out
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    leader: LeaderFile,
    #[serde(default)]
    compute: ComputeFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct LeaderFile {
    data_dir: Option<PathBuf>,
    pg_listen: Option<SocketAddr>,
    flight_sql_listen: Option<SocketAddr>,
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    slices: Option<u32>,
    store_url: Option<String>,
    #[serde(default)]
    s3: S3Options,
    expect_nodes: Option<usize>,
    query_memory_limit: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    gc_grace_secs: Option<u64>,
    node_id: Option<u64>,
    peers: Option<String>,
    join: Option<String>,
    advertise_address: Option<String>,
    allowed_paths: Option<Vec<PathBuf>>,
    denied_paths: Option<Vec<PathBuf>>,
    md5_auth: Option<bool>,
    flight_sql_token_ttl_secs: Option<u64>,
    max_connections: Option<usize>,
    auth_failure_limit: Option<u32>,
    trust_loopback: Option<bool>,
    initial_password_file: Option<PathBuf>,
    cluster_secret_file: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ComputeFile {
    leader: Option<String>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    advertise_host: Option<String>,
    cache_size: Option<String>,
    drain_timeout_secs: Option<u64>,
    #[serde(default)]
    s3: S3Options,
    cluster_secret_file: Option<PathBuf>,
}

fn read_file(path: &Option<PathBuf>) -> anyhow::Result<FileConfig> {
    match path {
        None => Ok(FileConfig::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        }
    }
}

/// Which replica this leader is and how it finds its group: a new group (`peers`), an
/// existing one (`join`), or a group of one.
fn replica_config(
    node_id: u64,
    peers: Option<String>,
    join: Option<String>,
    advertise: Option<String>,
    grpc_listen: SocketAddr,
) -> anyhow::Result<blueshift_leader::replica::ReplicaConfig> {
    use blueshift_leader::replica::ReplicaConfig;
    let listen_address = (!grpc_listen.ip().is_unspecified()).then(|| grpc_listen.to_string());
    match (peers, join) {
        (Some(_), Some(_)) => anyhow::bail!("peers and join exclude each other"),
        (Some(text), None) => {
            let mut peers = ReplicaConfig::parse_peers(&text)
                .map_err(|e| anyhow::anyhow!("peers: {}", e.user_message()))?;
            if !peers.contains_key(&node_id) {
                anyhow::bail!("peers must list this replica's own id {node_id}");
            }
            if let Some(own) = advertise {
                peers.insert(node_id, own);
            }
            Ok(ReplicaConfig {
                node_id,
                peers,
                join: Vec::new(),
            })
        }
        (None, Some(text)) => {
            let join: Vec<String> = text
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            if join.is_empty() {
                anyhow::bail!("join needs the address of at least one leader replica");
            }
            let own = advertise.or(listen_address).ok_or_else(|| {
                anyhow::anyhow!(
                    "a joining replica needs --advertise-address (host:port of its cluster \
                     port as the other replicas reach it): --grpc-listen is {grpc_listen}"
                )
            })?;
            Ok(ReplicaConfig {
                node_id,
                peers: [(node_id, own)].into(),
                join,
            })
        }
        (None, None) => Ok(ReplicaConfig {
            node_id,
            // Replicas joining this one later reach it here.
            peers: [(
                node_id,
                advertise
                    .or(listen_address)
                    .unwrap_or_else(|| grpc_listen.to_string()),
            )]
            .into(),
            join: Vec::new(),
        }),
    }
}

pub async fn run_leader(args: LeaderArgs) -> anyhow::Result<()> {
    blueshift_common::logging::init("leader");
    let file = read_file(&args.config)?.leader;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(crate::default_data_dir);
    let pg_listen = args
        .pg_listen
        .or(file.pg_listen)
        .unwrap_or(([0, 0, 0, 0], 5439).into());
    let grpc_listen = args
        .grpc_listen
        .or(file.grpc_listen)
        .unwrap_or(([0, 0, 0, 0], 5440).into());
    let flight_sql_listen = args
        .flight_sql_listen
        .or(file.flight_sql_listen)
        .unwrap_or(([0, 0, 0, 0], 8815).into());
    let http_listen = args
        .http_listen
        .or(file.http_listen)
        .unwrap_or(([0, 0, 0, 0], 8080).into());
    let slices = args.slices.or(file.slices).unwrap_or(4);
    if slices == 0 {
        anyhow::bail!("slices must be at least 1");
    }
    let query_memory_limit = match args.query_memory_limit.or(file.query_memory_limit) {
        Some(v) => blueshift_leader::limits::parse_bytes(&v)
            .map_err(|e| anyhow::anyhow!("query_memory_limit: {}", e.user_message()))?,
        None => blueshift_leader::limits::DEFAULT_QUERY_MEMORY_LIMIT,
    };
    let node_id = args.node_id.or(file.node_id).unwrap_or(1);
    if node_id == 0 {
        anyhow::bail!("node_id must be a number > 0");
    }
    let peers = args.peers.or(file.peers);
    let join = args.join.or(file.join);
    let advertise = args.advertise_address.or(file.advertise_address);
    let replica = replica_config(
        node_id,
        peers.clone(),
        join.clone(),
        advertise.clone(),
        grpc_listen,
    )?;
    let allowed_paths = args
        .allowed_paths
        .or(file.allowed_paths)
        .unwrap_or_default();
    if let Some(p) = allowed_paths.iter().find(|p| !p.is_absolute()) {
        anyhow::bail!("allowed_paths must be absolute: {}", p.display());
    }
    let config = LeaderConfig {
        allowed_paths,
        denied_paths: args.denied_paths.or(file.denied_paths).unwrap_or_default(),
        md5_auth: args.md5_auth.or(file.md5_auth).unwrap_or(true),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(blueshift_leader::pgwire::sessions::DEFAULT_MAX_CONNECTIONS),
        auth_failure_limit: args
            .auth_failure_limit
            .or(file.auth_failure_limit)
            .unwrap_or(blueshift_leader::auth::throttle::DEFAULT_LIMIT),
        flight_sql_token_ttl: std::time::Duration::from_secs(
            args.flight_sql_token_ttl_secs
                .or(file.flight_sql_token_ttl_secs)
                .unwrap_or(3600)
                .max(1),
        ),
        replica,
        data_dir,
        query_memory_limit,
        slices,
        store_url: args.store_url.or(file.store_url),
        s3: args.s3.over(file.s3),
        gc_grace: args
            .gc_grace_secs
            .or(file.gc_grace_secs)
            .map(std::time::Duration::from_secs)
            .unwrap_or(blueshift_leader::gc::DEFAULT_GRACE),
        expect_nodes: args.expect_nodes.or(file.expect_nodes).unwrap_or(0),
        users: vec!["blueshift".to_string()],
        database: "dev".to_string(),
        trust_loopback: args.trust_loopback || file.trust_loopback.unwrap_or(false),
        initial_password: initial_password(
            args.initial_password_file
                .clone()
                .or(file.initial_password_file.clone()),
        )?,
        demo: args.demo,
        ready_file: args.ready_file,
        tls: match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key go together"),
        },
    };
    install_cluster_secret(args.cluster_secret_file.or(file.cluster_secret_file))?;
    if args.config_check {
        println!("{config:#?}");
        return Ok(());
    }
    let pg = TcpListener::bind(pg_listen)
        .await
        .with_context(|| format!("cannot listen for PostgreSQL clients on {pg_listen}"))?;
    let grpc = TcpListener::bind(grpc_listen)
        .await
        .with_context(|| format!("cannot listen for compute nodes on {grpc_listen}"))?;
    let mut config = config;
    if grpc_listen.port() == 0 {
        // Peers reach this replica at the port it got.
        config.replica = replica_config(node_id, peers, join, advertise, grpc.local_addr()?)?;
    }
    let flight_sql = TcpListener::bind(flight_sql_listen)
        .await
        .with_context(|| format!("cannot listen for Flight SQL clients on {flight_sql_listen}"))?;
    let http = TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP (/health, /ready) on {http_listen}"))?;
    if let Some(path) = &args.ports_file {
        let body = serde_json::json!({
            "pg_port": pg.local_addr()?.port(),
            "grpc_port": grpc.local_addr()?.port(),
            "flight_sql_port": flight_sql.local_addr()?.port(),
            "http_port": http.local_addr()?.port(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    blueshift_leader::run(
        config,
        pg,
        grpc,
        flight_sql,
        Some(http),
        crate::shutdown_signal(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.user_message()))
}

pub async fn run_compute(args: ComputeArgs) -> anyhow::Result<()> {
    // Listened to from the start: a SIGTERM during start-up drains the node once it runs.
    let mut signals = crate::Signals::listen();
    blueshift_common::logging::init("compute");
    let file = read_file(&args.config)?.compute;
    install_cluster_secret(
        args.cluster_secret_file
            .clone()
            .or(file.cluster_secret_file.clone()),
    )?;
    let leader = args
        .leader
        .or(file.leader)
        .context("--leader (or BLUESHIFT_LEADER) is required, e.g. http://127.0.0.1:5440")?;
    let leader = if leader.contains("://") {
        leader
    } else {
        format!("http://{leader}")
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or(([0, 0, 0, 0], 5441).into());
    let cache_bytes = match args.cache_size.or(file.cache_size) {
        Some(v) => Some(
            blueshift_leader::limits::parse_size("cache_size", &v)
                .map_err(|e| anyhow::anyhow!(e.user_message()))?,
        ),
        None => None,
    };
    let config = ComputeConfig {
        cache_bytes,
        s3: args.s3.over(file.s3),
        leader,
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./blueshift-compute")),
        advertise_host: args.advertise_host.or(file.advertise_host),
        drain_timeout: Duration::from_secs(
            args.drain_timeout_secs
                .or(file.drain_timeout_secs)
                .unwrap_or(300),
        ),
    };
    if args.config_check {
        println!("{config:#?}");
        return Ok(());
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for Arrow Flight on {listen}"))?;
    // The first signal drains the node; a second one stops it at once (exit status 1).
    // Both are counted by one task, registered before the node starts, so none is lost.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    let counter = tokio::spawn(async move {
        signals.next().await;
        let _ = first_tx.send(());
        signals.next().await;
        let _ = second_tx.send(());
    });
    let drained = async move {
        let _ = first_rx.await;
    };
    let result = tokio::select! {
        r = blueshift_compute::run(config, listener, drained) => {
            r.map_err(|e| anyhow::anyhow!(e.to_string()))
        }
        Ok(()) = second_rx => Err(anyhow::anyhow!("stopped while draining (second signal)")),
    };
    counter.abort();
    result
}

/// Installs the cluster secret ([`blueshift_common::cluster_auth`]): from `file` when given,
/// else from `BLUESHIFT_CLUSTER_SECRET`. Without one the process would take no internal
/// calls and make none that are taken: it does not start.
fn install_cluster_secret(file: Option<PathBuf>) -> anyhow::Result<()> {
    let secret = match file {
        Some(path) => {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read the cluster secret {}", path.display()))?;
            if let Ok(meta) = std::fs::metadata(&path) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        "the cluster secret file is readable by other OS users (chmod 600 it)"
                    );
                }
            }
            bytes
        }
        None => match std::env::var("BLUESHIFT_CLUSTER_SECRET") {
            Ok(v) if !v.is_empty() => v.into_bytes(),
            _ => anyhow::bail!(
                "a cluster secret is required: --cluster-secret-file PATH (or \
                 BLUESHIFT_CLUSTER_SECRET_FILE, or cluster_secret_file in the config file) or \
                 the secret itself in BLUESHIFT_CLUSTER_SECRET; at least 16 bytes, the same on \
                 every leader replica and compute node (`blueshift local` makes one)"
            ),
        },
    };
    blueshift_common::cluster_auth::install(&secret).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The built-in user's initial password: from `file` when given, else from
/// `BLUESHIFT_INITIAL_PASSWORD`.
fn initial_password(
    file: Option<PathBuf>,
) -> anyhow::Result<Option<blueshift_leader::InitialPassword>> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read the initial password file {}", path.display())
            })?;
            Some(text.trim().to_string())
        }
        None => std::env::var("BLUESHIFT_INITIAL_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
    };
    Ok(password.map(blueshift_leader::InitialPassword))
}
