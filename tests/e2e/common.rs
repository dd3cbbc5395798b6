//! Clusters shared by several tests of this binary, started once on first use.
//!
//! - [`tpch_cluster`]: 2 compute nodes x 2 slices with TPC-H SF 0.01 loaded by `COPY`; read
//!   only (used by `tpch` and `slt`).
//! - [`scratch_cluster`]: 2 compute nodes x 2 slices, empty; each test creates its own
//!   uniquely named tables (used by `bad_input` and `distribution`).
//!
//! Also small helpers: [`assert_cluster_healthy`], [`write_file`], [`rows_per_slice`].
//!
//! The clusters live in `static`s, so they are never dropped: the `Cluster` exit hook kills
//! them when the test binary exits. A start failure is remembered and reported by every
//! test that needs the cluster, instead of being retried by each.

use blueshift_tests::{Cluster, Rows, TpchData, load_tpch, tpch_data};
use tokio::sync::OnceCell;

/// Compute nodes in the shared clusters.
pub const NODES: usize = 2;
/// Slices per compute node in the shared clusters.
pub const SLICES_PER_NODE: usize = 2;

/// The shared TPC-H cluster and the files it was loaded from.
pub struct TpchCluster {
    pub cluster: Cluster,
    pub data: TpchData,
}

static TPCH: OnceCell<Result<TpchCluster, String>> = OnceCell::const_new();
static SCRATCH: OnceCell<Result<Cluster, String>> = OnceCell::const_new();

/// The shared cluster with TPC-H SF 0.01 loaded; panics if it could not be started.
pub async fn tpch_cluster() -> &'static TpchCluster {
    let started = TPCH
        .get_or_init(|| async { start_tpch().await.map_err(|e| format!("{e:#}")) })
        .await;
    match started {
        Ok(tpch) => tpch,
        Err(e) => panic!("the shared TPC-H cluster failed: {e}"),
    }
}

async fn start_tpch() -> anyhow::Result<TpchCluster> {
    let data = tpch_data()?;
    let cluster = Cluster::start(NODES, SLICES_PER_NODE).await?;
    let client = cluster.client().await?;
    if let Err(e) = load_tpch(&client, &data).await {
        anyhow::bail!("{e:#}\n{}", cluster.logs());
    }
    Ok(TpchCluster { cluster, data })
}

/// The shared empty cluster; panics if it could not be started.
pub async fn scratch_cluster() -> &'static Cluster {
    let started = SCRATCH
        .get_or_init(|| async {
            Cluster::start(NODES, SLICES_PER_NODE)
                .await
                .map_err(|e| format!("{e:#}"))
        })
        .await;
    match started {
        Ok(cluster) => cluster,
        Err(e) => panic!("the shared scratch cluster failed: {e}"),
    }
}

/// Asserts that nothing in the cluster panicked and that a new session can still query it.
pub async fn assert_cluster_healthy(cluster: &Cluster) {
    let panics = cluster.panics_in_log();
    assert!(panics.is_empty(), "a cluster process panicked: {panics:#?}");
    let client = cluster
        .client()
        .await
        .expect("a new session connects after the errors");
    let slices = blueshift_tests::pg::query_i64(&client, "select count(*) from stv_slices")
        .await
        .expect("stv_slices is readable");
    assert_eq!(slices as usize, cluster.slices(), "slices in stv_slices");
}

/// Writes `contents` to `name` in a fresh temp dir and returns both (keep the dir alive).
pub fn write_file(name: &str, contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("blueshift-e2e-input-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write test input");
    (dir, path)
}

/// Sums `stv_tbl_perm` rows given as `(slice, rows)` per slice `0..slices`. Panics on a
/// slice outside that range.
pub fn rows_per_slice(rows: &Rows, slices: usize) -> Vec<i64> {
    let mut per_slice = vec![0i64; slices];
    for row in rows {
        let slice: usize = cell(row, 0).parse().expect("slice is an integer");
        let n: i64 = cell(row, 1).parse().expect("rows is an integer");
        assert!(slice < slices, "slice {slice} out of range 0..{slices}");
        per_slice[slice] += n;
    }
    per_slice
}

/// Cell `i` of a result row, trimmed; panics if it is missing or NULL.
pub fn cell(row: &[Option<String>], i: usize) -> &str {
    row.get(i)
        .and_then(|c| c.as_deref())
        .unwrap_or_else(|| panic!("missing or NULL column {i} in {row:?}"))
        .trim()
}
