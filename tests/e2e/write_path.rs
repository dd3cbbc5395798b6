//! The write path under concurrency and at random:
//!
//! - `random_writes_match_duckdb`: 1,000 random INSERT / UPDATE / DELETE / MERGE / TRUNCATE
//!   statements, some inside transaction blocks that commit and some inside blocks that roll
//!   back, applied to a 3-node cluster with a KEY, an EVEN and an ALL table and to DuckDB;
//!   every 50 statements the three tables' full contents must be equal. The sequence is
//!   seeded (`BLUESHIFT_WRITE_SEED` replays one).
//! - `a_reader_keeps_its_snapshot_while_a_writer_commits`: a cursor opened before a DELETE
//!   commits reads every old row to its end; a block that began before it still sees them;
//!   a new session does not.
//! - `a_dropped_connection_discards_its_open_block`: rows and a table written in a block
//!   whose client disconnects are never visible.
//! - `temporary_tables_end_with_their_session`: `CREATE TEMP TABLE` (and a temporary CTAS)
//!   are dropped when the session closes.
//! - `temporary_tables_are_their_sessions_own`: two sessions each have a temporary table of
//!   one name, shadowing a permanent one that other sessions (and `public.t`) still read;
//!   prepared statements and `information_schema` see the session's own.

use blueshift_tests::{Cluster, DuckDb, Rows, pg};

/// SplitMix64: a small, seedable generator, so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const TABLES: [&str; 3] = ["rw_key", "rw_even", "rw_all"];

fn value(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        "NULL".into()
    } else {
        rng.below(1000).to_string()
    }
}

/// One random statement that changes rows (the same text runs on both engines).
fn statement(rng: &mut Rng) -> String {
    let t = rng.pick(&TABLES);
    // Another table (a table named twice in one FROM is an error).
    let others: Vec<&str> = TABLES.iter().copied().filter(|o| *o != t).collect();
    let other = rng.pick(&others);
    match rng.below(100) {
        0..=29 => {
            let rows: Vec<String> = (0..1 + rng.below(5))
                .map(|_| format!("({}, {}, {})", rng.below(60), rng.below(8), value(rng)))
                .collect();
            format!("insert into {t} values {}", rows.join(", "))
        }
        30..=34 => format!(
            "insert into {t} select id + 100, grp, v from {other} where grp = {}",
            rng.below(8)
        ),
        35..=44 => format!(
            "update {t} set v = v + {} where grp = {}",
            rng.below(50),
            rng.below(8)
        ),
        // Changes the distribution key of the KEY table: rows move between slices.
        45..=49 => format!(
            "update {t} set id = id + {}, grp = (grp + 1) % 8 where v < {}",
            1 + rng.below(7),
            rng.below(1000)
        ),
        // FROM rows unique per target row (a row matched twice is an error).
        50..=54 => format!(
            "update {t} set v = s.v from (select grp, max(v) as v from {other} group by grp) s \
             where {t}.id = s.grp + {} and s.v is not null and {t}.grp = {}",
            rng.below(40),
            rng.below(8)
        ),
        55..=66 => format!("delete from {t} where v > {}", 500 + rng.below(500)),
        67..=71 => format!(
            "delete from {t} where grp = {} and id < {}",
            rng.below(8),
            rng.below(60)
        ),
        72..=76 => format!(
            "delete from {t} using {other} where {t}.id = {other}.id and {other}.grp = {}",
            rng.below(8)
        ),
        77..=88 => {
            // Source rows are unique per id, so no target row is matched twice.
            let action = if rng.below(3) == 0 {
                "delete".to_string()
            } else {
                format!("update set v = s.v + {}", rng.below(10))
            };
            format!(
                "merge into {t} using (select id, max(v) as v from {other} where grp = {} group by id) s \
                 on {t}.id = s.id when matched then {action} \
                 when not matched then insert values (s.id, {}, s.v)",
                rng.below(8),
                rng.below(8)
            )
        }
        89..=90 => format!("truncate {t}"),
        _ => format!("delete from {t} where v is null and grp = {}", rng.below(8)),
    }
}

/// The statements of the run: single statements and blocks (`begin ... commit|rollback`).
fn sequence(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n + 64);
    while out.len() < n {
        if rng.below(10) == 0 {
            out.push("begin".to_string());
            for _ in 0..1 + rng.below(4) {
                out.push(statement(&mut rng));
            }
            out.push(
                if rng.below(2) == 0 {
                    "rollback"
                } else {
                    "commit"
                }
                .to_string(),
            );
        } else {
            out.push(statement(&mut rng));
        }
    }
    out
}

fn contents(t: &str) -> String {
    format!("select id, grp, v from {t} order by id, grp, v nulls last")
}

