//! The Jepsen-style test of leader replicas on separate "machines" (Linux network
//! namespaces, [`blueshift_tests::netns`]), with a real network partition.
//!
//! Three `blueshift leader` replicas (`--peers`, one per namespace) and two compute nodes
//! that know all three (`--leader a,b,c`), on a file store every namespace sees at the same
//! path. Four clients in the test's namespace, spread over the replicas, write unique values
//! (single-row INSERTs and 3-row COPYs) while the test SIGKILLs the raft leader five times
//! (restarting it each time; the failover time, kill to a write committed on a survivor, is
//! printed) and then takes a follower's link down for 6 s: the bridge-side end of its veth,
//! so its packets are lost rather than refused (no RST), as when a cable or switch port
//! fails. Meanwhile the majority goes on committing, and the cut-off replica, asked from
//! inside its own namespace, refuses a write with 57P03 (psql) and reports 503 on `/ready`
//! (Python's urllib). Afterwards every acknowledged value is on every replica exactly once,
//! nothing is there that no client wrote (or twice), and the replicas report the same
//! catalog version and the same count and sum of every table. Without root or namespaces it
//! prints why it skips; `leader_ha.rs` has the loopback variant (a paused follower).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blueshift_tests::cluster::logs_under;
use blueshift_tests::netns::{Host, Hosts};
use blueshift_tests::{Process, http, jepsen, paths, pg};
use tokio_postgres::Client;

/// Ports inside the namespaces: each host has its own port space, so the defaults are free.
const PG_PORT: u16 = 5439;
const GRPC_PORT: u16 = 5440;
const FLIGHT_SQL_PORT: u16 = 8815;
const HTTP_PORT: u16 = 8080;
const COMPUTE_PORT: u16 = 5441;
const PASSWORD: &str = "Partition2026";
const REPLICAS: usize = 3;
/// How long the follower's link stays down: several election timeouts.
const CUT: Duration = Duration::from_secs(6);

/// Prints the logs of every process if the test panics.
struct LogsOnPanic<'a>(&'a std::path::Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs of the partitioned cluster:\n{}", logs_under(self.0));
        }
    }
}

/// `psql` on `host`'s own loopback (inside its namespace), `-c sql`: exit success and the
/// text it printed (stdout, then stderr; `VERBOSITY=verbose` puts the SQLSTATE in errors).
fn psql_in(host: &Host, sql: &str, password: Option<&str>) -> (bool, String) {
    let mut c = host.command("psql");
    c.args(["-h", "127.0.0.1", "-p", &PG_PORT.to_string()])
        .args(["-U", "blueshift", "-d", "dev", "-X", "-At"])
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            sql,
        ]);
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    let out = c.output().expect("running psql in a namespace");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn connect(host: &Host) -> anyhow::Result<Client> {
    pg::connect_to(&host.ip, PG_PORT, Some(PASSWORD)).await
}

/// The raft leader's replica number and this replica's catalog version, as `client` sees
/// them.
async fn view(client: &Client) -> anyhow::Result<(Option<usize>, String)> {
    let rows = pg::query(
        client,
        "select node_id, role, is_self, catalog_version from stv_leader_replicas",
    )
    .await?;
    let leader = rows
        .iter()
        .find(|r| r[1].as_deref() == Some("leader"))
        .and_then(|r| r[0].as_deref()?.parse().ok());
    let version = rows
        .iter()
        .find(|r| r[2].as_deref() == Some("t"))
        .and_then(|r| r[3].clone())
        .unwrap_or_default();
    Ok((leader, version))
}

/// The leader replicas: how to start replica `n` (again, after a kill) on its host.
struct Replicas {
    hosts: Vec<Host>,
    peers: String,
    store: String,
    root: std::path::PathBuf,
    processes: Vec<Option<Process>>,
}

/// What every process of the cluster proves it holds (`blueshift local` makes its own).
const CLUSTER_SECRET: &str = "leader partition test cluster secret";

