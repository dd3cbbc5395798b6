//! Leader replicas (`blueshift local --leaders 3`): the catalog replicated with raft.
//! A write acknowledged by one replica is seen by a statement that starts afterwards on
//! another; killing the raft leader elects a new one, writes go on through the survivors
//! (the failover time is printed), `blueshift local` restarts the killed replica, which
//! catches up; at the end every replica reports the same catalog version and contents.
//! A Jepsen-style run: 4 clients spread over the replicas do acknowledged single-row INSERTs
//! and COPYs while the raft leader is SIGKILLed 5 times and a follower is paused (SIGSTOP,
//! 5 s: it neither sends nor answers, as if cut off); every acknowledged value is then on
//! every replica exactly once, nothing is there twice or unasked-for, and the replicas agree.

use std::time::{Duration, Instant};

use blueshift_tests::{Cluster, ClusterOptions, pg};
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

/// What one client did: values whose write was acknowledged, and values whose write failed
/// (they may or may not have been committed).
#[derive(Default)]
struct History {
    acked: Vec<i64>,
    unknown: Vec<i64>,
}

/// One client: single-row INSERTs and 3-row COPYs of unique values on replica `replica`,
/// reconnecting when its replica goes away, until `stop`.
async fn client_loop(
    cluster_ports: Vec<u16>,
    replica: usize,
    k: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> History {
    use futures::SinkExt;
    let mut history = History::default();
    let mut client: Option<Client> = None;
    let mut n: i64 = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = pg::connect(cluster_ports[replica - 1]).await.ok();
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let Some(c) = client.as_ref() else { continue };
        n += 1;
        let base = k * 1_000_000 + n * 10;
        let values: Vec<i64> = if n % 4 == 0 {
            vec![base, base + 1, base + 2]
        } else {
            vec![base]
        };
        let result = tokio::time::timeout(Duration::from_secs(30), async {
            if values.len() == 1 {
                c.batch_execute(&format!("insert into jep values ({base}, {k})"))
                    .await
                    .map(|_| ())
            } else {
                let sink = c.copy_in("COPY jep FROM STDIN").await?;
                let mut sink = Box::pin(sink);
                let data: String = values.iter().map(|v| format!("{v}\t{k}\n")).collect();
                sink.send(bytes::Bytes::from(data)).await?;
                sink.as_mut().finish().await.map(|_| ())
            }
        })
        .await;
        match result {
            Ok(Ok(())) => history.acked.extend(values),
            _ => {
                history.unknown.extend(values);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    history
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
            tokio::spawn(client_loop(
                ports.clone(),
                k as usize % REPLICAS + 1,
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
        loop {
            if let Ok(c) = cluster.client_of(survivor).await
                && c.batch_execute("insert into jep_probe values (1)")
                    .await
                    .is_ok()
            {
                failovers.push(killed.elapsed().as_secs_f64());
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "no write committed within 60 s of killing replica {leader}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        acked.extend(h.acked);
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
    let mut prints = Vec::new();
    for n in 1..=REPLICAS {
        wait_serving(&cluster, n).await;
        let c = cluster.client_of(n).await.unwrap();
        let rows = pg::query(&c, "select v, count(*) from jep group by v")
            .await
            .unwrap();
        let seen: std::collections::HashMap<i64, i64> = rows
            .iter()
            .map(|r| {
                (
                    r[0].as_deref().unwrap().parse().unwrap(),
                    r[1].as_deref().unwrap().parse().unwrap(),
                )
            })
            .collect();
        for v in &acked {
            assert_eq!(seen.get(v), Some(&1), "acknowledged {v} on replica {n}");
        }
        for (v, count) in &seen {
            assert_eq!(*count, 1, "{v} is there {count} times on replica {n}");
            assert!(
                acked.contains(v) || unknown.contains(v),
                "{v} was never written"
            );
        }
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