#[tokio::test]
async fn random_writes_match_duckdb() {
    let seed: u64 = std::env::var("BLUESHIFT_WRITE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261202);
    let cluster = Cluster::start(3, 2).await.unwrap();
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    let ddl = [
        "create table rw_key (id integer, grp integer, v integer) diststyle key distkey(id) sortkey(grp)",
        "create table rw_even (id integer, grp integer, v integer) diststyle even",
        "create table rw_all (id integer, grp integer, v integer) diststyle all",
    ];
    for d in ddl {
        pg::execute(&client, d).await.unwrap();
    }
    // DuckDB replays the same statements, with the table contents read at each checkpoint.
    let mut oracle: Vec<String> = TABLES
        .iter()
        .map(|t| format!("create table {t} (id integer, grp integer, v integer)"))
        .collect();
    let mut checks: Vec<(usize, usize, &str, Rows)> = Vec::new();
    let statements = sequence(seed, 1000);
    let mut pending = false;
    for (i, sql) in statements.iter().enumerate() {
        if let Err(e) = pg::execute(&client, sql).await {
            panic!("seed {seed}, statement {i} failed on Blueshift: {e:#}\n  {sql}");
        }
        oracle.push(sql.clone());
        let in_block = statements[..=i]
            .iter()
            .rev()
            .find(|s| *s == "begin" || *s == "commit" || *s == "rollback")
            .is_some_and(|s| s == "begin");
        // Every 50 statements (at the first point outside a block), and at the end.
        pending |= (i + 1) % 50 == 0;
        if (pending && !in_block) || i + 1 == statements.len() {
            pending = false;
            for t in TABLES {
                let rows = pg::query(&client, &contents(t)).await.unwrap();
                checks.push((i, oracle.len(), t, rows));
                oracle.push(contents(t));
            }
        }
    }
    let answers = DuckDb::new().unwrap().query_all(&oracle).unwrap();
    for (at, (i, index, table, rows)) in checks.iter().enumerate() {
        let expected = match &answers[*index] {
            Ok(r) => r,
            Err(e) => panic!("DuckDB failed at check {at}: {e}"),
        };
        assert_eq!(
            rows, expected,
            "seed {seed}: after statement {i} ({}), {table} differs from DuckDB",
            statements[*i]
        );
    }
    for (k, answer) in answers.iter().enumerate() {
        if let Err(e) = answer {
            panic!("seed {seed}: DuckDB failed on {}: {e}", oracle[k]);
        }
    }
    assert!(checks.len() >= 60, "{} checkpoints", checks.len());
    // The run is not trivial: every table held a fair number of rows at some point.
    for t in TABLES {
        let most = checks
            .iter()
            .filter(|c| c.2 == t)
            .map(|c| c.3.len())
            .max()
            .unwrap_or(0);
        assert!(most >= 20, "{t} never held more than {most} rows");
    }
}

#[tokio::test]
async fn a_reader_keeps_its_snapshot_while_a_writer_commits() {
    let cluster = crate::common::scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let writer = cluster.client().await.unwrap();
    pg::execute(
        &writer,
        "create table snap_t (a integer, b integer) distkey(a)",
    )
    .await
    .unwrap();
    for k in 0..4 {
        pg::execute(
            &writer,
            &format!(
                "insert into snap_t select value + {}, value % 7 from generate_series(1, 25000)",
                k * 25000
            ),
        )
        .await
        .unwrap();
    }
    let reader = cluster.client().await.unwrap();
    pg::execute(&reader, "begin").await.unwrap();
    pg::execute(
        &reader,
        "declare c cursor for select a from snap_t order by a",
    )
    .await
    .unwrap();
    let first = pg::query(&reader, "fetch 1000 from c").await.unwrap();
    assert_eq!(first.len(), 1000);

    // Another session deletes most rows and commits while the cursor is open.
    let deleted = pg::execute(&writer, "delete from snap_t where b <> 0")
        .await
        .unwrap();
    assert!(deleted > 80_000, "deleted {deleted}");
    assert_eq!(
        pg::query_i64(&writer, "select count(*) from snap_t")
            .await
            .unwrap(),
        100_000 - deleted as i64
    );

    // The cursor reads the rows of its snapshot to the end; the block still sees them.
    let rest = pg::query(&reader, "fetch all from c").await.unwrap();
    assert_eq!(first.len() + rest.len(), 100_000);
    assert_eq!(
        pg::query_i64(&reader, "select count(*) from snap_t")
            .await
            .unwrap(),
        100_000
    );
    pg::execute(&reader, "commit").await.unwrap();
    assert_eq!(
        pg::query_i64(&reader, "select count(*) from snap_t")
            .await
            .unwrap(),
        100_000 - deleted as i64
    );
}

#[tokio::test]
async fn a_dropped_connection_discards_its_open_block() {
    let cluster = crate::common::scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let observer = cluster.client().await.unwrap();
    pg::execute(&observer, "create table drop_t (a integer)")
        .await
        .unwrap();
    pg::execute(&observer, "insert into drop_t values (1), (2)")
        .await
        .unwrap();
    {
        let client = cluster.client().await.unwrap();
        pg::execute(&client, "begin").await.unwrap();
        pg::execute(&client, "insert into drop_t values (3), (4)")
            .await
            .unwrap();
        pg::execute(&client, "delete from drop_t where a = 1")
            .await
            .unwrap();
        pg::execute(&client, "create table drop_new as select * from drop_t")
            .await
            .unwrap();
        // The client goes away without COMMIT (dropping it closes the connection).
        drop(client);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let rows = pg::query(&observer, "select a from drop_t order by a")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![Some("1".to_string())], vec![Some("2".to_string())]]
    );
    let err = pg::query(&observer, "select * from drop_new")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("drop_new"), "{err:#}");
    crate::common::assert_cluster_healthy(cluster).await;
}

