//! `blueshift local --demo`: the TPC-H schema in Redshift style, filled with a scale factor
//! 0.1 sample generated in-process (tpchgen). Each table is created if missing and loaded if
//! empty, through the same load path as COPY, so a restarted demo finishes what a killed one
//! started and never loads a table twice.

use arrow::array::RecordBatch;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::error::Result;
use crate::session::Executor;

pub const DEMO_SCALE_FACTOR: f64 = 0.1;

/// Redshift-style DDL for the eight TPC-H tables.
pub const TPCH_DDL: [(&str, &str); 8] = [
    (
        "region",
        "CREATE TABLE region (r_regionkey BIGINT NOT NULL, r_name CHAR(25) NOT NULL, r_comment VARCHAR(152)) DISTSTYLE ALL",
    ),
    (
        "nation",
        "CREATE TABLE nation (n_nationkey BIGINT NOT NULL, n_name CHAR(25) NOT NULL, n_regionkey BIGINT NOT NULL, n_comment VARCHAR(152)) DISTSTYLE ALL",
    ),
    (
        "supplier",
        "CREATE TABLE supplier (s_suppkey BIGINT NOT NULL, s_name CHAR(25) NOT NULL, s_address VARCHAR(40) NOT NULL, s_nationkey BIGINT NOT NULL, s_phone CHAR(15) NOT NULL, s_acctbal DECIMAL(15,2) NOT NULL, s_comment VARCHAR(101) NOT NULL) DISTSTYLE KEY DISTKEY(s_suppkey) SORTKEY(s_suppkey)",
    ),
    (
        "customer",
        "CREATE TABLE customer (c_custkey BIGINT NOT NULL, c_name VARCHAR(25) NOT NULL, c_address VARCHAR(40) NOT NULL, c_nationkey BIGINT NOT NULL, c_phone CHAR(15) NOT NULL, c_acctbal DECIMAL(15,2) NOT NULL, c_mktsegment CHAR(10) NOT NULL, c_comment VARCHAR(117) NOT NULL) DISTSTYLE KEY DISTKEY(c_custkey) SORTKEY(c_custkey)",
    ),
    (
        "part",
        "CREATE TABLE part (p_partkey BIGINT NOT NULL, p_name VARCHAR(55) NOT NULL, p_mfgr CHAR(25) NOT NULL, p_brand CHAR(10) NOT NULL, p_type VARCHAR(25) NOT NULL, p_size INTEGER NOT NULL, p_container CHAR(10) NOT NULL, p_retailprice DECIMAL(15,2) NOT NULL, p_comment VARCHAR(23) NOT NULL) DISTSTYLE KEY DISTKEY(p_partkey) SORTKEY(p_partkey)",
    ),
    (
        "partsupp",
        "CREATE TABLE partsupp (ps_partkey BIGINT NOT NULL, ps_suppkey BIGINT NOT NULL, ps_availqty INTEGER NOT NULL, ps_supplycost DECIMAL(15,2) NOT NULL, ps_comment VARCHAR(199) NOT NULL) DISTSTYLE KEY DISTKEY(ps_partkey) SORTKEY(ps_partkey)",
    ),
    (
        "orders",
        "CREATE TABLE orders (o_orderkey BIGINT NOT NULL, o_custkey BIGINT NOT NULL, o_orderstatus CHAR(1) NOT NULL, o_totalprice DECIMAL(15,2) NOT NULL, o_orderdate DATE NOT NULL, o_orderpriority CHAR(15) NOT NULL, o_clerk CHAR(15) NOT NULL, o_shippriority INTEGER NOT NULL, o_comment VARCHAR(79) NOT NULL) DISTSTYLE KEY DISTKEY(o_orderkey) SORTKEY(o_orderdate)",
    ),
    (
        "lineitem",
        "CREATE TABLE lineitem (l_orderkey BIGINT NOT NULL, l_partkey BIGINT NOT NULL, l_suppkey BIGINT NOT NULL, l_linenumber INTEGER NOT NULL, l_quantity DECIMAL(15,2) NOT NULL, l_extendedprice DECIMAL(15,2) NOT NULL, l_discount DECIMAL(15,2) NOT NULL, l_tax DECIMAL(15,2) NOT NULL, l_returnflag CHAR(1) NOT NULL, l_linestatus CHAR(1) NOT NULL, l_shipdate DATE NOT NULL, l_commitdate DATE NOT NULL, l_receiptdate DATE NOT NULL, l_shipinstruct CHAR(25) NOT NULL, l_shipmode CHAR(10) NOT NULL, l_comment VARCHAR(44) NOT NULL) DISTSTYLE KEY DISTKEY(l_orderkey) SORTKEY(l_shipdate)",
    ),
];

fn generate(
    table: &str,
    sf: f64,
) -> Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send> {
    match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, 1, 1))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, 1, 1))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(sf, 1, 1))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, 1, 1))),
        _ => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))),
    }
}

/// Creates and loads whatever part of the demo data set is missing.
pub async fn load_demo(executor: &Executor) -> Result<()> {
    for (name, ddl) in TPCH_DDL {
        let exists = executor
            .leader
            .catalog
            .snapshot()
            .table_by_name("public", name)
            .cloned();
        let def = match exists {
            Some(d) => d,
            None => {
                // Created as the built-in user, who owns them.
                let mut settings: std::collections::HashMap<String, String> = executor
                    .leader
                    .users
                    .first()
                    .map(|u| (crate::session::SESSION_USER.to_string(), u.clone()))
                    .into_iter()
                    .collect();
                executor.execute_sql(ddl, &mut settings).await?;
                match executor
                    .leader
                    .catalog
                    .snapshot()
                    .table_by_name("public", name)
                    .cloned()
                {
                    Some(d) => d,
                    None => continue,
                }
            }
        };
        if def.total_rows() > 0 {
            continue;
        }
        let started = std::time::Instant::now();
        let batches = generate(name, DEMO_SCALE_FACTOR);
        let rows = executor.load_batches(&def, batches).await?;
        tracing::info!(
            table = name,
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "demo table loaded"
        );
    }
    Ok(())
}
