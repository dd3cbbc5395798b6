//! Leader replicas (`blueshift local --leaders 3`): the catalog replicated with raft.
//! A write acknowledged by one replica is seen by a statement that starts afterwards on
//! another; killing the raft leader elects a new one, writes go on through the survivors
//! (the failover time is printed), `blueshift local` restarts the killed replica, which
//! catches up; at the end every replica reports the same catalog version and contents.

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
    let name = if leader == 1 {
        "leader".to_string()
    } else {
        format!("leader-{leader}")
    };
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
