//! `blueshift local`: a whole cluster on this machine. It starts the leader (or, with
//! `--leaders 3`, a group of leader replicas) and N compute nodes as separate OS processes
//! on loopback (the same binary, `leader` / `compute` subcommands), waits until every node
//! has joined, prints how to connect, and stops them all on Ctrl-C / SIGTERM (compute nodes
//! first: they drain, then the leaders). A process that dies is restarted, except a compute
//! node that exits 0: it was drained (`kill -TERM <pid>`) and left the cluster on purpose.
//! Layout under `--data-dir`: `leader/` (replica 1's catalog), `leader-<n>/` (replica n's),
//! `store/` (segments, shared by all nodes), `compute-<i>/` (node identity).
//!
//! Replica `n` (from 1) listens for PostgreSQL clients on `--pg-port + 10 (n - 1)` and for
//! Flight SQL on `--flight-sql-port + 10 (n - 1)` (5439, 5449, 5459: libpq's multi-host
//! connection strings try the next one when one is down); raft and compute nodes use a
//! cluster port chosen free at start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::process::{Child, Command};

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Number of leader replicas (1, 3 or 5): more than one replicate the catalog with raft,
    /// so the cluster survives the loss of a minority of them.
    #[arg(long, default_value_t = 1)]
    pub leaders: usize,
    /// Number of compute nodes.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Slices per compute node (fixed when the data dir is first created).
    #[arg(long, default_value_t = 2)]
    pub slices_per_node: u32,
    /// Where the cluster keeps its catalog and data.
    #[arg(long, default_value = "./blueshift-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL protocol port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 5439)]
    pub pg_port: u16,
    /// Arrow Flight SQL port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8815)]
    pub flight_sql_port: u16,
    /// HTTP admin port (`/health`, `/ready`) on 127.0.0.1 (0: any free port) [default:
    /// 8080, or any free port when --pg-port is 0].
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Load the TPC-H SF 0.1 sample (once; skipped when already loaded).
    #[arg(long)]
    pub demo: bool,
    /// Write `{"pg_port":..,"grpc_port":..}` here once the cluster is ready.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Segment store shared by the nodes, e.g. s3://bucket/prefix (credentials from the
    /// AWS_* environment) [default: the embedded store, file://<data-dir>/store].
    #[arg(long, env = "BLUESHIFT_STORE_URL")]
    pub store_url: Option<String>,
    #[command(flatten)]
    pub s3: crate::config::S3Args,
    /// Seconds an unreferenced segment stays in the store before GC deletes it
    /// [default: 600].
    #[arg(long)]
    pub gc_grace_secs: Option<u64>,
    /// Segment cache size of each compute node, e.g. `2GB` [default: 10% of the disk, at
    /// least 1GB].
    #[arg(long)]
    pub cache_size: Option<String>,
    /// Directories whose files a superuser's `COPY t FROM '/path'` may read, comma-separated
    /// [default: the working directory and the system temp dir; never the data dir].
    #[arg(long, value_delimiter = ',')]
    pub allowed_paths: Option<Vec<PathBuf>>,
}

impl LocalArgs {
    /// `--allowed-paths` for the leaders: as given (made absolute), or the working
    /// directory and the system temp dir.
    fn allowed_paths(&self) -> anyhow::Result<String> {
        let cwd = std::env::current_dir().context("the working directory")?;
        let paths = match &self.allowed_paths {
            Some(p) => p.iter().map(|p| cwd.join(p)).collect(),
            None => vec![cwd, std::env::temp_dir()],
        };
        Ok(paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","))
    }
}

struct Children {
    /// The leader replicas first (`leaders` of them), then the compute nodes.
    procs: Vec<(String, Child)>,
    leaders: usize,
}

impl Children {
    /// Stops the compute nodes first (each drains while the leaders can still answer it),
    /// then the leaders.
    async fn stop(&mut self) {
        let first = self.procs.len().min(self.leaders);
        let (leaders, compute) = self.procs.split_at_mut(first);
        stop_all(compute).await;
        stop_all(leaders).await;
    }
}

