//! Leader replicas (`blueshift local --leaders 3`): the catalog replicated with raft.
//! A write acknowledged by one replica is seen by a statement that starts afterwards on
//! another; killing the raft leader elects a new one, writes go on through the survivors
//! (the failover time is printed), `blueshift local` restarts the killed replica, which
//! catches up; at the end every replica reports the same catalog version and contents.
//! A Jepsen-style run: 4 clients spread over the replicas do acknowledged single-row INSERTs
//! and COPYs while the raft leader is SIGKILLed 5 times and a follower is paused (SIGSTOP,
//! 5 s: it neither sends nor answers, as if cut off); every acknowledged value is then on
//! every replica exactly once, nothing is there twice or unasked-for, and the replicas agree.
//! A replica cut off from the majority (the other two paused) refuses a write with 57P03 in
//! bounded time and its HTTP `/ready` says 503. Membership: a replica joins with `--join`
//! and catches up from a snapshot, replicas are removed with `ALTER CLUSTER REMOVE
//! REPLICA`, and one whose data dir is wiped rejoins.

use std::time::{Duration, Instant};

use blueshift_tests::{Cluster, ClusterOptions, http, jepsen, pg};
use tokio_postgres::Client;

const REPLICAS: usize = 3;

async fn start() -> Cluster {
    Cluster::start_with(2, 1, &ClusterOptions::default().arg("--leaders").arg("3"))
        .await
        .unwrap()
}

async fn clients(cluster: &Cluster) -> Vec<Client> {
    let mut out = Vec::new();
    for n in 1..=REPLICAS {
        out.push(cluster.client_of(n).await.unwrap());
    }
    out
}

async fn one(client: &Client, sql: &str) -> String {
    let rows = pg::query(client, sql).await.unwrap();
    rows[0][0].clone().unwrap_or_default()
}

/// The raft leader's replica number, as replica `n` sees it.
async fn raft_leader(client: &Client) -> Option<usize> {
    let rows = pg::query(
        client,
        "select node_id from stv_leader_replicas where role = 'leader'",
    )
    .await
    .ok()?;
    rows.first()?.first()?.as_ref()?.parse().ok()
}

/// Each replica's own (catalog version, applied index) and the table's fingerprint.
async fn fingerprints(cluster: &Cluster) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in 1..=REPLICAS {
        let c = cluster.client_of(n).await.unwrap();
        let version = one(
            &c,
            "select catalog_version from stv_leader_replicas where is_self",
        )
        .await;
        let rows = pg::query(&c, "select count(*), sum(a), count(distinct a) from ha")
            .await
            .unwrap();
        out.push((version, format!("{:?}", rows[0])));
    }
    out
}

