//! `blueshift local`: a whole cluster on this machine. It starts the leader and N compute
//! nodes as separate OS processes on loopback (the same binary, `leader` / `compute`
//! subcommands), waits until every node has joined, prints how to connect, and stops them
//! all on Ctrl-C / SIGTERM (compute nodes first: they drain, then the leader). A compute node that dies is restarted, except one that exits 0:
//! it was drained (`kill -TERM <pid>`) and left the cluster on purpose. If the leader dies,
//! the whole cluster stops. Layout under `--data-dir`: `leader/` (catalog), `store/`
//! (segments, shared by all nodes), `compute-<i>/` (node identity).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::process::{Child, Command};

#[derive(Args, Debug)]
pub struct LocalArgs {
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
}

struct Children {
    procs: Vec<(String, Child)>,
}

impl Children {
    /// Stops the compute nodes first (each drains while the leader can still answer it),
    /// then the leader.
    async fn stop(&mut self) {
        let first = self.procs.len().min(1);
        let (leader, compute) = self.procs.split_at_mut(first);
        stop_all(compute).await;
        stop_all(leader).await;
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

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.slices_per_node == 0 {
        anyhow::bail!("--nodes and --slices-per-node must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the blueshift executable")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let ports_file = data_dir.join("leader.ports");
    let ready_file = data_dir.join("leader.ready");
    let _ = std::fs::remove_file(&ports_file);
    let _ = std::fs::remove_file(&ready_file);
    let store_url = match &args.store_url {
        Some(url) => url.clone(),
        None => blueshift_common::store::file_url(&data_dir.join("store"))
            .map_err(|e| anyhow::anyhow!(e.user_message()))?,
    };

    let mut children = Children { procs: Vec::new() };
    let mut leader = Command::new(&exe);
    leader
        .arg("leader")
        .arg("--data-dir")
        .arg(data_dir.join("leader"))
        .arg("--pg-listen")
        .arg(format!("127.0.0.1:{}", args.pg_port))
        .arg("--grpc-listen")
        .arg("127.0.0.1:0")
        .arg("--flight-sql-listen")
        .arg(format!("127.0.0.1:{}", args.flight_sql_port))
        .arg("--slices")
        .arg((args.nodes as u32 * args.slices_per_node).to_string())
        .arg("--store-url")
        .arg(&store_url)
        .args(args.s3.to_args())
        .arg("--expect-nodes")
        .arg(args.nodes.to_string())
        .arg("--ports-file")
        .arg(&ports_file)
        .arg("--ready-file")
        .arg(&ready_file)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if args.demo {
        leader.arg("--demo");
    }
    if let Some(secs) = args.gc_grace_secs {
        leader.arg("--gc-grace-secs").arg(secs.to_string());
    }
    children.procs.push((
        "leader".into(),
        leader.spawn().context("cannot start the leader")?,
    ));

    let result = async {
        let ports = wait_for_file(&ports_file, &mut children, Duration::from_secs(60)).await?;
        let grpc_port = ports["grpc_port"].as_u64().context("bad ports file")?;
        for i in 0..args.nodes {
            let child = spawn_compute(&exe, grpc_port, &data_dir, i, &args)?;
            children.procs.push((format!("compute-{i}"), child));
        }
        // The demo load happens before the leader reports ready, so allow for it.
        let ready = wait_for_file(&ready_file, &mut children, Duration::from_secs(1800)).await?;
        if let Some(path) = &args.ready_file {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, ready.to_string())?;
            std::fs::rename(&tmp, path)?;
        }
        let pg_port = ready["pg_port"].as_u64().unwrap_or(u64::from(args.pg_port));
        println!(
            "Blueshift is running: 1 leader + {} compute nodes, {} slices per node (data in {}).",
            args.nodes,
            args.slices_per_node,
            data_dir.display()
        );
        println!("  connect:  psql -h 127.0.0.1 -p {pg_port} -U blueshift -d dev");
        let flight_sql_port = ready["flight_sql_port"]
            .as_u64()
            .unwrap_or(u64::from(args.flight_sql_port));
        println!("  Arrow Flight SQL: grpc://127.0.0.1:{flight_sql_port}. Press Ctrl-C to stop.");
        anyhow::Ok(grpc_port)
    }
    .await;
    let grpc_port = match result {
        Ok(p) => p,
        Err(e) => {
            children.stop().await;
            return Err(e);
        }
    };

    let exit = tokio::select! {
        _ = crate::shutdown_signal() => None,
        name = watch(&mut children, &exe, grpc_port, &data_dir, &args) => Some(name),
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

fn spawn_compute(
    exe: &Path,
    grpc_port: u64,
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
        .arg(format!("http://127.0.0.1:{grpc_port}"))
        .arg("--data-dir")
        .arg(data_dir.join(format!("compute-{i}")))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start compute node {i}"))
}

/// Restarts compute nodes that die (like a supervisor would); resolves when the leader exits.
async fn watch(
    children: &mut Children,
    exe: &Path,
    grpc_port: u64,
    data_dir: &Path,
    args: &LocalArgs,
) -> String {
    let mut drained = vec![false; children.procs.len()];
    loop {
        for (i, (name, c)) in children.procs.iter_mut().enumerate() {
            if drained[i] {
                continue;
            }
            if let Ok(Some(status)) = c.try_wait() {
                // procs[0] is the leader; procs[n + 1] is compute-n.
                if i == 0 {
                    return name.clone();
                }
                if status.success() {
                    eprintln!("blueshift: {name} drained and left the cluster; not restarting it");
                    drained[i] = true;
                    continue;
                }
                eprintln!("blueshift: {name} exited ({status}); restarting it");
                match spawn_compute(exe, grpc_port, data_dir, i - 1, args) {
                    Ok(child) => *c = child,
                    Err(e) => eprintln!("blueshift: cannot restart {name}: {e:#}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
