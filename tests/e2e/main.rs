//! Blueshift's end-to-end suite: one test binary that starts real clusters (the `blueshift`
//! binary: a leader and compute processes on loopback) and talks to them over the PostgreSQL
//! protocol with tokio-postgres. Answers are checked against DuckDB run on the same input
//! files in the same test run.
//!
//! Needs `target/debug/blueshift` (or `BLUESHIFT_BIN`) and the test venv (`.venv`, or
//! `BLUESHIFT_PYTHON`) with `duckdb` and `tpchgen-cli`; `tests/run-all.sh` provides both.

// Tests fail by panicking; an unwrap of an anyhow error prints its whole context chain.
#![allow(clippy::unwrap_used)]

// Shared clusters (TPC-H loaded; scratch) and small helpers.
mod common;

// TPC-H SF 0.01 loaded with COPY: table counts, Q1 and Q6 against DuckDB.
mod tpch;

// All 22 TPC-H queries against DuckDB: on the shared cluster, and on clusters of shapes
// 1x1, 3x1, 1x4 and 2x4 (nodes x slices per node); every failure is reported at the end.
mod tpch_queries;

// The sqllogictest files in tests/slt/ against the TPC-H cluster, and their pinned
// answers against DuckDB.
mod slt;

// The write path under concurrency and at random: 1,000 random writes (some in blocks that
// roll back) against DuckDB on a 3-node cluster; snapshots kept by readers; a dropped
// connection's block discarded.
mod write_path;

// dbt: the tests/dbt project with dbt-postgres, its models checked against DuckDB.
mod dbt;

// Bad input: malformed CSV, unknown table/column, missing file, type mismatch; each a
// clear SQLSTATE, nothing partial committed, the session still usable.
mod bad_input;

// Data distribution: KEY / EVEN / ALL tables across slices and nodes, stv_slices and
// stv_tbl_perm, a GROUP BY on a KEY table against DuckDB.
mod distribution;

// Durability: tables and rows survive a SIGTERM stop and a start on the same data dir.
mod restart;

// Fault injection: a compute node killed with SIGKILL mid-session.
mod node_failure;

// The S3 segment store (moto), the segment cache, garbage collection, and queries retried
// on the remaining nodes while compute nodes are killed.
mod s3_store;

// Elastic resize: a node joins a running cluster and serves within seconds; drained nodes
// (SIGTERM) leave with no failed or retried query.
mod resize;

// Many machines: leader and two compute nodes in separate network namespaces sharing only
// a moto S3 server; TPC-H against DuckDB before and after a compute node is killed.
mod multi_host;

// The MPP planner: EXPLAIN join labels (collocated, ALL, broadcast, redistributed) and
// their answers against DuckDB; errors raised inside stages.
mod mpp;

// Zone maps: a predicate on the sort key skips Parquet row groups (EXPLAIN ANALYZE metrics).
mod pruning;

// Redshift's SHOW DATABASES / SCHEMAS / TABLES / COLUMNS, simple and extended protocol.
mod metadata;

// COPY ... FROM STDIN through the COPY sub-protocol (tokio-postgres copy_in).
mod copy_stdin;

// The client matrix: tokio-postgres, psql, psycopg, SQLAlchemy, redshift_connector and
// pgjdbc log in with a password, load, query with parameters and browse the metadata.
mod clients;

// Leader replicas (`--leaders 3`): read-your-writes across replicas 1000 times, the raft
// leader SIGKILLed and the failover time printed, the killed replica restarted and caught
// up, every replica with the same catalog version and contents; a Jepsen-style run of 4
// writing clients through 5 raft leader kills and a paused follower.
mod leader_ha;

// The Jepsen-style run on separate network namespaces: 3 `blueshift leader` replicas and 2
// compute nodes, 4 writing clients, 5 raft leader SIGKILLs and a follower whose link is cut;
// every acknowledged value on every replica exactly once. Skips without root.
mod leader_partition;

// Privileges: each privilege refused without it and granted with it, through psql,
// psycopg and ADBC Flight SQL; views with their owner's rights; REVOKE in an open session.
mod privileges;

// Login and secrets: the data dir holds SCRAM keys, never a salted password (searched
// with Python's PBKDF2); MD5 secrets only when asked for; `md5_auth = false` turns MD5 off;
// Flight SQL tokens die with their password, user and TTL; connection limits.
mod login;

// The closed cluster network: pyarrow Flight and raw gRPC calls without the cluster's proof
// are refused on every internal port; a member's plan that scans a file is refused too.
mod internal_ports;
