//! [`Cluster`]: one real `blueshift local` process tree (a leader and N compute processes)
//! on loopback, owned by a test.
//!
//! ```text
//!  test ──spawn──▶ blueshift local --ready-file root/ready.json --data-dir root/data
//!                   (own process group: leader + N compute children)
//!       ◀─ready.json {"pg_port", "grpc_port", "flight_sql_port"} (written atomically once all
//!         nodes registered)
//!  test ──tokio-postgres──▶ 127.0.0.1:pg_port (user blueshift, database dev)
//! ```
//!
//! Output of the whole process group goes to `root/cluster.log`; it is printed when the
//! cluster fails to start and when a test panics while holding the cluster. Dropping a
//! `Cluster` kills its process group with SIGKILL; [`Cluster::stop`] sends SIGTERM and waits
//! for a clean exit. Clusters kept in `static`s (shared by several tests) are killed by an
//! `atexit` hook when the test binary exits, so a run never leaves processes behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::paths;
use crate::process::Process;

/// How long a cluster may take to write its ready file (override:
/// `BLUESHIFT_READY_TIMEOUT_SECS`).
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `stop()` waits for the process group to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);
/// Lines of each log file shown on failure.
const LOG_TAIL_LINES: usize = 150;

/// How to start a cluster beyond its shape: extra `blueshift local` flags (e.g.
/// `--store-url s3://...`, `--gc-grace-secs 2`) and environment (e.g. the `AWS_*` of an
/// [`crate::S3Server`]).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ClusterOptions {
    /// A cluster whose segments live in `bucket` of `s3` under `prefix`.
    pub fn s3(s3: &crate::S3Server, bucket: &str, prefix: &str) -> ClusterOptions {
        ClusterOptions {
            args: vec!["--store-url".into(), format!("s3://{bucket}/{prefix}")],
            env: s3.env(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// A running `blueshift local` cluster. See the module docs.
pub struct Cluster {
    root: PathBuf,
    /// Keeps a temp root alive (and removes it on drop) for [`Cluster::start`].
    temp: Option<TempDir>,
    /// `None` once stopped or killed.
    child: Option<Child>,
    pgid: i32,
    pg_port: u16,
    grpc_port: u16,
    flight_sql_port: u16,
    /// PostgreSQL ports of every leader replica (`--leaders n`), replica 1 first.
    pg_ports: Vec<u16>,
    http_ports: Vec<u16>,
    nodes: usize,
    slices_per_node: usize,
    /// The environment the cluster was started with, for nodes added later.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts a cluster of `nodes` compute processes with `slices_per_node` slices each in a
    /// fresh temporary directory, and waits until it is ready.
    pub async fn start(nodes: usize, slices_per_node: usize) -> Result<Cluster> {
        let temp = tempfile::Builder::new()
            .prefix("blueshift-e2e-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let mut cluster = Self::spawn(
            temp.path(),
            nodes,
            slices_per_node,
            true,
            &ClusterOptions::default(),
        )
        .await?;
        cluster.temp = Some(temp);
        Ok(cluster)
    }

    /// [`Cluster::start`] with `options`.
    pub async fn start_with(
        nodes: usize,
        slices_per_node: usize,
        options: &ClusterOptions,
    ) -> Result<Cluster> {
        let temp = tempfile::Builder::new()
            .prefix("blueshift-e2e-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let mut cluster = Self::spawn(temp.path(), nodes, slices_per_node, true, options).await?;
        cluster.temp = Some(temp);
        Ok(cluster)
    }

    /// [`Cluster::start_in`] with `options`.
    pub async fn start_in_with(
        root: &Path,
        nodes: usize,
        slices_per_node: usize,
        options: &ClusterOptions,
    ) -> Result<Cluster> {
        Self::spawn(root, nodes, slices_per_node, false, options).await
    }

    /// Starts a cluster whose state lives under `root` (data in `root/data`, log in
    /// `root/cluster.log`), e.g. to start it again on the same data after [`Cluster::stop`].
    /// `root` is left in place when the cluster is dropped.
    pub async fn start_in(root: &Path, nodes: usize, slices_per_node: usize) -> Result<Cluster> {
        Self::spawn(
            root,
            nodes,
            slices_per_node,
            false,
            &ClusterOptions::default(),
        )
        .await
    }

    async fn spawn(
        root: &Path,
        nodes: usize,
        slices_per_node: usize,
        remove_root_at_exit: bool,
        options: &ClusterOptions,
    ) -> Result<Cluster> {
        let bin = paths::blueshift_bin();
        if !bin.is_file() {
            bail!(
                "the blueshift binary is not at {} ({})",
                bin.display(),
                paths::SETUP_HINT
            );
        }
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let ready_file = root.join("ready.json");
        match std::fs::remove_file(&ready_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing a stale ready file"),
        }

        let log_path = root.join("cluster.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "==== test harness: starting {} local --nodes {nodes} --slices-per-node \
             {slices_per_node} {} ====",
            bin.display(),
            options.args.join(" ")
        )?;
        let stderr = log.try_clone()?;

        let mut command = Command::new(&bin);
        command
            // `blueshift local` lets COPY read files below its working directory (and the
            // temp dir): the TPC-H data is under the workspace's target dir.
            .current_dir(paths::workspace_root())
            .arg("local")
            .arg("--nodes")
            .arg(nodes.to_string())
            .arg("--slices-per-node")
            .arg(slices_per_node.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--pg-port")
            .arg("0")
            .arg("--flight-sql-port")
            .arg("0")
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Own process group: the whole tree can be killed with one signal.
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pgid = i32::try_from(child.id()).context("pid out of range")?;
        register_group(pgid, remove_root_at_exit.then(|| root.to_path_buf()));

        let mut cluster = Cluster {
            root: root.to_path_buf(),
            temp: None,
            child: Some(child),
            pgid,
            pg_port: 0,
            grpc_port: 0,
            flight_sql_port: 0,
            pg_ports: Vec::new(),
            http_ports: Vec::new(),
            nodes,
            slices_per_node,
            env: options.env.clone(),
        };
        match cluster.wait_ready(&ready_file).await {
            Ok((pg_port, grpc_port, flight_sql_port)) => {
                cluster.pg_ports = std::fs::read_to_string(&ready_file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| {
                        v.get("pg_ports")?
                            .as_array()?
                            .iter()
                            .map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                            .collect::<Option<Vec<u16>>>()
                    })
                    .unwrap_or_else(|| vec![pg_port]);
                cluster.http_ports = std::fs::read_to_string(&ready_file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| {
                        v.get("http_ports")?
                            .as_array()?
                            .iter()
                            .map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                            .collect::<Option<Vec<u16>>>()
                    })
                    .unwrap_or_default();
                cluster.pg_port = pg_port;
                cluster.grpc_port = grpc_port;
                cluster.flight_sql_port = flight_sql_port;
                Ok(cluster)
            }
            Err(e) => {
                cluster.kill();
                Err(anyhow!(
                    "cluster in {} did not become ready: {e:#}\n{}",
                    cluster.root.display(),
                    cluster.logs()
                ))
            }
        }
    }

    async fn wait_ready(&mut self, ready_file: &Path) -> Result<(u16, u16, u16)> {
        let timeout = std::env::var("BLUESHIFT_READY_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        let started = Instant::now();
        loop {
            match std::fs::read_to_string(ready_file) {
                Ok(text) => return parse_ready_file(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("reading the ready file"),
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("blueshift local exited before it was ready: {status}");
            }
            if started.elapsed() > timeout {
                bail!(
                    "no ready file at {} after {:?}",
                    ready_file.display(),
                    timeout
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The PostgreSQL-protocol port of the leader.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// The leader's gRPC port.
    /// The leader's Arrow Flight SQL port.
    pub fn flight_sql_port(&self) -> u16 {
        self.flight_sql_port
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// Number of compute nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Total number of slices (`nodes x slices_per_node`).
    pub fn slices(&self) -> usize {
        self.nodes * self.slices_per_node
    }

    /// The directory holding `data/`, `ready.json` and `cluster.log`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new connection to the leader (see [`crate::pg::connect`]).
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        crate::pg::connect(self.pg_port).await
    }

    /// The PostgreSQL ports of the leader replicas (one without `--leaders`).
    pub fn pg_ports(&self) -> &[u16] {
        &self.pg_ports
    }

    /// The HTTP admin (`/health`, `/ready`) ports of the leader replicas, replica 1 first.
    pub fn http_ports(&self) -> &[u16] {
        &self.http_ports
    }

    /// A new connection to leader replica `n` (from 1).
    pub async fn client_of(&self, n: usize) -> Result<tokio_postgres::Client> {
        let port = *self
            .pg_ports
            .get(n.wrapping_sub(1))
            .ok_or_else(|| anyhow!("the cluster has no leader replica {n}"))?;
        crate::pg::connect(port).await
    }

    /// The last lines of every log file under the cluster's root, for failure messages.
    pub fn logs(&self) -> String {
        logs_under(&self.root)
    }

    /// Lines of `cluster.log` that report a Rust panic in any process of the cluster.
    pub fn panics_in_log(&self) -> Vec<String> {
        let text = std::fs::read(self.root.join("cluster.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("panicked at"))
            .map(str::to_owned)
            .collect()
    }

    /// A guard that prints the cluster's logs if the current thread panics while it is
    /// alive. Useful for clusters shared through a `static`, which are never dropped.
    pub fn logs_on_panic(&self) -> LogsOnPanic<'_> {
        LogsOnPanic { cluster: self }
    }

    /// Sends `signal` (`"KILL"`, `"TERM"`, ...) to one process of the cluster, named like its
    /// data directory: `leader`, `compute-0`, `compute-1`, ... Fails if none matched.
    pub fn signal(&self, process: &str, signal: &str) -> Result<()> {
        let pattern = self.process_pattern(process);
        let status = Command::new("pkill")
            .args([&format!("-{signal}"), "-f", &pattern])
            .status()
            .context("running pkill")?;
        if !status.success() {
            bail!("no process of the cluster matched {pattern}");
        }
        Ok(())
    }

    /// Whether the process named like [`Cluster::signal`]'s runs.
    pub fn is_running(&self, process: &str) -> bool {
        Command::new("pgrep")
            .args(["-f", &self.process_pattern(process)])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The cluster secret `blueshift local` made: processes started beside it need it.
    pub fn cluster_secret_file(&self) -> PathBuf {
        self.root.join("data/cluster.secret")
    }

    /// Its `--data-dir` argument, as a whole word (`compute-1` must not match `compute-10`).
    fn process_pattern(&self, process: &str) -> String {
        format!("{}/data/{process}( |$)", self.root.display())
    }

    /// Starts one more compute node that joins the running cluster: a separate `blueshift
    /// compute` process (not supervised by `blueshift local`) in the cluster's process group,
    /// data in `root/<name>`, output in `root/<name>.log`.
    pub fn add_compute(&self, name: &str) -> Result<Process> {
        let mut command = Command::new(paths::blueshift_bin());
        command
            .arg("compute")
            .arg("--leader")
            .arg(format!("http://127.0.0.1:{}", self.grpc_port))
            .arg("--data-dir")
            .arg(self.root.join(name))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--cluster-secret-file")
            .arg(self.cluster_secret_file())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // The cluster's group: killing the cluster kills it too.
            .process_group(self.pgid);
        Process::spawn(command, &self.root.join(format!("{name}.log")))
    }

    /// Starts one more leader replica, `blueshift leader --node-id <id> --join` replica 1: a
    /// separate process (not supervised by `blueshift local`) in the cluster's process
    /// group, data in `root/<name>`, output in `root/<name>.log`. Returns it and its
    /// PostgreSQL and HTTP ports once it is ready (added to the group and caught up).
    pub async fn add_leader_replica(&self, name: &str, id: u64) -> Result<(Process, u16, u16)> {
        let ready = self.root.join(format!("{name}.ready"));
        let mut command = Command::new(paths::blueshift_bin());
        command
            .arg("leader")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--join")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .arg("--data-dir")
            .arg(self.root.join(name))
            .arg("--pg-listen")
            .arg("127.0.0.1:0")
            .arg("--grpc-listen")
            .arg("127.0.0.1:0")
            .arg("--flight-sql-listen")
            .arg("127.0.0.1:0")
            .arg("--http-listen")
            .arg("127.0.0.1:0")
            .arg("--slices")
            .arg((self.nodes * self.slices_per_node).to_string())
            .arg("--store-url")
            .arg(format!(
                "file://{}/",
                self.root.join("data/store").display()
            ))
            .arg("--ready-file")
            .arg(&ready)
            // As `blueshift local` starts its replicas: the tests log in as `blueshift`.
            .arg("--trust-loopback")
            .arg("--cluster-secret-file")
            .arg(self.cluster_secret_file())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .process_group(self.pgid);
        let mut process = Process::spawn(command, &self.root.join(format!("{name}.log")))?;
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let (pg_port, _, _) = parse_ready_file(&text)?;
                let http_port = serde_json::from_str::<serde_json::Value>(&text)?
                    .get("http_port")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| anyhow!("ready file has no http_port: {text}"))?;
                return Ok((process, pg_port, http_port));
            }
            if let Some(status) = process.exited() {
                bail!("leader replica {name} exited before it was ready: {status}");
            }
            if started.elapsed() > DEFAULT_READY_TIMEOUT {
                process.kill();
                bail!("leader replica {name} was not ready after {DEFAULT_READY_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM to `blueshift local` and waits for it and every process of its group to
    /// exit. Returns its exit status; fails (after killing the group) if it does not exit in
    /// time or leaves processes behind.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("cluster already stopped");
        };
        // SAFETY: plain kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(self.pgid, libc::SIGTERM) };
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                kill_group(self.pgid);
                let _ = child.wait();
                unregister_group(self.pgid);
                bail!(
                    "blueshift local did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        // The leader has exited; its compute children must be gone too.
        let started = Instant::now();
        loop {
            let alive = live_group_members(self.pgid);
            if alive.is_empty() {
                break;
            }
            if started.elapsed() > STOP_TIMEOUT {
                kill_group(self.pgid);
                unregister_group(self.pgid);
                bail!(
                    "processes {alive:?} of the cluster were still running {STOP_TIMEOUT:?} \
                     after blueshift local exited\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        unregister_group(self.pgid);
        if !status.success() {
            bail!(
                "blueshift local exited with {status} (signal {:?}) after SIGTERM\n{}",
                status.signal(),
                self.logs()
            );
        }
        Ok(status)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pgid);
            let _ = child.wait();
            unregister_group(self.pgid);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster in {} at the time of the panic:\n{}",
                self.root.display(),
                self.logs()
            );
        }
        self.kill();
    }
}

/// See [`Cluster::logs_on_panic`].
pub struct LogsOnPanic<'a> {
    cluster: &'a Cluster,
}

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster in {} at the time of the panic:\n{}",
                self.cluster.root.display(),
                self.cluster.logs()
            );
        }
    }
}

/// `(pg_port, grpc_port, flight_sql_port)` of a ready file.
fn parse_ready_file(text: &str) -> Result<(u16, u16, u16)> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("ready file is not JSON: {text:?}"))?;
    let port = |key: &str| -> Result<u16> {
        let n = value
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("ready file has no numeric {key:?}: {text}"))?;
        let port = u16::try_from(n).with_context(|| format!("{key} out of range: {n}"))?;
        if port == 0 {
            bail!("ready file has {key} = 0: {text}");
        }
        Ok(port)
    };
    Ok((
        port("pg_port")?,
        port("grpc_port")?,
        port("flight_sql_port")?,
    ))
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the
    // cluster; it has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Pids of processes in group `pgid` that are not zombies (read from /proc).
fn live_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut alive = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            alive.push(pid);
        }
    }
    alive
}

/// The last lines of every `*.log` file under `dir` (4 levels deep), for failure messages.
pub fn logs_under(dir: &Path) -> String {
    let mut files = Vec::new();
    collect_logs(dir, 4, &mut files);
    files.sort();
    let mut out = String::new();
    for file in files {
        out.push_str(&format!(
            "---- {} (last {LOG_TAIL_LINES} lines) ----\n",
            file.display()
        ));
        out.push_str(&tail(&file, LOG_TAIL_LINES));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(no log files)\n");
    }
    out
}

fn collect_logs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if depth > 0 {
                collect_logs(&path, depth - 1, out);
            }
        } else if path.extension().is_some_and(|e| e == "log") {
            out.push(path);
        }
    }
}

