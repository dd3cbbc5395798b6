//! TPC-H for the tests: SF 0.01 Parquet files generated once with `tpchgen-cli` into
//! `target/tpch-data/sf0.01/`, Redshift-style DDL whose column types match those files, a
//! loader that creates and `COPY`s all eight tables, and the text of Q1 and Q6.
//!
//! Generation writes into a temporary sibling directory and renames it into place, so a run
//! killed half-way never leaves a partial data set that a later run would trust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

use crate::{paths, pg};

/// The eight TPC-H tables, in load order.
pub const TPCH_TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// Scale factor of the test data set.
pub const SCALE_FACTOR: &str = "0.01";

/// TPC-H Q1 (pricing summary report), standard text with DELTA = 90.
pub const Q1: &str = "\
select
    l_returnflag,
    l_linestatus,
    sum(l_quantity) as sum_qty,
    sum(l_extendedprice) as sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
    avg(l_quantity) as avg_qty,
    avg(l_extendedprice) as avg_price,
    avg(l_discount) as avg_disc,
    count(*) as count_order
from
    lineitem
where
    l_shipdate <= date '1998-12-01' - interval '90' day
group by
    l_returnflag,
    l_linestatus
order by
    l_returnflag,
    l_linestatus";

/// TPC-H Q6 (forecasting revenue change), standard text with DATE = 1994-01-01,
/// DISCOUNT = 0.06, QUANTITY = 24.
pub const Q6: &str = "\
select
    sum(l_extendedprice * l_discount) as revenue
from
    lineitem
where
    l_shipdate >= date '1994-01-01'
    and l_shipdate < date '1994-01-01' + interval '1' year
    and l_discount between .06 - 0.01 and .06 + 0.01
    and l_quantity < 24";

/// A generated TPC-H data set: one `<table>.parquet` per table in one directory.
#[derive(Clone, Debug)]
pub struct TpchData {
    dir: PathBuf,
}

impl TpchData {
    /// The directory holding the Parquet files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Parquet file of `table`.
    pub fn file(&self, table: &str) -> PathBuf {
        self.dir.join(format!("{table}.parquet"))
    }

    /// `(table, file)` for every TPC-H table, in load order.
    pub fn files(&self) -> Vec<(&'static str, PathBuf)> {
        TPCH_TABLES.iter().map(|t| (*t, self.file(t))).collect()
    }
}

/// Serializes generation between tests of one process (other processes are handled by the
/// atomic rename).
static GENERATE: Mutex<()> = Mutex::new(());

/// The SF 0.01 data set under `target/tpch-data/sf0.01/`, generated with `tpchgen-cli` on
/// first use.
pub fn tpch_data() -> Result<TpchData> {
    let _guard = GENERATE.lock().unwrap_or_else(|e| e.into_inner());
    let parent = paths::target_dir().join("tpch-data");
    let data = TpchData {
        dir: parent.join(format!("sf{SCALE_FACTOR}")),
    };
    if is_complete(&data) {
        return Ok(data);
    }
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".sf{SCALE_FACTOR}-tmp-"))
        .tempdir_in(&parent)
        .context("creating a temp dir for TPC-H generation")?;
    let tool = tpchgen_cli();
    eprintln!(
        "generating TPC-H SF {SCALE_FACTOR} into {} with {}",
        data.dir.display(),
        tool.display()
    );
    let output = Command::new(&tool)
        .arg("parquet")
        .arg("-s")
        .arg(SCALE_FACTOR)
        .arg(format!("--output-dir={}", tmp.path().display()))
        .output()
        .with_context(|| format!("running {} ({})", tool.display(), paths::SETUP_HINT))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            tool.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let generated = TpchData {
        dir: tmp.path().to_path_buf(),
    };
    if !is_complete(&generated) {
        bail!(
            "{} did not write all of {:?} into {}",
            tool.display(),
            TPCH_TABLES,
            tmp.path().display()
        );
    }
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, &data.dir) {
        // Another process may have won the race; its copy is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp_path);
        if !is_complete(&data) {
            return Err(e).with_context(|| format!("moving TPC-H data to {}", data.dir.display()));
        }
    }
    Ok(data)
}

fn is_complete(data: &TpchData) -> bool {
    TPCH_TABLES.iter().all(|t| {
        data.file(t)
            .metadata()
            .map(|m| m.is_file() && m.len() > 0)
            .unwrap_or(false)
    })
}

/// `tpchgen-cli` next to the venv's Python, else the one on `PATH`.
fn tpchgen_cli() -> PathBuf {
    let python = paths::python();
    let beside = python.with_file_name("tpchgen-cli");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("tpchgen-cli")
    }
}

