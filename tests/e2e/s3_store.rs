//! The segment store on S3 (a real moto server on loopback), the compute nodes' segment
//! cache, garbage collection of unreferenced segments, and queries that survive killed
//! compute nodes.
//!
//! - `tpch_slt_and_the_cache_on_an_s3_store`: a 2x2 cluster whose only store is an S3
//!   bucket loads TPC-H with COPY; its segments are in the bucket and nowhere on disk; the 22
//!   queries match DuckDB and every `.slt` file passes; EXPLAIN ANALYZE shows a cold run
//!   reading from the store and a warm run reading nothing from it; `stv_node_cache` counts.
//! - `gc_removes_dropped_tables_and_killed_loads`: with a 2 s grace period, a dropped table's
//!   segments leave the store; a COPY whose leader is SIGKILLed after it wrote a segment
//!   leaves the table exactly as before (after a restart) and its segment is collected.
//! - `queries_survive_killed_compute_nodes`: two clients loop over TPC-H queries on a 3-node
//!   cluster while two compute nodes are SIGKILLed one after the other (`local` restarts
//!   them): no query fails, every answer matches DuckDB, and `stl_retries` shows the retries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blueshift_tests::tpch_queries::TPCH_QUERIES;
use blueshift_tests::{Cluster, ClusterOptions, S3Server, load_tpch, pg, tpch_data};

use crate::slt::run_slt_files;
use crate::tpch_queries::{QueryLoops, duckdb_answers, report, run_all};

/// Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The `Segment cache:` line of an EXPLAIN ANALYZE: `(hits, misses, bytes from the store)`.
async fn cache_line(client: &tokio_postgres::Client, sql: &str) -> (u64, u64, u64) {
    let rows = pg::query(client, &format!("explain analyze {sql}"))
        .await
        .unwrap();
    let line = rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .find(|l| l.starts_with("Segment cache:"))
        .unwrap_or_else(|| panic!("no segment cache line in {rows:?}"));
    let number = |key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    (
        number("hits="),
        number("misses="),
        number("bytes read from the store="),
    )
}

#[tokio::test]
async fn tpch_slt_and_the_cache_on_an_s3_store() {
    let s3 = S3Server::start().unwrap();
    s3.create_bucket("warehouse").unwrap();
    let options = ClusterOptions::s3(&s3, "warehouse", "e2e/tpch");
    let cluster = Cluster::start_with(2, 2, &options).await.unwrap();
    let _logs = cluster.logs_on_panic();
    let data = tpch_data().unwrap();
    let client = cluster.client().await.unwrap();
    load_tpch(&client, &data).await.unwrap();

    // The segments are in the bucket, under the prefix, and not on local disk.
    let keys = s3.list("warehouse", "e2e/tpch/tables/").unwrap();
    assert!(
        keys.len() >= 8 && keys.iter().all(|k| k.ends_with(".parquet")),
        "segments in the bucket: {keys:?}"
    );
    assert!(
        parquet_files(&cluster.root().join("data")).is_empty(),
        "no segment may be written to local disk with an S3 store"
    );

    // Cold, then warm: the second run reads nothing from the store. A new table's
    // segments are in no cache yet (loads do not fill caches).
    pg::execute(
        &client,
        "create table cache_probe (a bigint, b bigint) distkey(a)",
    )
    .await
    .unwrap();
    pg::execute(
        &client,
        "insert into cache_probe select value, value * 3 from generate_series(1, 20000)",
    )
    .await
    .unwrap();
    let q = "select a % 10, count(*), sum(b) from cache_probe group by 1";
    let (_, cold_misses, cold_bytes) = cache_line(&client, q).await;
    assert!(
        cold_misses > 0 && cold_bytes > 0,
        "a cold run reads from S3"
    );
    let (warm_hits, warm_misses, warm_bytes) = cache_line(&client, q).await;
    assert_eq!(
        (warm_misses, warm_bytes),
        (0, 0),
        "a warm run must read nothing from S3"
    );
    assert!(warm_hits > 0);
    let rows = pg::query(
        &client,
        "select sum(hits), sum(misses), sum(store_bytes), count(*) from stv_node_cache",
    )
    .await
    .unwrap();
    let n = |i: usize| -> i64 { rows[0][i].as_deref().unwrap().parse().unwrap() };
    assert!(n(0) >= warm_hits as i64 && n(1) >= cold_misses as i64 && n(2) > 0);
    assert_eq!(n(3), 2, "one stv_node_cache row per compute node");
    // The .slt files expect the TPC-H tables only.
    pg::execute(&client, "drop table cache_probe")
        .await
        .unwrap();

    let failures = run_all(&cluster, "2x2 on S3", duckdb_answers(&data)).await;
    report("TPC-H on the S3 store", TPCH_QUERIES.len(), &failures);
    let slt_failures = run_slt_files(cluster.pg_port()).await;
    assert!(
        slt_failures.is_empty(),
        "{} sqllogictest records failed on the S3 store:\n\n{}",
        slt_failures.len(),
        slt_failures.join("\n")
    );
}