#[tokio::test]
async fn writes_on_one_replica_are_read_on_the_others_and_the_raft_leader_fails_over() {
    let cluster = start().await;
    let logs = cluster.logs_on_panic();
    let cs = clients(&cluster).await;
    cs[0]
        .batch_execute("create table ha (a int, who int) distkey(a)")
        .await
        .unwrap();

    // /ready: every replica is ready and they agree on one raft leader.
    assert_eq!(cluster.http_ports().len(), REPLICAS);
    let mut leaders = Vec::new();
    for (n, port) in cluster.http_ports().iter().enumerate() {
        let (code, body) = http::get_json(*port, "/ready").unwrap();
        assert_eq!(code, 200, "/ready of replica {}: {body}", n + 1);
        assert_eq!(body["node_id"], n as u64 + 1, "{body}");
        leaders.push(body["leader_id"].as_u64().unwrap_or(0));
    }
    assert!(
        leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]),
        "replicas disagree on the raft leader: {leaders:?}"
    );

    // Read your writes across replicas, 1000 times in a row.
    let started = Instant::now();
    for i in 0..1000 {
        let (w, r) = (i % REPLICAS, (i + 1) % REPLICAS);
        cs[w]
            .batch_execute(&format!("insert into ha values ({i}, {w})"))
            .await
            .unwrap();
        let seen = one(&cs[r], &format!("select count(*) from ha where a = {i}")).await;
        assert_eq!(
            seen,
            "1",
            "write {i} on replica {} unseen on replica {}",
            w + 1,
            r + 1
        );
    }
    println!(
        "1000 writes each read on another replica in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A replica cut off from the majority (the other two paused: they neither send nor
    // answer) refuses a write with 57P03 within the request timeout instead of hanging, and
    // reports not ready; once they are back it commits again.
    let alone = 3;
    for n in 1..alone {
        cluster.signal(&replica_process(n), "STOP").unwrap();
    }
    let cut_at = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        pg::expect_db_error(&cs[alone - 1], "insert into ha values (-1, 0)"),
    )
    .await
    .expect("a write on a cut-off replica hung")
    .unwrap();
    println!(
        "cut-off replica refused a write after {:.1} s: {}",
        cut_at.elapsed().as_secs_f64(),
        refused.message()
    );
    // Refused at its read barrier, before anything was proposed.
    pg::assert_sqlstate(&refused, &["57P03"], "a write on a cut-off replica");
    let (code, body) = http::get_json(cluster.http_ports()[alone - 1], "/ready").unwrap();
    for n in 1..alone {
        cluster.signal(&replica_process(n), "CONT").unwrap();
    }
    assert_eq!(code, 503, "/ready of a cut-off replica: {body}");
    let back = Instant::now();
    while cs[alone - 1]
        .batch_execute("insert into ha values (-2, 0)")
        .await
        .is_err()
    {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "the replica did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        one(&cs[0], "select count(*) from ha where a = -1").await,
        "0",
        "the refused write was committed"
    );
    cs[0]
        .batch_execute("delete from ha where a < 0")
        .await
        .unwrap();

    // Kill the raft leader; time until a survivor commits a write.
    let leader = raft_leader(&cs[0]).await.expect("a raft leader");
    let name = replica_process(leader);
    let survivor = if leader == 1 { 2 } else { 1 };
    let killed_at = Instant::now();
    cluster.signal(&name, "KILL").unwrap();
    let mut attempts = 0;
    let failover = loop {
        attempts += 1;
        // A fresh connection each time: the one before may have been to the dead replica.
        if let Ok(c) = cluster.client_of(survivor).await
            && c.batch_execute("insert into ha values (100000, 0)")
                .await
                .is_ok()
        {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no write succeeded on replica {survivor} within 60 s of killing replica {leader}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "failover: raft leader (replica {leader}) killed; first write on replica {survivor} \
         committed after {:.2} s ({attempts} attempts)",
        failover.as_secs_f64()
    );
    let new_leader = raft_leader(&cluster.client_of(survivor).await.unwrap()).await;
    assert!(new_leader.is_some_and(|l| l != leader), "{new_leader:?}");

    // `blueshift local` restarts the killed replica; it catches up with what it missed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = cluster.client_of(leader).await
            && let Ok(rows) = pg::query(&c, "select count(*) from ha where a = 100000").await
            && rows[0][0].as_deref() == Some("1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica {leader} did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let prints = fingerprints(&cluster).await;
    assert!(
        prints.iter().all(|p| *p == prints[0]),
        "replicas disagree: {prints:?}"
    );
    assert_eq!(
        prints[0].1,
        r#"[Some("1001"), Some("599500"), Some("1001")]"#
    );
    assert!(
        cluster.panics_in_log().is_empty(),
        "{:?}",
        cluster.panics_in_log()
    );
    drop(logs);
    cluster.stop().await.unwrap();
}

fn replica_process(n: usize) -> String {
    if n == 1 {
        "leader".to_string()
    } else {
        format!("leader-{n}")
    }
}

/// Waits until replica `n` answers a read (it was restarted and caught up).
async fn wait_serving(cluster: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(c) = cluster.client_of(n).await
            && pg::query(&c, "select count(*) from jep").await.is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "replica {n} did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_five_raft_leader_kills_and_a_paused_follower() {
    let cluster = start().await;
    let logs = cluster.logs_on_panic();
    cluster
        .client_of(1)
        .await
        .unwrap()
        .batch_execute(
            "create table jep (v bigint, client int) distkey(v); create table jep_probe (a int)",
        )
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ports = cluster.pg_ports().to_vec();
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let port = ports[k as usize % REPLICAS];
            tokio::spawn(jepsen::write_unique_values(
                move || pg::connect(port),
                "jep",
                k + 1,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut failovers = Vec::new();
    for round in 0..5 {
        let survivor_view = cluster.client_of(1 + round % REPLICAS).await;
        let Some(leader) = (match survivor_view {
            Ok(c) => raft_leader(&c).await,
            Err(_) => None,
        }) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let killed = Instant::now();
        cluster.signal(&replica_process(leader), "KILL").unwrap();
        // Failover: until a survivor commits a write (the new raft leader may be the killed
        // replica again, restarted by `blueshift local`).
        let survivor = leader % REPLICAS + 1;
        failovers.push(
            jepsen::until_a_write_commits(
                || cluster.client_of(survivor),
                "insert into jep_probe values (1)",
                killed,
            )
            .await,
        );
        wait_serving(&cluster, leader).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A follower cut off for 5 s (paused: it neither sends nor answers), then back.
    let leader = raft_leader(&cluster.client_of(1).await.unwrap())
        .await
        .expect("a raft leader");
    let follower = leader % REPLICAS + 1;
    cluster.signal(&replica_process(follower), "STOP").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.signal(&replica_process(follower), "CONT").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut unknown = std::collections::HashSet::new();
    for c in clients {
        let h = c.await.unwrap();
        acked.extend(h.acked.into_iter().map(|(v, _)| v));
        unknown.extend(h.unknown);
    }
    println!(
        "jepsen: {} acknowledged values, {} unacknowledged; failovers (raft leader killed to \
         a write committed on a survivor) {:?} s",
        acked.len(),
        unknown.len(),
        failovers
    );
    assert_eq!(failovers.len(), 5, "five raft leaders were killed");
    assert!(
        acked.len() > 50,
        "too few writes succeeded: {}",
        acked.len()
    );
    let acked_set: std::collections::HashSet<i64> = acked.iter().copied().collect();
    let mut prints = Vec::new();
    for n in 1..=REPLICAS {
        wait_serving(&cluster, n).await;
        let c = cluster.client_of(n).await.unwrap();
        let rows = pg::query(&c, "select v, count(*) from jep group by v")
            .await
            .unwrap();
        jepsen::assert_exactly_once(&rows, &acked_set, &unknown, n);
        let version = one(
            &c,
            "select catalog_version from stv_leader_replicas where is_self",
        )
        .await;
        let sums = pg::query(&c, "select count(*), sum(v), sum(client) from jep")
            .await
            .unwrap();
        prints.push((version, format!("{:?}", sums[0])));
    }
    assert!(
        prints.iter().all(|p| *p == prints[0]),
        "replicas disagree: {prints:?}"
    );
    drop(logs);
    cluster.stop().await.unwrap();
}

/// Each voter and learner as replica `client` sees them: `(node_id, role)`.
async fn members(client: &Client) -> Vec<(String, String)> {
    pg::query(
        client,
        "select node_id, role from stv_leader_replicas order by node_id",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

/// Polls `check` on a fresh connection to `port` until it holds (90 s at most).
async fn eventually<F, Fut>(port: u16, what: &str, check: F)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(c) = pg::connect(port).await
            && check(c).await
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Membership changes: a replica started with `--join` is added (as a learner, then a
/// voter) and catches up from a snapshot, since the log was compacted; compute nodes find
/// it and it runs queries; `ALTER CLUSTER REMOVE REPLICA` (superusers only) takes replicas
/// out, the raft leader included; a replica whose data dir is wiped and that `blueshift
/// local` restarts with its old `--peers` finds the group exists, is removed and added back,
/// and rejoins from a snapshot. No acknowledged row is lost along the way.
#[tokio::test]
async fn replicas_join_and_leave_and_a_wiped_replica_rejoins_from_a_snapshot() {
    let cluster = start().await;
    let logs = cluster.logs_on_panic();
    let c1 = cluster.client_of(1).await.unwrap();
    pg::execute(&c1, "create table m (a int)").await.unwrap();
    // More commands than a raft snapshot takes (64): the log is compacted.
    let mut expected = 0i64;
    for i in 1..=80 {
        pg::execute(&c1, &format!("insert into m values ({i})"))
            .await
            .unwrap();
        expected += i;
    }
    let fingerprint = format!("80|{expected}");
    let sum_of = |c: Client| async move {
        pg::query(&c, "select count(*) || '|' || sum(a) from m")
            .await
            .ok()
            .and_then(|r| r.first().and_then(|r| r[0].clone()))
    };

    // Replica 4 joins.
    let joined_at = Instant::now();
    let (mut r4, r4_port, r4_http) = cluster.add_leader_replica("leader-4", 4).await.unwrap();
    println!(
        "replica 4 joined and was ready in {:?}",
        joined_at.elapsed()
    );
    let r4_log = std::fs::read_to_string(cluster.root().join("leader-4.log")).unwrap();
    assert!(
        r4_log.contains("installed a raft snapshot"),
        "replica 4 did not catch up from a snapshot:\n{r4_log}"
    );
    // It serves as a learner once caught up, and is promoted to voter right after.
    eventually(
        cluster.pg_ports()[0],
        "replica 4 is a voter",
        |c| async move {
            members(&c)
                .await
                .contains(&("4".to_string(), "follower".to_string()))
        },
    )
    .await;
    let (code, body) = http::get_json(r4_http, "/ready").unwrap();
    assert_eq!(code, 200, "/ready of replica 4: {body}");
    assert_eq!(body["node_id"], 4, "{body}");
    // Compute nodes register with it (they learn it from the heartbeats' replica list).
    let want = fingerprint.clone();
    eventually(
        r4_port,
        "replica 4 runs queries with the right answer",
        move |c| {
            let want = want.clone();
            async move { sum_of(c).await.as_deref() == Some(want.as_str()) }
        },
    )
    .await;
    let c4 = pg::connect(r4_port).await.unwrap();
    pg::execute(&c4, "insert into m values (1000)")
        .await
        .unwrap();
    assert_eq!(
        sum_of(cluster.client_of(2).await.unwrap()).await.as_deref(),
        Some(format!("81|{}", expected + 1000).as_str()),
        "a write on replica 4 is read on replica 2"
    );
    expected += 1000;

    // Wipe the data dir of a follower (not replica 4) while it is paused, then kill it:
    // `blueshift local` restarts it with its old --peers and an empty dir. A write while
    // it is down (3 of 4 voters remain) is on it once it is back.
    let leader = raft_leader(&c1).await.unwrap();
    let wiped = (1..=REPLICAS).find(|n| *n != leader).unwrap();
    let process = replica_process(wiped);
    cluster.signal(&process, "STOP").unwrap();
    std::fs::remove_dir_all(cluster.root().join("data").join(&process)).unwrap();
    cluster.signal(&process, "KILL").unwrap();
    pg::execute(&c4, "insert into m values (2000)")
        .await
        .unwrap();
    expected += 2000;
    let want = format!("82|{expected}");
    let wiped_port = cluster.pg_ports()[wiped - 1];
    let back = Instant::now();
    eventually(wiped_port, "the wiped replica answers again", move |c| {
        let want = want.clone();
        async move { sum_of(c).await.as_deref() == Some(want.as_str()) }
    })
    .await;
    println!(
        "the wiped replica answered again after {:?}",
        back.elapsed()
    );
    let all = cluster.logs();
    assert!(
        all.contains("its group exists") && all.contains("removing it first"),
        "the wiped replica did not rejoin through removal and re-adding"
    );
    let cw = cluster.client_of(wiped).await.unwrap();
    let view = members(&cw).await;
    assert_eq!(view.len(), 4, "{view:?}");
    assert!(
        view.iter()
            .any(|(id, role)| *id == wiped.to_string() && role == "follower"),
        "the wiped replica is a voter again: {view:?}"
    );

    // Only superusers change membership.
    pg::execute(&cw, "create user analyst password 'Analyst1pw'")
        .await
        .unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(wiped_port)
        .user("analyst")
        .password("Analyst1pw")
        .dbname("dev");
    let (analyst, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let denied = pg::expect_db_error(&analyst, "alter cluster remove replica 4")
        .await
        .unwrap();
    pg::assert_sqlstate(&denied, &["42501"], "a non-superuser removing a replica");
    let missing = pg::expect_db_error(&cw, "alter cluster remove replica 9")
        .await
        .unwrap();
    pg::assert_sqlstate(&missing, &["42704"], "removing a replica that is not there");

    // Remove replica 4 (from a follower: the request goes to the raft leader), then the
    // raft leader itself (it hands leadership over first). Replica 4 then refuses work.
    let c2 = cluster.client_of(2).await.unwrap();
    pg::execute(&c2, "alter cluster remove replica 4")
        .await
        .unwrap();
    // The raft leader tells it so right after the removal commits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pg::query(&c4, "select count(*) from m").await {
            Ok(_) => assert!(Instant::now() < deadline, "replica 4 still serves"),
            Err(e) => {
                let text = format!("{e:#}");
                assert!(text.contains("57P03") && text.contains("removed"), "{text}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A Service stops routing to it.
    let (code, body) = http::get_json(r4_http, "/ready").unwrap();
    assert_eq!(
        (code, body["role"].as_str()),
        (503, Some("removed")),
        "{body}"
    );
    let (code, _) = http::get_json(r4_http, "/health").unwrap();
    assert_eq!(code, 200, "a removed replica is still alive");
    r4.kill();
    let leader = raft_leader(&cw).await.unwrap();
    let survivor = (1..=REPLICAS).find(|n| *n != leader).unwrap();
    let cs = cluster.client_of(survivor).await.unwrap();
    pg::execute(&cs, &format!("alter cluster remove replica {leader}"))
        .await
        .unwrap();
    let view = members(&cs).await;
    assert_eq!(view.len(), 2, "two replicas left: {view:?}");
    assert!(
        !view.iter().any(|(id, _)| *id == leader.to_string()),
        "{view:?}"
    );
    pg::execute(&cs, "insert into m values (3000)")
        .await
        .unwrap();
    expected += 3000;
    let final_print = format!("83|{expected}");
    for (id, _) in view {
        let n: usize = id.parse().unwrap();
        assert_eq!(
            sum_of(cluster.client_of(n).await.unwrap()).await.as_deref(),
            Some(final_print.as_str()),
            "replica {n}"
        );
    }
    assert!(
        cluster.panics_in_log().is_empty(),
        "{:?}",
        cluster.panics_in_log()
    );
    drop(logs);
    cluster.stop().await.unwrap();
}