#[tokio::test]
async fn temporary_tables_end_with_their_session() {
    let cluster = crate::common::scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let observer = cluster.client().await.unwrap();
    {
        let session = cluster.client().await.unwrap();
        pg::execute(&session, "create temp table tmp_a (x integer)")
            .await
            .unwrap();
        pg::execute(&session, "insert into tmp_a values (1), (2)")
            .await
            .unwrap();
        pg::execute(
            &session,
            "create temporary table tmp_b as select x * 10 as y from tmp_a",
        )
        .await
        .unwrap();
        assert_eq!(
            pg::query_i64(&session, "select sum(y) from tmp_b")
                .await
                .unwrap(),
            30
        );
        // A block that rolls back takes its temporary table with it.
        pg::execute(&session, "begin").await.unwrap();
        pg::execute(&session, "create temp table tmp_c (z integer)")
            .await
            .unwrap();
        pg::execute(&session, "rollback").await.unwrap();
        let err = pg::query(&session, "select * from tmp_c")
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("tmp_c"), "{err:#}");
        drop(session);
    }
    // The session ended: its temporary tables are dropped (soon after the close). Another
    // session never sees them by name, so ask the catalog.
    let listed = "select count(*) from svv_table_info where \"table\" in ('tmp_a', 'tmp_b')";
    let mut gone = false;
    for _ in 0..50 {
        if pg::query_i64(&observer, listed).await.unwrap() == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "temporary tables outlived their session");
    // The names are free again.
    pg::execute(&observer, "create table tmp_a (x integer)")
        .await
        .unwrap();
    pg::execute(&observer, "drop table tmp_a").await.unwrap();
}

#[tokio::test]
async fn temporary_tables_are_their_sessions_own() {
    let cluster = crate::common::scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let observer = cluster.client().await.unwrap();
    let a = cluster.client().await.unwrap();
    let b = cluster.client().await.unwrap();
    pg::execute(&observer, "create table shadow_t (v integer)")
        .await
        .unwrap();
    pg::execute(&observer, "insert into shadow_t values (1)")
        .await
        .unwrap();
    for (session, v) in [(&a, 2), (&b, 3)] {
        pg::execute(session, "create temp table shadow_t (v integer)")
            .await
            .unwrap();
        pg::execute(session, &format!("insert into shadow_t values ({v})"))
            .await
            .unwrap();
    }
    let v = "select sum(v) from shadow_t";
    assert_eq!(pg::query_i64(&a, v).await.unwrap(), 2, "a reads its own");
    assert_eq!(pg::query_i64(&b, v).await.unwrap(), 3, "b reads its own");
    assert_eq!(
        pg::query_i64(&observer, v).await.unwrap(),
        1,
        "others the permanent one"
    );
    assert_eq!(
        pg::query_i64(&a, "select sum(v) from public.shadow_t")
            .await
            .unwrap(),
        1,
        "public.shadow_t is the permanent one"
    );
    // The extended protocol (a prepared statement with a parameter) resolves it the same.
    let rows = a
        .query("select v from shadow_t where v > $1", &[&0i32])
        .await
        .unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, [2]);
    // information_schema lists the session's own temporary table beside the permanent one.
    assert_eq!(
        pg::query_i64(
            &b,
            "select count(*) from information_schema.columns where table_name = 'shadow_t'"
        )
        .await
        .unwrap(),
        2
    );
    let err = pg::expect_db_error(&a, "create temp table public.tmp_q (x integer)")
        .await
        .unwrap();
    assert_eq!(err.code().code(), "42P16", "{}", err.message());
    // Dropping it uncovers the permanent table again.
    pg::execute(&a, "drop table shadow_t").await.unwrap();
    assert_eq!(pg::query_i64(&a, v).await.unwrap(), 1);
    assert_eq!(pg::query_i64(&b, v).await.unwrap(), 3);
    pg::execute(&observer, "drop table shadow_t").await.unwrap();
}