/// Redshift-style `CREATE TABLE` statements for the eight tables, `(table, sql)` in load
/// order. Column names, order and types match the Parquet files of `tpchgen-cli` 4 (keys
/// BIGINT, money DECIMAL(15,2), dates DATE, text VARCHAR with the TPC-H lengths).
pub fn tpch_ddl() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "region",
            "CREATE TABLE region (
                r_regionkey BIGINT NOT NULL,
                r_name VARCHAR(25) NOT NULL,
                r_comment VARCHAR(152)
            ) DISTSTYLE ALL",
        ),
        (
            "nation",
            "CREATE TABLE nation (
                n_nationkey BIGINT NOT NULL,
                n_name VARCHAR(25) NOT NULL,
                n_regionkey BIGINT NOT NULL,
                n_comment VARCHAR(152)
            ) DISTSTYLE ALL",
        ),
        (
            "supplier",
            "CREATE TABLE supplier (
                s_suppkey BIGINT NOT NULL,
                s_name VARCHAR(25) NOT NULL,
                s_address VARCHAR(40) NOT NULL,
                s_nationkey BIGINT NOT NULL,
                s_phone VARCHAR(15) NOT NULL,
                s_acctbal DECIMAL(15,2) NOT NULL,
                s_comment VARCHAR(101) NOT NULL
            ) DISTSTYLE EVEN SORTKEY(s_suppkey)",
        ),
        (
            "customer",
            "CREATE TABLE customer (
                c_custkey BIGINT NOT NULL,
                c_name VARCHAR(25) NOT NULL,
                c_address VARCHAR(40) NOT NULL,
                c_nationkey BIGINT NOT NULL,
                c_phone VARCHAR(15) NOT NULL,
                c_acctbal DECIMAL(15,2) NOT NULL,
                c_mktsegment VARCHAR(10) NOT NULL,
                c_comment VARCHAR(117) NOT NULL
            ) DISTSTYLE KEY DISTKEY(c_custkey) SORTKEY(c_custkey)",
        ),
        (
            "part",
            "CREATE TABLE part (
                p_partkey BIGINT NOT NULL DISTKEY,
                p_name VARCHAR(55) NOT NULL,
                p_mfgr VARCHAR(25) NOT NULL,
                p_brand VARCHAR(10) NOT NULL,
                p_type VARCHAR(25) NOT NULL,
                p_size INTEGER NOT NULL,
                p_container VARCHAR(10) NOT NULL,
                p_retailprice DECIMAL(15,2) NOT NULL,
                p_comment VARCHAR(23) NOT NULL
            ) SORTKEY(p_partkey)",
        ),
        (
            "partsupp",
            "CREATE TABLE partsupp (
                ps_partkey BIGINT NOT NULL,
                ps_suppkey BIGINT NOT NULL,
                ps_availqty INTEGER NOT NULL,
                ps_supplycost DECIMAL(15,2) NOT NULL,
                ps_comment VARCHAR(199) NOT NULL
            ) DISTSTYLE KEY DISTKEY(ps_partkey) SORTKEY(ps_partkey)",
        ),
        (
            "orders",
            "CREATE TABLE orders (
                o_orderkey BIGINT NOT NULL,
                o_custkey BIGINT NOT NULL,
                o_orderstatus CHAR(1) NOT NULL,
                o_totalprice DECIMAL(15,2) NOT NULL,
                o_orderdate DATE NOT NULL,
                o_orderpriority VARCHAR(15) NOT NULL,
                o_clerk VARCHAR(15) NOT NULL,
                o_shippriority INTEGER NOT NULL,
                o_comment VARCHAR(79) NOT NULL
            ) DISTSTYLE KEY DISTKEY(o_orderkey) SORTKEY(o_orderdate)",
        ),
        (
            "lineitem",
            "CREATE TABLE lineitem (
                l_orderkey BIGINT NOT NULL,
                l_partkey BIGINT NOT NULL,
                l_suppkey BIGINT NOT NULL,
                l_linenumber INTEGER NOT NULL,
                l_quantity DECIMAL(15,2) NOT NULL,
                l_extendedprice DECIMAL(15,2) NOT NULL,
                l_discount DECIMAL(15,2) NOT NULL,
                l_tax DECIMAL(15,2) NOT NULL,
                l_returnflag CHAR(1) NOT NULL,
                l_linestatus CHAR(1) NOT NULL,
                l_shipdate DATE NOT NULL,
                l_commitdate DATE NOT NULL,
                l_receiptdate DATE NOT NULL,
                l_shipinstruct VARCHAR(25) NOT NULL,
                l_shipmode VARCHAR(10) NOT NULL,
                l_comment VARCHAR(44) NOT NULL
            ) DISTSTYLE KEY DISTKEY(l_orderkey) SORTKEY(l_shipdate)",
        ),
    ]
}

/// Creates the eight tables and loads each with `COPY ... FORMAT AS PARQUET` from `data`.
/// Returns the row count of each `COPY` command tag, `(table, rows)`.
pub async fn load_tpch(client: &Client, data: &TpchData) -> Result<Vec<(&'static str, u64)>> {
    let mut loaded = Vec::new();
    for (table, ddl) in tpch_ddl() {
        pg::execute(client, ddl)
            .await
            .with_context(|| format!("creating {table}"))?;
        let copy = format!(
            "COPY {table} FROM {} FORMAT AS PARQUET",
            paths::sql_literal(&data.file(table).to_string_lossy())
        );
        let rows = pg::execute(client, &copy)
            .await
            .with_context(|| format!("loading {table}"))?;
        loaded.push((table, rows));
    }
    Ok(loaded)
}
