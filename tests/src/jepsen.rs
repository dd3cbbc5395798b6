//! The writing client of the Jepsen-style tests (`tests/e2e/leader_ha.rs`,
//! `tests/e2e/leader_partition.rs`): unique values written with acknowledged single-row
//! INSERTs and 3-row COPYs, each write's outcome recorded, reconnecting whenever a write
//! fails (its replica may be gone, restarted or cut off).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// What one client did: values whose write was acknowledged (and when), and values whose
/// write failed (they may or may not have been committed).
#[derive(Default)]
pub struct History {
    pub acked: Vec<(i64, Instant)>,
    pub unknown: Vec<i64>,
}

/// Client `k` writes values `k * 1_000_000 + 10n (+1, +2)` into `table (v bigint, client
/// int)` until `stop`: every fourth write a 3-row COPY, the others single-row INSERTs, each
/// bounded by 30 s. `connect` opens a connection to the client's replica.
pub async fn write_unique_values<F, Fut>(
    connect: F,
    table: &str,
    k: i64,
    stop: Arc<AtomicBool>,
) -> History
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Client>>,
{
    use futures::SinkExt;
    let mut history = History::default();
    let mut client: Option<Client> = None;
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect().await.ok();
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
                c.batch_execute(&format!("insert into {table} values ({base}, {k})"))
                    .await
                    .map(|_| ())
            } else {
                let sink = c.copy_in(&format!("COPY {table} FROM STDIN")).await?;
                let mut sink = Box::pin(sink);
                let data: String = values.iter().map(|v| format!("{v}\t{k}\n")).collect();
                sink.send(bytes::Bytes::from(data)).await?;
                sink.as_mut().finish().await.map(|_| ())
            }
        })
        .await;
        match result {
            Ok(Ok(())) => {
                let at = Instant::now();
                history.acked.extend(values.into_iter().map(|v| (v, at)));
            }
            _ => {
                history.unknown.extend(values);
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    history
}

/// Seconds from `since` (a raft leader was killed) until `sql` commits on a connection
/// `connect` opens (a fresh one each try: the last may have been to the dead replica);
/// panics after 60 s.
pub async fn until_a_write_commits<F, Fut>(connect: F, sql: &str, since: Instant) -> f64
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Client>>,
{
    loop {
        if let Ok(c) = connect().await
            && c.batch_execute(sql).await.is_ok()
        {
            return since.elapsed().as_secs_f64();
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "no write committed within 60 s of killing the raft leader: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one replica's `select v, count(*) ... group by v`: every acknowledged value is
/// there exactly once, and nothing is there twice or that no client tried to write.
pub fn assert_exactly_once(
    rows: &crate::Rows,
    acked: &HashSet<i64>,
    unknown: &HashSet<i64>,
    replica: usize,
) {
    let seen: HashMap<i64, i64> = rows
        .iter()
        .map(|r| {
            let number = |i: usize| -> i64 {
                r.get(i)
                    .and_then(|c| c.as_deref())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not a (value, count) row: {r:?}"))
            };
            (number(0), number(1))
        })
        .collect();
    for v in acked {
        assert_eq!(
            seen.get(v),
            Some(&1),
            "acknowledged {v} on replica {replica}"
        );
    }
    for (v, count) in &seen {
        assert_eq!(*count, 1, "{v} is there {count} times on replica {replica}");
        assert!(
            acked.contains(v) || unknown.contains(v),
            "{v} on replica {replica} was never written"
        );
    }
}
