//! Settings for `blueshift leader` and `blueshift compute`. Precedence: a TOML file
//! (`--config`) < `BLUESHIFT_*` environment variables < flags. `deploy/blueshift.toml` is a
//! commented example.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
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
    /// Slices of a new cluster (compute nodes x slices per node) [default: 4].
    #[arg(long, env = "BLUESHIFT_SLICES")]
    pub slices: Option<u32>,
    /// Segment store URL [default: file://<data-dir>/store].
    #[arg(long, env = "BLUESHIFT_STORE_URL")]
    pub store_url: Option<String>,
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
    /// The leader's gRPC address, e.g. http://10.0.0.1:5440.
    #[arg(long, env = "BLUESHIFT_LEADER")]
    pub leader: Option<String>,
    /// Working directory of this node.
    #[arg(long, env = "BLUESHIFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Arrow Flight listen address [default: 0.0.0.0:5441].
    #[arg(long, env = "BLUESHIFT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host name the leader and peers use to reach this node [default: 127.0.0.1].
    #[arg(long, env = "BLUESHIFT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub config_check: bool,
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
    slices: Option<u32>,
    store_url: Option<String>,
    expect_nodes: Option<usize>,
    query_memory_limit: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ComputeFile {
    leader: Option<String>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    advertise_host: Option<String>,
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
    let slices = args.slices.or(file.slices).unwrap_or(4);
    if slices == 0 {
        anyhow::bail!("slices must be at least 1");
    }
    let query_memory_limit = match args.query_memory_limit.or(file.query_memory_limit) {
        Some(v) => blueshift_leader::limits::parse_bytes(&v)
            .map_err(|e| anyhow::anyhow!("query_memory_limit: {}", e.user_message()))?,
        None => blueshift_leader::limits::DEFAULT_QUERY_MEMORY_LIMIT,
    };
    let config = LeaderConfig {
        data_dir,
        query_memory_limit,
        slices,
        store_url: args.store_url.or(file.store_url),
        expect_nodes: args.expect_nodes.or(file.expect_nodes).unwrap_or(0),
        users: vec!["blueshift".to_string()],
        database: "dev".to_string(),
        loopback_only: true,
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
    let flight_sql = TcpListener::bind(flight_sql_listen)
        .await
        .with_context(|| format!("cannot listen for Flight SQL clients on {flight_sql_listen}"))?;
    if let Some(path) = &args.ports_file {
        let body = serde_json::json!({
            "pg_port": pg.local_addr()?.port(),
            "grpc_port": grpc.local_addr()?.port(),
            "flight_sql_port": flight_sql.local_addr()?.port(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    blueshift_leader::run(config, pg, grpc, flight_sql, crate::shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!(e.user_message()))
}

pub async fn run_compute(args: ComputeArgs) -> anyhow::Result<()> {
    blueshift_common::logging::init("compute");
    let file = read_file(&args.config)?.compute;
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
    let config = ComputeConfig {
        leader,
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./blueshift-compute")),
        advertise_host: args
            .advertise_host
            .or(file.advertise_host)
            .unwrap_or_else(|| "127.0.0.1".to_string()),
    };
    if args.config_check {
        println!("{config:#?}");
        return Ok(());
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for Arrow Flight on {listen}"))?;
    blueshift_compute::run(config, listener, crate::shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))
}