/// The last `lines` lines of a file (reads at most its last 256 KiB).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})\n", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Process groups of clusters still running, and temp roots to remove, for the exit hook.
static LIVE_GROUPS: Mutex<Vec<(i32, Option<PathBuf>)>> = Mutex::new(Vec::new());
static EXIT_HOOK: Once = Once::new();

fn register_group(pgid: i32, remove_at_exit: Option<PathBuf>) {
    EXIT_HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()` with the C runtime.
        unsafe { libc::atexit(kill_leftover_clusters) };
    });
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.push((pgid, remove_at_exit));
    }
}

fn unregister_group(pgid: i32) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.retain(|(g, _)| *g != pgid);
    }
}

/// Runs when the test binary exits: kills clusters that were never dropped (the ones kept
/// in `static`s) and removes their temp directories.
extern "C" fn kill_leftover_clusters() {
    let Ok(mut groups) = LIVE_GROUPS.try_lock() else {
        return;
    };
    for (pgid, _) in groups.iter() {
        kill_group(*pgid);
    }
    for (_, root) in groups.drain(..) {
        if let Some(root) = root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_parses_ports() {
        assert_eq!(
            parse_ready_file(r#"{"pg_port": 5439, "grpc_port": 40000, "flight_sql_port": 8815}"#)
                .unwrap(),
            (5439, 40000, 8815)
        );
        assert!(parse_ready_file(r#"{"pg_port": 0, "grpc_port": 1}"#).is_err());
        assert!(parse_ready_file(r#"{"pg_port": 70000, "grpc_port": 1}"#).is_err());
        assert!(parse_ready_file("{").is_err());
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
    }
}