/// SIGTERM to every process, then up to 10 s for each to exit before SIGKILL.
async fn stop_all(procs: &mut [(String, Child)]) {
    for (_, c) in procs.iter() {
        if let Some(pid) = c.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for (name, c) in procs.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("blueshift: {name} did not stop in 10 s; killing it");
                let _ = c.kill().await;
            }
        }
    }
}

async fn wait_for_file(
    path: &Path,
    children: &mut Children,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return Ok(v);
        }
        for (name, c) in &mut children.procs {
            if let Ok(Some(status)) = c.try_wait() {
                anyhow::bail!("{name} exited during start-up ({status})");
            }
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "the cluster did not become ready within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One leader replica of a local cluster: how to start it (again).
struct LeaderPlan {
    id: usize,
    data_dir: PathBuf,
    pg_port: u16,
    flight_sql_port: u16,
    grpc_port: u16,
    http_port: u16,
    ready_file: PathBuf,
}

/// A free port on loopback (bound and released: the replicas must know each other's
/// cluster ports before any of them starts).
fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(socket.local_addr()?.port())
}

/// `base + 10 (n - 1)` for replica `n`, or any free port when `base` is 0.
fn replica_port(base: u16, n: usize) -> anyhow::Result<u16> {
    if base == 0 {
        return free_port();
    }
    u16::try_from(usize::from(base) + 10 * (n - 1)).context("port out of range")
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.slices_per_node == 0 {
        anyhow::bail!("--nodes and --slices-per-node must be at least 1");
    }
    if !(1..=9).contains(&args.leaders) || args.leaders.is_multiple_of(2) {
        anyhow::bail!("--leaders must be 1, 3, 5, 7 or 9 (an odd number: raft needs a majority)");
    }
    let exe = std::env::current_exe().context("cannot find the blueshift executable")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    std::fs::set_permissions(
        &data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("cannot restrict {} to its owner", data_dir.display()))?;
    ensure_cluster_secret(&data_dir)?;
    let store_url = match &args.store_url {
        Some(url) => url.clone(),
        None => blueshift_common::store::file_url(&data_dir.join("store"))
            .map_err(|e| anyhow::anyhow!(e.user_message()))?,
    };
    let mut plans = Vec::new();
    for id in 1..=args.leaders {
        let ready_file = data_dir.join(format!("leader-{id}.ready"));
        let _ = std::fs::remove_file(&ready_file);
        plans.push(LeaderPlan {
            id,
            data_dir: if id == 1 {
                data_dir.join("leader")
            } else {
                data_dir.join(format!("leader-{id}"))
            },
            pg_port: replica_port(args.pg_port, id)?,
            flight_sql_port: replica_port(args.flight_sql_port, id)?,
            grpc_port: free_port()?,
            http_port: replica_port(
                args.http_port
                    .unwrap_or(if args.pg_port == 0 { 0 } else { 8080 }),
                id,
            )?,
            ready_file,
        });
    }
    let peers: Vec<String> = plans
        .iter()
        .map(|p| format!("{}=127.0.0.1:{}", p.id, p.grpc_port))
        .collect();
    let peers = peers.join(",");
    let leader_addrs: Vec<String> = plans
        .iter()
        .map(|p| format!("http://127.0.0.1:{}", p.grpc_port))
        .collect();
    let leader_addrs = leader_addrs.join(",");

    let mut children = Children {
        procs: Vec::new(),
        leaders: args.leaders,
    };
    for plan in &plans {
        match spawn_leader(&exe, plan, &peers, &store_url, &args) {
            Ok(child) => children.procs.push((leader_name(plan, &args), child)),
            Err(e) => {
                children.stop().await;
                return Err(e);
            }
        }
    }

    let result = async {
        for i in 0..args.nodes {
            let child = spawn_compute(&exe, &leader_addrs, &data_dir, i, &args)?;
            children.procs.push((format!("compute-{i}"), child));
        }
        let mut readies = Vec::new();
        for plan in &plans {
            // The demo load happens before the leader reports ready, so allow for it.
            readies.push(
                wait_for_file(&plan.ready_file, &mut children, Duration::from_secs(1800)).await?,
            );
        }
        let pg_ports: Vec<u64> = readies
            .iter()
            .map(|r| r["pg_port"].as_u64().unwrap_or(0))
            .collect();
        let flight_sql_ports: Vec<u64> = readies
            .iter()
            .map(|r| r["flight_sql_port"].as_u64().unwrap_or(0))
            .collect();
        if let Some(path) = &args.ready_file {
            let body = serde_json::json!({
                "pg_port": pg_ports[0],
                "grpc_port": plans[0].grpc_port,
                "flight_sql_port": flight_sql_ports[0],
                "pg_ports": pg_ports,
                "grpc_ports": plans.iter().map(|p| p.grpc_port).collect::<Vec<_>>(),
                "flight_sql_ports": flight_sql_ports,
                "http_port": plans[0].http_port,
                "http_ports": plans.iter().map(|p| p.http_port).collect::<Vec<_>>(),
            });
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, body.to_string())?;
            std::fs::rename(&tmp, path)?;
        }
        let leaders = if args.leaders == 1 {
            "1 leader".to_string()
        } else {
            format!("{} leader replicas", args.leaders)
        };
        println!(
            "Blueshift is running: {leaders} + {} compute nodes, {} slices per node (data in {}).",
            args.nodes,
            args.slices_per_node,
            data_dir.display()
        );
        if args.leaders == 1 {
            println!(
                "  connect:  psql -h 127.0.0.1 -p {} -U blueshift -d dev",
                pg_ports[0]
            );
        } else {
            let hosts = vec!["127.0.0.1"; args.leaders].join(",");
            let ports: Vec<String> = pg_ports.iter().map(u64::to_string).collect();
            println!(
                "  connect:  psql \"host={hosts} port={} user=blueshift dbname=dev\"",
                ports.join(",")
            );
        }
        let flight: Vec<String> = flight_sql_ports
            .iter()
            .map(|p| format!("grpc://127.0.0.1:{p}"))
            .collect();
        let ready: Vec<String> = plans
            .iter()
            .map(|p| format!("http://127.0.0.1:{}/ready", p.http_port))
            .collect();
        println!("  health:   {}", ready.join(", "));
        println!(
            "  Arrow Flight SQL: {}. Press Ctrl-C to stop.",
            flight.join(", ")
        );
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        children.stop().await;
        return Err(e);
    }

    let exit = tokio::select! {
        _ = crate::shutdown_signal() => None,
        name = watch(&mut children, &exe, &plans, &peers, &store_url, &leader_addrs, &data_dir, &args) => Some(name),
    };
    children.stop().await;
    match exit {
        None => {
            println!("Blueshift stopped.");
            Ok(())
        }
        Some(name) => anyhow::bail!("{name} exited unexpectedly; the cluster was stopped"),
    }
}

