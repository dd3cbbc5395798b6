//! A cluster on three "machines" that share nothing but the network and an S3 server: the
//! leader and two compute nodes each in their own Linux network namespace
//! ([`blueshift_tests::netns`]), moto in the root namespace on the bridge.
//!
//! `a_cluster_on_three_hosts_sharing_only_s3`: the nodes are started by hand (`blueshift
//! leader`, `blueshift compute` with no `--advertise-host`, listening on 0.0.0.0); the slice
//! map must show each node at its own bridge address (never 127.0.0.1). The test logs in
//! from the root namespace with a password (a remote login), loads TPC-H SF 0.01 with COPY
//! (segments land in the bucket), runs the 22 queries against DuckDB, SIGKILLs one compute
//! node and runs them again on the other. Without root or namespaces it prints why it skips.

use std::time::Duration;

use blueshift_tests::cluster::logs_under;
use blueshift_tests::netns::Hosts;
use blueshift_tests::{Process, S3Server, load_tpch, paths, pg, tpch_data};

use crate::tpch_queries::{duckdb_answers, report, run_all_with};

/// Ports inside the namespaces: each host has its own port space, so the defaults are free.
const PG_PORT: u16 = 5439;
const GRPC_PORT: u16 = 5440;
const FLIGHT_SQL_PORT: u16 = 8815;
const COMPUTE_PORT: u16 = 5441;
const PASSWORD: &str = "MultiHost2026";
const BUCKET: &str = "multihost";

/// Prints the logs of every process if the test panics.
struct LogsOnPanic<'a>(&'a std::path::Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs of the multi-host cluster:\n{}", logs_under(self.0));
        }
    }
}

/// What every process of the cluster proves it holds (`blueshift local` makes its own).
const CLUSTER_SECRET: &str = "multi-host test cluster secret";

#[tokio::test]
async fn a_cluster_on_three_hosts_sharing_only_s3() {
    // Dropped last: the namespaces outlive the processes in them.
    let hosts = match Hosts::create(3) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("SKIPPED multi_host::a_cluster_on_three_hosts_sharing_only_s3: {why}");
            return;
        }
    };
    let data = tpch_data().unwrap();
    let expected = duckdb_answers(&data);
    let root = tempfile::Builder::new()
        .prefix("blueshift-multihost-")
        .tempdir()
        .unwrap();
    let root = root.path();
    let _logs = LogsOnPanic(root);
    let s3 = S3Server::start_on(&hosts.gateway).unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let (leader_host, compute_hosts) = (&hosts.hosts[0], &hosts.hosts[1..]);
    let bin = paths::blueshift_bin();

    let ready = root.join("ready.json");
    let mut leader = leader_host.command(&bin);
    leader
        .arg("leader")
        .arg("--data-dir")
        .arg(root.join("leader"))
        .args(["--pg-listen", &format!("0.0.0.0:{PG_PORT}")])
        .args(["--grpc-listen", &format!("0.0.0.0:{GRPC_PORT}")])
        .args(["--flight-sql-listen", &format!("0.0.0.0:{FLIGHT_SQL_PORT}")])
        .args(["--slices", "4", "--expect-nodes", "2"])
        .args(["--store-url", &format!("s3://{BUCKET}/wh")])
        // COPY reads the TPC-H files (generated under the target dir) from the leader's host.
        .arg("--allowed-paths")
        .arg(paths::target_dir())
        .arg("--ready-file")
        .arg(&ready)
        .env("BLUESHIFT_CLUSTER_SECRET", CLUSTER_SECRET)
        // A leader started alone lets nobody in without a password: the built-in user gets
        // this one once the cluster is ready.
        .env("BLUESHIFT_INITIAL_PASSWORD", PASSWORD)
        .envs(s3.env());
    let _leader = Process::spawn(leader, &root.join("leader.log")).unwrap();
    let mut computes = Vec::new();
    for (i, host) in compute_hosts.iter().enumerate() {
        let mut compute = host.command(&bin);
        compute
            .arg("compute")
            .args([
                "--leader",
                &format!("http://{}:{GRPC_PORT}", leader_host.ip),
            ])
            .arg("--data-dir")
            .arg(root.join(format!("compute-{i}")))
            .args(["--listen", &format!("0.0.0.0:{COMPUTE_PORT}")])
            .env("BLUESHIFT_CLUSTER_SECRET", CLUSTER_SECRET)
            .envs(s3.env());
        computes.push(Process::spawn(compute, &root.join(format!("compute-{i}.log"))).unwrap());
    }
    let started = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the leader did not report 2 compute nodes within 120 s ({})\n{}",
            Hosts::firewall_hint().unwrap_or_else(|| "no firewall hint".into()),
            logs_under(root)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Password-less logins are off on `blueshift leader`: not even from its own loopback.
    let refused = leader_host
        .command("psql")
        .args(["-h", "127.0.0.1", "-p", &PG_PORT.to_string()])
        .args(["-U", "blueshift", "-d", "dev", "-w", "-c", "select 1"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a password-less login on the leader's loopback: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let leader_ip = leader_host.ip.clone();
    let connect = || pg::connect_to(&leader_ip, PG_PORT, Some(PASSWORD));
    let client = connect().await.unwrap();

    // Each node is reachable at its own address, found from the route to the leader.
    let addresses = pg::query(
        &client,
        "select distinct address from stv_slices order by 1",
    )
    .await
    .unwrap();
    let mut want: Vec<String> = compute_hosts
        .iter()
        .map(|h| format!("{}:{COMPUTE_PORT}", h.ip))
        .collect();
    want.sort();
    let got: Vec<String> = addresses.into_iter().filter_map(|r| r[0].clone()).collect();
    assert_eq!(
        got, want,
        "compute nodes must advertise their own addresses"
    );

    load_tpch(&client, &data).await.unwrap();
    let keys = s3.list(BUCKET, "wh/").unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with(".parquet")),
        "no segment in the bucket: {keys:?}"
    );
    let failures = run_all_with(connect, "3 hosts", expected).await;
    report("TPC-H on 3 hosts", 22, &failures);

    // One compute host dies; the other serves every slice, and the answers stay right.
    computes[1].kill();
    eprintln!("killed the compute node on {}", compute_hosts[1].ip);
    let failures = run_all_with(connect, "3 hosts, one compute node killed", expected).await;
    report("TPC-H after a compute node was killed", 22, &failures);
    let client = connect().await.unwrap();
    let serving = pg::query(&client, "select distinct address from stv_slices")
        .await
        .unwrap();
    assert_eq!(
        serving,
        vec![vec![Some(format!(
            "{}:{COMPUTE_PORT}",
            compute_hosts[0].ip
        ))]],
        "the surviving node serves every slice"
    );
    assert!(
        computes[0].exited().is_none(),
        "the surviving compute node exited"
    );
}