/// Polls `check` every 200 ms until it holds, for at most `timeout`.
async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn table_id(client: &tokio_postgres::Client, table: &str) -> i64 {
    pg::query_i64(
        client,
        &format!(
            "select table_id from svv_store_usage where kind = 'table' and tablename = '{table}'"
        ),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn gc_removes_dropped_tables_and_killed_loads() {
    let root = tempfile::Builder::new()
        .prefix("blueshift-e2e-gc-")
        .tempdir()
        .unwrap();
    let options = ClusterOptions::default().arg("--gc-grace-secs").arg("2");
    let store = root.path().join("data/store/tables");

    let cluster = Cluster::start_in_with(root.path(), 1, 1, &options)
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    pg::execute(&client, "create table gone (a integer)")
        .await
        .unwrap();
    pg::execute(&client, "insert into gone values (1), (2), (3)")
        .await
        .unwrap();
    let gone = table_id(&client, "gone").await;
    assert_eq!(parquet_files(&store.join(gone.to_string())).len(), 1);
    pg::execute(&client, "drop table gone").await.unwrap();
    eventually(
        Duration::from_secs(30),
        "a dropped table's segments are deleted",
        async || parquet_files(&store.join(gone.to_string())).is_empty(),
    )
    .await;

    // A load killed with its leader after it wrote a segment (2M rows make the first one).
    pg::execute(&client, "create table big (a bigint, b bigint)")
        .await
        .unwrap();
    pg::execute(&client, "insert into big values (1, 1), (2, 2)")
        .await
        .unwrap();
    let big = table_id(&client, "big").await;
    let big_dir = store.join(big.to_string());
    let csv = root.path().join("big.csv");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        for i in 0..3_000_000u64 {
            writeln!(f, "{i},{}", i * 7).unwrap();
        }
    }
    let copy = {
        let client = cluster.client().await.unwrap();
        let sql = format!("copy big from '{}' format as csv", csv.display());
        tokio::spawn(async move { client.simple_query(&sql).await })
    };
    eventually(
        Duration::from_secs(300),
        "the load writes its first segment",
        async || parquet_files(&big_dir).len() >= 2,
    )
    .await;
    cluster.signal("leader", "KILL").unwrap();
    assert!(
        copy.await.unwrap().is_err(),
        "a COPY whose leader died cannot report success"
    );
    drop(cluster);
    assert!(
        parquet_files(&big_dir).len() >= 2,
        "the killed load left an unreferenced segment"
    );

    let cluster = Cluster::start_in_with(root.path(), 1, 1, &options)
        .await
        .unwrap();
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    assert_eq!(
        pg::query(&client, "select a, b from big order by a")
            .await
            .unwrap(),
        vec![
            vec![Some("1".to_string()), Some("1".to_string())],
            vec![Some("2".to_string()), Some("2".to_string())],
        ],
        "the table is exactly as before the killed load"
    );
    // GC deletes the killed load's files (segments and any temp file it left) and then
    // reports nothing awaiting it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let awaiting = pg::query_i64(
            &client,
            "select count(*) from svv_store_usage where kind = 'awaiting_gc'",
        )
        .await
        .unwrap();
        if parquet_files(&big_dir).len() == 1 && awaiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            let usage = pg::query(&client, "select * from svv_store_usage")
                .await
                .unwrap();
            panic!(
                "unreferenced segments left after 30 s: svv_store_usage {usage:?}, store \
                 files {:?}\n{}",
                walk(&store),
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pg::query_i64(&client, "select count(*) from big")
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn queries_survive_killed_compute_nodes() {
    let data = tpch_data().unwrap();
    let expected = duckdb_answers(&data);
    let cluster = Cluster::start(3, 1).await.unwrap();
    let _logs = cluster.logs_on_panic();
    load_tpch(&cluster.client().await.unwrap(), &data)
        .await
        .unwrap();

    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(cluster.client().await.unwrap());
    }
    let workload = QueryLoops::start(clients, expected);
    for node in ["compute-1", "compute-2"] {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.signal(node, "KILL").unwrap();
        eprintln!("killed {node}");
    }
    // Let the restarted nodes rejoin and serve for a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (runs, failures) = workload.finish().await;
    let client = cluster.client().await.unwrap();
    let retries = pg::query_i64(&client, "select count(*) from stl_retries")
        .await
        .unwrap();
    eprintln!("{runs} queries while 2 nodes were killed; {retries} retries");
    report("queries while compute nodes were killed", runs, &failures);
    assert!(
        retries > 0,
        "the kills must have cost retries (stl_retries)"
    );
    let up = pg::query_i64(
        &client,
        "select count(*) from stv_slices where state = 'up'",
    )
    .await
    .unwrap();
    assert_eq!(up, 3, "every slice is served again");
}