/// Where `local` keeps the cluster secret its processes share, unless
/// `BLUESHIFT_CLUSTER_SECRET` gives it (the children inherit that).
fn cluster_secret_file(data_dir: &Path) -> Option<PathBuf> {
    match std::env::var("BLUESHIFT_CLUSTER_SECRET") {
        Ok(v) if !v.is_empty() => None,
        _ => Some(data_dir.join("cluster.secret")),
    }
}

/// Makes the cluster secret file on first start (0600; the umask is 077 as well).
fn ensure_cluster_secret(data_dir: &Path) -> anyhow::Result<()> {
    let Some(path) = cluster_secret_file(data_dir) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(
        file,
        "{}",
        blueshift_common::cluster_auth::generate_secret()
    )?;
    file.sync_all()?;
    Ok(())
}

fn cluster_secret_args(data_dir: &Path) -> Vec<std::ffi::OsString> {
    match cluster_secret_file(data_dir) {
        Some(path) => vec!["--cluster-secret-file".into(), path.into_os_string()],
        None => Vec::new(),
    }
}

fn leader_name(plan: &LeaderPlan, args: &LocalArgs) -> String {
    if args.leaders == 1 {
        "leader".to_string()
    } else {
        format!("leader-{}", plan.id)
    }
}

fn spawn_leader(
    exe: &Path,
    plan: &LeaderPlan,
    peers: &str,
    store_url: &str,
    args: &LocalArgs,
) -> anyhow::Result<Child> {
    let mut leader = Command::new(exe);
    leader
        .arg("leader")
        .arg("--data-dir")
        .arg(&plan.data_dir)
        .arg("--pg-listen")
        .arg(format!("127.0.0.1:{}", plan.pg_port))
        .arg("--grpc-listen")
        .arg(format!("127.0.0.1:{}", plan.grpc_port))
        .arg("--flight-sql-listen")
        .arg(format!("127.0.0.1:{}", plan.flight_sql_port))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{}", plan.http_port))
        .arg("--slices")
        .arg((args.nodes as u32 * args.slices_per_node).to_string())
        .arg("--store-url")
        .arg(store_url)
        .args(args.s3.to_args())
        .arg("--expect-nodes")
        .arg(args.nodes.to_string())
        .arg("--ready-file")
        .arg(&plan.ready_file)
        .arg("--allowed-paths")
        .arg(args.allowed_paths()?)
        // The whole cluster's data (every replica's catalog, TLS key, the compute nodes).
        .arg("--denied-paths")
        .arg(std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone()))
        .args(cluster_secret_args(
            &std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone()),
        ))
        // One machine, one user: the built-in user logs in from loopback without a password
        // until it is given one.
        .arg("--trust-loopback")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if args.leaders > 1 {
        leader
            .arg("--node-id")
            .arg(plan.id.to_string())
            .arg("--peers")
            .arg(peers);
    }
    // One replica loads the demo set: the others see it through the catalog.
    if args.demo && plan.id == 1 {
        leader.arg("--demo");
    }
    if let Some(secs) = args.gc_grace_secs {
        leader.arg("--gc-grace-secs").arg(secs.to_string());
    }
    leader
        .spawn()
        .with_context(|| format!("cannot start leader replica {}", plan.id))
}