impl Replicas {
    fn spawn(&mut self, n: usize) {
        let mut leader = self.hosts[n - 1].command(paths::blueshift_bin());
        leader
            .arg("leader")
            .args(["--node-id", &n.to_string(), "--peers", &self.peers])
            .arg("--data-dir")
            .arg(self.root.join(format!("leader-{n}")))
            .args(["--pg-listen", &format!("0.0.0.0:{PG_PORT}")])
            .args(["--grpc-listen", &format!("0.0.0.0:{GRPC_PORT}")])
            .args(["--flight-sql-listen", &format!("0.0.0.0:{FLIGHT_SQL_PORT}")])
            .args(["--http-listen", &format!("0.0.0.0:{HTTP_PORT}")])
            .args(["--slices", "4", "--expect-nodes", "2"])
            .args(["--store-url", &self.store])
            .arg("--ready-file")
            .arg(self.root.join(format!("ready-{n}.json")))
            .env("BLUESHIFT_CLUSTER_SECRET", CLUSTER_SECRET)
            // How a cluster without password-less logins is bootstrapped: every replica
            // tries, the first one's commit wins.
            .env("BLUESHIFT_INITIAL_PASSWORD", PASSWORD);
        let log = self.root.join(format!("leader-{n}.log"));
        self.processes[n - 1] = Some(Process::spawn(leader, &log).unwrap());
    }

    fn kill(&mut self, n: usize) {
        if let Some(mut p) = self.processes[n - 1].take() {
            p.kill();
        }
    }

    /// The raft leader as the first replica that answers sees it.
    async fn raft_leader(&self, from: usize) -> Option<usize> {
        for i in 0..REPLICAS {
            let n = (from + i - 1) % REPLICAS + 1;
            if let Ok(c) = connect(&self.hosts[n - 1]).await
                && let Ok((Some(leader), _)) = view(&c).await
            {
                return Some(leader);
            }
        }
        None
    }

