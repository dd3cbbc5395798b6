//! The DuckDB oracle: runs SQL in an in-memory DuckDB (the `duckdb` Python module of the test
//! venv) and returns rows as PostgreSQL-formatted text, for comparison with the cluster.
//!
//! Each call starts one Python process running `duckdb_oracle.py` (embedded below): setup
//! statements (e.g. TPC-H views over the Parquet files) and queries go in as JSON on stdin,
//! answers come back as JSON on stdout. Batch queries with [`DuckDb::query_all`] — importing
//! DuckDB costs a few hundred milliseconds per process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::Rows;
use crate::paths;
use crate::tpch::TpchData;

/// The oracle script (see its docstring for the protocol).
const ORACLE_PY: &str = include_str!("duckdb_oracle.py");
/// The line `duckdb_oracle.py` prints before its answer (DuckDB may print before it).
const ANSWER_MARKER: &str = "==== blueshift duckdb oracle answer ====";

/// A DuckDB session description: setup statements run before every batch of queries.
#[derive(Clone, Debug)]
pub struct DuckDb {
    python: PathBuf,
    setup: Vec<String>,
}

impl DuckDb {
    /// An empty in-memory database, using the venv's Python ([`paths::python`]).
    pub fn new() -> Result<DuckDb> {
        let python = paths::python();
        if !python.exists() {
            bail!(
                "no Python interpreter at {} ({})",
                python.display(),
                paths::SETUP_HINT
            );
        }
        Ok(DuckDb {
            python,
            setup: Vec::new(),
        })
    }

    /// Adds a statement to run before each batch of queries.
    pub fn with_setup(mut self, sql: impl Into<String>) -> DuckDb {
        self.setup.push(sql.into());
        self
    }

    /// Adds one view per TPC-H table over the Parquet files of `data`, named like the tables.
    pub fn with_tpch_views(mut self, data: &TpchData) -> DuckDb {
        for (table, file) in data.files() {
            self.setup.push(format!(
                "CREATE VIEW {table} AS SELECT * FROM read_parquet({})",
                paths::sql_literal(&file.to_string_lossy())
            ));
        }
        self
    }

    /// Runs one query; a DuckDB error is an error.
    pub fn query(&self, sql: &str) -> Result<Rows> {
        let mut answers = self.query_all(&[sql.to_owned()])?;
        match answers.pop() {
            Some(Ok(rows)) => Ok(rows),
            Some(Err(e)) => Err(anyhow!("DuckDB failed: {e}\n  in: {sql}")),
            None => bail!("DuckDB returned no answer for: {sql}"),
        }
    }

    /// Runs every query in one DuckDB session; each answer is the rows or DuckDB's error
    /// message. Fails as a whole if Python, DuckDB or a setup statement fails.
    pub fn query_all(&self, queries: &[String]) -> Result<Vec<Result<Rows, String>>> {
        let request = json!({ "setup": self.setup, "queries": queries });
        let mut child = Command::new(&self.python)
            .arg("-c")
            .arg(ORACLE_PY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.python.display()))?;
        // The script reads all of stdin before it writes anything, so this cannot deadlock.
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin for the DuckDB oracle"))?
            .write_all(request.to_string().as_bytes())
            .context("writing to the DuckDB oracle")?;
        let output = child
            .wait_with_output()
            .context("waiting for the DuckDB oracle")?;
        if !output.status.success() {
            bail!(
                "DuckDB oracle failed ({}): {}\n({})",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                paths::SETUP_HINT
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let head: String = stdout.chars().take(2000).collect();
        let json = stdout
            .split_once(ANSWER_MARKER)
            .map(|(_, answer)| answer)
            .ok_or_else(|| anyhow!("DuckDB oracle printed no answer: {head:?}"))?;
        let answers: Value = serde_json::from_str(json)
            .with_context(|| format!("DuckDB oracle printed bad JSON: {head:?}"))?;
        let answers = answers
            .as_array()
            .ok_or_else(|| anyhow!("DuckDB oracle did not print a JSON array"))?;
        if answers.len() != queries.len() {
            bail!(
                "DuckDB oracle answered {} of {} queries",
                answers.len(),
                queries.len()
            );
        }
        answers.iter().map(parse_answer).collect()
    }
}

fn parse_answer(answer: &Value) -> Result<Result<Rows, String>> {
    if let Some(error) = answer.get("error") {
        return Ok(Err(error.as_str().unwrap_or("(no message)").to_owned()));
    }
    let rows = answer
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("oracle answer without rows: {answer}"))?;
    let rows = rows
        .iter()
        .map(|row| {
            row.as_array()
                .ok_or_else(|| anyhow!("oracle row is not an array: {row}"))?
                .iter()
                .map(|cell| match cell {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    other => Err(anyhow!("oracle cell is not text: {other}")),
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Rows>>()?;
    Ok(Ok(rows))
}