fn spawn_compute(
    exe: &Path,
    leader_addrs: &str,
    data_dir: &Path,
    i: usize,
    args: &LocalArgs,
) -> anyhow::Result<Child> {
    let mut command = Command::new(exe);
    command.arg("compute").args(args.s3.to_args());
    if let Some(size) = &args.cache_size {
        command.arg("--cache-size").arg(size);
    }
    command
        .arg("--leader")
        .arg(leader_addrs)
        .arg("--data-dir")
        .arg(data_dir.join(format!("compute-{i}")))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(cluster_secret_args(data_dir))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start compute node {i}"))
}

/// Restarts leader replicas and compute nodes that die (like a supervisor would). Resolves
/// (with its name) only when a process cannot be started again.
#[allow(clippy::too_many_arguments)]
async fn watch(
    children: &mut Children,
    exe: &Path,
    plans: &[LeaderPlan],
    peers: &str,
    store_url: &str,
    leader_addrs: &str,
    data_dir: &Path,
    args: &LocalArgs,
) -> String {
    let leaders = children.leaders;
    let mut drained = vec![false; children.procs.len()];
    loop {
        for (i, (name, c)) in children.procs.iter_mut().enumerate() {
            if drained[i] {
                continue;
            }
            if let Ok(Some(status)) = c.try_wait() {
                // procs[..leaders] are the leader replicas; procs[leaders + n] is compute-n.
                if i < leaders {
                    eprintln!("blueshift: {name} exited ({status}); restarting it");
                    match spawn_leader(exe, &plans[i], peers, store_url, args) {
                        Ok(child) => *c = child,
                        Err(e) => {
                            eprintln!("blueshift: cannot restart {name}: {e:#}");
                            return name.clone();
                        }
                    }
                    continue;
                }
                if status.success() {
                    eprintln!("blueshift: {name} drained and left the cluster; not restarting it");
                    drained[i] = true;
                    continue;
                }
                eprintln!("blueshift: {name} exited ({status}); restarting it");
                match spawn_compute(exe, leader_addrs, data_dir, i - leaders, args) {
                    Ok(child) => *c = child,
                    Err(e) => eprintln!("blueshift: cannot restart {name}: {e:#}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