    /// A client of replica `n` once it answers a read (it was restarted and caught up).
    async fn serving(&self, n: usize) -> Client {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(c) = connect(&self.hosts[n - 1]).await
                && pg::query(&c, "select count(*) from part").await.is_ok()
            {
                return c;
            }
            assert!(Instant::now() < deadline, "replica {n} did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_raft_leader_kills_and_a_follower_cut_off_by_the_network() {
    // Dropped last: the namespaces outlive the processes in them.
    let hosts = match Hosts::create(REPLICAS + 2) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("SKIPPED leader_partition: {why}");
            return;
        }
    };
    let root = tempfile::Builder::new()
        .prefix("blueshift-partition-")
        .tempdir()
        .unwrap();
    let root = root.path();
    let _logs = LogsOnPanic(root);
    let peers = hosts.hosts[..REPLICAS]
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{}={}:{GRPC_PORT}", i + 1, h.ip))
        .collect::<Vec<_>>()
        .join(",");
    // Every namespace shares this machine's file system: one store path serves all.
    let mut replicas = Replicas {
        hosts: hosts.hosts[..REPLICAS].to_vec(),
        peers,
        store: format!("file://{}", root.join("store").display()),
        root: root.to_path_buf(),
        processes: (0..REPLICAS).map(|_| None).collect(),
    };
    for n in 1..=REPLICAS {
        replicas.spawn(n);
    }
    let leaders = replicas
        .hosts
        .iter()
        .map(|h| format!("http://{}:{GRPC_PORT}", h.ip))
        .collect::<Vec<_>>()
        .join(",");
    let mut computes = Vec::new();
    for (i, host) in hosts.hosts[REPLICAS..].iter().enumerate() {
        let mut compute = host.command(paths::blueshift_bin());
        compute
            .arg("compute")
            .args(["--leader", &leaders])
            .arg("--data-dir")
            .arg(root.join(format!("compute-{i}")))
            .args(["--listen", &format!("0.0.0.0:{COMPUTE_PORT}")])
            .env("BLUESHIFT_CLUSTER_SECRET", CLUSTER_SECRET);
        computes.push(Process::spawn(compute, &root.join(format!("compute-{i}.log"))).unwrap());
    }
    let started = Instant::now();
    while !(1..=REPLICAS).all(|n| root.join(format!("ready-{n}.json")).exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the replicas did not all report 2 compute nodes within 120 s ({})\n{}",
            Hosts::firewall_hint().unwrap_or_else(|| "no firewall hint".into()),
            logs_under(root)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The built-in user's initial password (set once ready, before the ready file) is in
    // the catalog: the test's namespace logs in with it.
    connect(&replicas.hosts[0])
        .await
        .unwrap()
        .batch_execute(
            "create table part (v bigint, client int) distkey(v); \
             create table part_probe (a int)",
        )
        .await
        .unwrap();

    // Four writers spread over the three replicas.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|k| {
            let host = replicas.hosts[k % REPLICAS].clone();
            tokio::spawn(jepsen::write_unique_values(
                move || {
                    let host = host.clone();
                    async move { connect(&host).await }
                },
                "part",
                k as i64 + 1,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Five times: SIGKILL the raft leader, time until a survivor commits, restart it.
    let mut failovers = Vec::new();
    for round in 0..5 {
        let leader = replicas
            .raft_leader(round % REPLICAS + 1)
            .await
            .expect("a raft leader");
        let killed = Instant::now();
        replicas.kill(leader);
        let survivor = &replicas.hosts[leader % REPLICAS];
        failovers.push(
            jepsen::until_a_write_commits(
                || connect(survivor),
                "insert into part_probe values (1)",
                killed,
            )
            .await,
        );
        replicas.spawn(leader);
        replicas.serving(leader).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A follower's link goes down. The majority goes on committing; the follower, asked
    // from inside its namespace, refuses a write with 57P03 and is not ready.
    let leader = replicas.raft_leader(1).await.expect("a raft leader");
    let follower = leader % REPLICAS + 1;
    let cut_host = replicas.hosts[follower - 1].clone();
    hosts.cut(follower - 1).unwrap();
    let cut_at = Instant::now();
    // Let it notice that the leader's heartbeats stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    let refusal = tokio::task::spawn_blocking({
        let host = cut_host.clone();
        move || psql_in(&host, "insert into part values (-1, 0)", Some(PASSWORD))
    })
    .await
    .unwrap();
    let refused_after = asked.elapsed();
    let ready = tokio::task::spawn_blocking({
        let host = cut_host.clone();
        move || http::get_json_in(&host, HTTP_PORT, "/ready")
    })
    .await
    .unwrap();
    tokio::time::sleep(CUT.saturating_sub(cut_at.elapsed())).await;
    let cut_for = cut_at.elapsed();
    hosts.restore(follower - 1).unwrap();
    let restored_at = Instant::now();
    println!(
        "link of follower {follower} down for {:.1} s; a write there was refused after \
         {:.1} s: {}",
        cut_for.as_secs_f64(),
        refused_after.as_secs_f64(),
        refusal.1.trim()
    );
    assert!(
        !refusal.0,
        "a cut-off replica accepted a write: {}",
        refusal.1
    );
    assert!(
        refusal.1.contains("57P03"),
        "the refusal names no SQLSTATE 57P03: {}",
        refusal.1
    );
    let (code, body) = ready.unwrap();
    assert_eq!(code, 503, "/ready of the cut-off replica: {body}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut unknown = HashSet::new();
    for w in writers {
        let h = w.await.unwrap();
        acked.extend(h.acked);
        unknown.extend(h.unknown);
    }
    let during_cut = acked
        .iter()
        .filter(|(_, at)| *at > cut_at && *at < restored_at)
        .count();
    println!(
        "jepsen on hosts: {} acknowledged values ({during_cut} while a follower was cut \
         off), {} unacknowledged; failovers (raft leader killed to a write committed on a \
         survivor) {failovers:.2?} s",
        acked.len(),
        unknown.len(),
    );
    assert_eq!(failovers.len(), 5, "five raft leaders were killed");
    assert!(
        during_cut > 0,
        "nothing committed while only a follower was cut off"
    );

    // The cut-off replica catches up; then every replica holds exactly what was written.
    let acked_set: HashSet<i64> = acked.iter().map(|(v, _)| *v).collect();
    let mut prints = Vec::new();
    for n in 1..=REPLICAS {
        let client = replicas.serving(n).await;
        let rows = pg::query(&client, "select v, count(*) from part group by v")
            .await
            .unwrap();
        jepsen::assert_exactly_once(&rows, &acked_set, &unknown, n);
        let sums = pg::query(
            &client,
            "select (select count(*) || ',' || sum(v) from part), \
                    (select count(*) || ',' || sum(a) from part_probe)",
        )
        .await
        .unwrap();
        prints.push((view(&client).await.unwrap().1, sums));
    }
    // Writes have stopped and each read waited for the last commit: the same version.
    assert!(
        prints.iter().all(|p| *p == prints[0]),
        "replicas disagree (catalog version, count and sum per table): {prints:?}"
    );
    let panics: Vec<String> = logs_under(root)
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_string)
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
    drop(computes);
    drop(replicas);
}
