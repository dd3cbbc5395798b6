#!/usr/bin/env python3
"""TPC-H side by side: Blueshift vs DuckDB vs DataFusion on the same Parquet files.

Run through bench/run.sh (which installs bench/requirements.txt into .venv and builds the
release binary); directly: `.venv/bin/python bench/tpch.py --sf 1`.

What it does, in one run:
  1. generates TPC-H Parquet at --sf with tpchgen-cli into target/bench-data/sf<SF>/ (once;
     written into a temp sibling and renamed into place, like tests/src/tpch.rs does);
  2. starts `blueshift local` (release binary, temp data dir, --pg-port 0, ready file) in its
     own process group, output in <tmp>/cluster.log (copied next to the JSON results);
  3. creates the eight tables with the Redshift DDL of tests/src/tpch.rs (`tpch_ddl()`,
     parsed out of the Rust source: one source of truth) and loads them with
     `COPY t FROM '<file>' FORMAT AS PARQUET`, timed;
  4. for each TPC-H query (the SQL constants of tests/src/tpch_queries.rs and tests/src/tpch.rs,
     parsed out of the Rust source), runs it on Blueshift (psycopg, simple query protocol),
     DuckDB (views over the Parquet files) and DataFusion-Python (registered Parquet tables):
     one warm-up run each, whose answer is kept, then --runs timed runs; the median is
     reported. Engines run one after another, never concurrently;
  5. checks Blueshift's answer against DuckDB's with the rules of tests/src/compare.rs
     (cells equal after rendering as PostgreSQL text; numbers within 1e-6 relative, or equal at
     the precision the shorter one is printed with; rows tied on the ORDER BY columns may come
     in any order). DataFusion's answer is checked the same way, for information;
  6. prints a table with the ratios and geometric means, and writes everything as JSON to
     target/bench-results/<timestamp>.json;
  7. stops the cluster (SIGTERM to the process group, SIGKILL after 60 s), also on Ctrl-C,
     SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import functools
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS_SRC = ROOT / "tests" / "src"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET

TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]

# Relative tolerance for numbers (tests/src/compare.rs REL_TOLERANCE).
REL_TOLERANCE = 1e-6
# At most this many differing rows are listed in a diff (compare.rs MAX_DIFF_ROWS).
MAX_DIFF_ROWS = 20
# Seconds `blueshift local` may take to write its ready file / to exit after SIGTERM.
READY_TIMEOUT = float(os.environ.get("BLUESHIFT_READY_TIMEOUT_SECS", "120"))
STOP_TIMEOUT = 60.0


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The single source of truth: SQL text parsed out of the Rust test sources.
# --------------------------------------------------------------------------------------------

_RUST_STR = r'"((?:[^"\\]|\\.)*)"'


def rust_string(body: str) -> str:
    """Decodes the body of a Rust (non-raw) string literal."""
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "\n":
            # Line continuation: skips the newline and the next line's leading whitespace.
            i += 2
            while i < len(body) and body[i] in " \t\n\r":
                i += 1
            continue
        simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "u":
            end = body.index("}", i)
            out.append(chr(int(body[i + 3 : end], 16)))
            i = end + 1
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        else:
            raise ValueError(f"unsupported escape \\{nxt} in a Rust string")
    return "".join(out)


def parse_ddl() -> list[tuple[str, str]]:
    """`(table, CREATE TABLE sql)` from `tpch_ddl()` in tests/src/tpch.rs, in load order."""
    src = (TESTS_SRC / "tpch.rs").read_text()
    start = src.index("pub fn tpch_ddl()")
    end = src.index("\n}\n", start)
    body = src[start:end]
    pairs = re.findall(r"\(\s*" + _RUST_STR + r"\s*,\s*" + _RUST_STR + r"\s*,?\s*\)", body, re.S)
    ddl = [(rust_string(t), rust_string(sql)) for t, sql in pairs]
    if [t for t, _ in ddl] != TPCH_TABLES:
        raise RuntimeError(f"tpch_ddl() in tests/src/tpch.rs gave tables {[t for t, _ in ddl]}")
    for table, sql in ddl:
        if not sql.lstrip().upper().startswith("CREATE TABLE"):
            raise RuntimeError(f"tpch_ddl() entry for {table} is not a CREATE TABLE: {sql!r}")
    return ddl


def parse_queries() -> list[tuple[str, str, list[int]]]:
    """`(name, sql, order_by_columns)` for q01..q22 from tests/src/tpch_queries.rs (and Q1, Q6
    from tests/src/tpch.rs)."""
    consts: dict[str, str] = {}
    for path in (TESTS_SRC / "tpch.rs", TESTS_SRC / "tpch_queries.rs"):
        src = path.read_text()
        for name, body in re.findall(r"pub const (Q\d+): &str = " + _RUST_STR + ";", src, re.S):
            consts[name] = rust_string(body)
    src = (TESTS_SRC / "tpch_queries.rs").read_text()
    start = src.index("pub const TPCH_QUERIES")
    end = src.index("];", start)
    listing = re.findall(r'\(\s*"(q\d+)"\s*,\s*(Q\d+)\s*\)', src[start:end])
    start = src.index("pub fn order_by_columns")
    end = src.index("\n}\n", start)
    order_by = {
        name: [int(x) for x in cols.split(",") if x.strip()]
        for name, cols in re.findall(r'"(q\d+)"\s*=>\s*&\[([^\]]*)\]', src[start:end])
    }
    queries = []
    for name, const in listing:
        if const not in consts:
            raise RuntimeError(f"no constant {const} for {name} in tests/src")
        queries.append((name, consts[const], order_by.get(name, [])))
    if [q[0] for q in queries] != [f"q{i:02}" for i in range(1, 23)]:
        raise RuntimeError(f"TPCH_QUERIES parsed as {[q[0] for q in queries]}")
    return queries


def load_oracle_render():
    """`render(value)` of tests/src/duckdb_oracle.py: how the tests turn a Python value into
    PostgreSQL text."""
    spec = importlib.util.spec_from_file_location("duckdb_oracle", TESTS_SRC / "duckdb_oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render


# --------------------------------------------------------------------------------------------
# Answer comparison: a port of tests/src/compare.rs.
# --------------------------------------------------------------------------------------------


def as_bool(s: str):
    v = s.strip().lower()
    return True if v in ("t", "true") else False if v in ("f", "false") else None


def as_number(s: str):
    s = s.strip()
    if s == "NaN":
        return math.nan
    if s == "Infinity":
        return math.inf
    if s == "-Infinity":
        return -math.inf
    looks_numeric = (
        s != ""
        and all(c.isascii() and (c.isdigit() or c in "-+.eE") for c in s)
        and any(c.isdigit() for c in s)
    )
    if not looks_numeric:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def fraction_digits(s: str):
    s = s.strip()
    if "e" in s or "E" in s:
        return None
    return len(s.split(".", 1)[1]) if "." in s else 0


def numbers_equal(a: str, x: float, b: str, y: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x == y:
        return True
    scale = max(abs(x), abs(y))
    if abs(x - y) <= REL_TOLERANCE * scale:
        return True
    da, db = fraction_digits(a), fraction_digits(b)
    if da is not None and db is not None and da != db and min(da, db) > 0:
        return abs(x - y) <= 10.0 ** (-min(da, db)) * (1.0 + 1e-9)
    return False


def values_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = as_bool(a), as_bool(b)
    if x is not None and y is not None:
        return x == y
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return numbers_equal(a, x, b, y)
    return False


def cells_equal(a, b) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    return values_equal(a, b)


def format_row(row) -> str:
    return "[" + ", ".join("NULL" if c is None else json.dumps(c) for c in row) + "]"


def compare_rows(actual, expected):
    """None if equal, else a readable diff (compare.rs `compare_rows`)."""
    diffs = []
    for i, (a, e) in enumerate(zip(actual, expected)):
        if len(a) == len(e) and all(cells_equal(x, y) for x, y in zip(a, e)):
            continue
        if len(a) != len(e):
            cols = f"\n    (expected {len(e)} columns, got {len(a)})"
        else:
            bad = [str(j) for j, (x, y) in enumerate(zip(a, e)) if not cells_equal(x, y)]
            cols = f"\n    (columns {', '.join(bad)} differ)"
        diffs.append(f"  row {i}:\n    expected {format_row(e)}\n    actual   {format_row(a)}{cols}")
    if not diffs and len(actual) == len(expected):
        return None
    out = f"results differ: expected {len(expected)} rows, got {len(actual)} rows\n"
    for d in diffs[:MAX_DIFF_ROWS]:
        out += d + "\n"
    if len(diffs) > MAX_DIFF_ROWS:
        out += f"  ... and {len(diffs) - MAX_DIFF_ROWS} more differing rows\n"
    common = min(len(actual), len(expected))
    for label, rows in (("missing", expected), ("unexpected", actual)):
        for i in range(common, min(len(rows), common + MAX_DIFF_ROWS)):
            out += f"  {label} row {i}: {format_row(rows[i])}\n"
        if len(rows) > common + MAX_DIFF_ROWS:
            out += f"  ... and {len(rows) - common - MAX_DIFF_ROWS} more {label} rows\n"
    return out


def _canonical_row_order(a, b) -> int:
    for x, y in zip(a, b):
        if x is None and y is None:
            ord_ = 0
        elif x is None:
            ord_ = -1
        elif y is None:
            ord_ = 1
        else:
            p, q = as_number(x), as_number(y)
            if p is not None and q is not None:
                if values_equal(x, y):
                    ord_ = 0
                else:
                    ord_ = _total_cmp(p, q)
            else:
                ord_ = (x > y) - (x < y)
        if ord_ != 0:
            return ord_
    return (len(a) > len(b)) - (len(a) < len(b))


def _total_cmp(p: float, q: float) -> int:
    # f64::total_cmp, enough for our values: NaN sorts last.
    if math.isnan(p) or math.isnan(q):
        return (math.isnan(p) > math.isnan(q)) - (math.isnan(p) < math.isnan(q))
    return (p > q) - (p < q)


def compare_rows_ordered_by(actual, expected, order_by):
    """Like compare_rows, but rows tied on every `order_by` column may come in any order
    (compare.rs `compare_rows_ordered_by`)."""
    strict = compare_rows(actual, expected)
    if strict is None or len(actual) != len(expected):
        return strict

    def key_equal(a, b):
        return all(c < len(a) and c < len(b) and cells_equal(a[c], b[c]) for c in order_by)

    if not all(key_equal(a, e) for a, e in zip(actual, expected)):
        return strict
    start = 0
    key = functools.cmp_to_key(_canonical_row_order)
    while start < len(expected):
        end = start + 1
        while end < len(expected) and key_equal(expected[end], expected[start]):
            end += 1
        a = sorted(actual[start:end], key=key)
        e = sorted(expected[start:end], key=key)
        if compare_rows(a, e) is not None:
            return strict
        start = end
    return None


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def sf_label(sf: str) -> str:
    value = float(sf)
    if value <= 0:
        raise SystemExit(f"--sf must be positive, got {sf}")
    return f"{value:g}"


def tpchgen_cli() -> str:
    beside = Path(sys.executable).with_name("tpchgen-cli")
    return str(beside) if beside.is_file() else "tpchgen-cli"


def data_complete(d: Path) -> bool:
    return all((d / f"{t}.parquet").is_file() and (d / f"{t}.parquet").stat().st_size > 0 for t in TPCH_TABLES)


def tpch_data(sf: str) -> Path:
    parent = TARGET / "bench-data"
    data = parent / f"sf{sf}"
    if data_complete(data):
        log(f"reusing TPC-H SF {sf} in {data}")
        return data
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".sf{sf}-tmp-", dir=parent))
    tool = tpchgen_cli()
    log(f"generating TPC-H SF {sf} into {data} with {tool}")
    started = time.monotonic()
    try:
        subprocess.run([tool, "parquet", "-s", sf, f"--output-dir={tmp}"], check=True)
        if not data_complete(tmp):
            raise RuntimeError(f"{tool} did not write all of {TPCH_TABLES} into {tmp}")
        try:
            tmp.rename(data)
        except OSError:
            if not data_complete(data):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"generated in {time.monotonic() - started:.1f} s")
    return data


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# The Blueshift cluster
# --------------------------------------------------------------------------------------------


class MotoS3:
    """moto's S3 server on loopback, an ephemeral port (see tests/src/s3.rs), for --store s3."""

    def __init__(self, root: Path):
        import urllib.request

        log_path = root / "moto.log"
        self.log = open(log_path, "wb")
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", "0"], stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, process_group=0,
        )  # fmt: skip
        atexit.register(self.kill)
        deadline = time.monotonic() + 60
        self.port = None
        while self.port is None:
            m = re.search(rb"http://127\.0\.0\.1:(\d+)", log_path.read_bytes())
            if m:
                self.port = int(m.group(1))
            elif time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"moto_server did not start: {log_path.read_text(errors='replace')}")
            else:
                time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        req = urllib.request.Request(f"{self.endpoint}/bench", method="PUT")
        urllib.request.urlopen(req, timeout=30).read()

    def env(self) -> dict:
        return {
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
        }  # fmt: skip

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class Cluster:
    """`blueshift local` in its own process group (see tests/src/cluster.rs)."""

    def __init__(self, binary: Path, nodes: int, slices_per_node: int, root: Path, extra_args=(), extra_env=None):
        self.root = root
        self.log_path = root / "cluster.log"
        self.ready_file = root / "ready.json"
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary), "local",
            "--nodes", str(nodes),
            "--slices-per-node", str(slices_per_node),
            "--data-dir", str(data_dir),
            "--pg-port", "0",
            "--flight-sql-port", "0",
            "--ready-file", str(self.ready_file),
            *extra_args,
        ]  # fmt: skip
        with open(self.log_path, "ab") as logf:
            logf.write(f"==== bench: starting {' '.join(cmd)} ====\n".encode())
            logf.flush()
            env = dict(os.environ, RUST_BACKTRACE="1", NO_COLOR="1", **(extra_env or {}))
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=env, process_group=0,
            )  # fmt: skip
        self.pgid = self.proc.pid
        atexit.register(self.kill)
        self.pg_port = self._wait_ready()

    def _wait_ready(self) -> int:
        started = time.monotonic()
        while True:
            try:
                ready = json.loads(self.ready_file.read_text())
                port = int(ready["pg_port"])
                if port:
                    return port
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"blueshift local exited with {code} before it was ready\n{self.log_tail()}")
            if time.monotonic() - started > READY_TIMEOUT:
                raise RuntimeError(f"no ready file at {self.ready_file} after {READY_TIMEOUT} s\n{self.log_tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_bytes()[-256 * 1024 :].decode(errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def log_matches(self, patterns=("panicked at", " ERROR ", " WARN ", "error:", "restart", "exited", "died")) -> list[str]:
        """Lines of the cluster's log that report trouble (ANSI colours removed)."""
        try:
            text = self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return []
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return [line for line in text.splitlines() if any(p in line for p in patterns)]

    def stop(self) -> int | None:
        """SIGTERM to the group, wait for a clean exit; SIGKILL after STOP_TIMEOUT."""
        if self.proc.poll() is not None and not self._group_alive():
            return self.proc.returncode
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self._group_alive():
                return self.proc.returncode
            time.sleep(0.05)
        log(f"cluster did not stop within {STOP_TIMEOUT} s of SIGTERM; killing it")
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _group_alive(self) -> bool:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 1 :].split()
            if len(fields) > 2 and fields[2] == str(self.pgid) and fields[0] != "Z":
                return True
        return False


def connect(port: int, timeout_s: float):
    import psycopg
    from psycopg.adapt import Loader

    # Keeps every value as the text the server sent (the tests compare the text of
    # tokio-postgres' simple query protocol; psycopg also uses it for a query without
    # parameters when prepare_threshold is None).
    class TextLoader(Loader):
        def load(self, data):
            return bytes(data).decode()

    conn = psycopg.connect(
        host="127.0.0.1", port=port, user="blueshift", dbname="dev",
        connect_timeout=30, autocommit=True, prepare_threshold=None,
    )  # fmt: skip
    # Every built-in type OID the server may send, and the unknown ones, stay text.
    for oid in (16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 700, 701, 1042, 1043, 1082, 1083,
                1114, 1184, 1186, 1266, 1560, 1562, 1700, 2950, 3802, 0):  # fmt: skip
        conn.adapters.register_loader(oid, TextLoader)
    conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
    return conn


def describe_pg_error(e: Exception) -> str:
    sqlstate = getattr(e, "sqlstate", None)
    msg = str(e).strip()
    return f"[{sqlstate}] {msg}" if sqlstate else f"{type(e).__name__}: {msg}"


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------


class Blueshift:
    name = "blueshift"

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.timeout_s = 0.0
        self.conn = None

    def set_timeout(self, timeout_s: float):
        """statement_timeout of this and later connections (0: none)."""
        self.timeout_s = timeout_s
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            self.conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")

    def _conn(self):
        if self.conn is None or self.conn.closed or self.conn.broken:
            if not self.cluster.alive():
                raise RuntimeError("the blueshift cluster is not running")
            self.conn = connect(self.cluster.pg_port, self.timeout_s)
        return self.conn

    def execute(self, sql: str):
        conn = self._conn()
        # Client-side backstop for statement_timeout: a cancel request 30 s after it.
        watchdog = None
        if self.timeout_s > 0:
            watchdog = threading.Timer(self.timeout_s + 30, lambda: conn.cancel_safe(timeout=10))
            watchdog.daemon = True
            watchdog.start()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.rowcount, cur.fetchall() if cur.description else []
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def run(self, sql: str):
        """Rows as lists of text (None for NULL)."""
        _, rows = self.execute(sql)
        return [list(r) for r in rows]

    def store_bytes(self) -> int:
        """Bytes every compute node's segment cache has fetched from the store so far."""
        _, rows = self.execute("select sum(store_bytes) from stv_node_cache")
        return int(rows[0][0] or 0)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                pass


class DuckDB:
    name = "duckdb"

    def __init__(self, data: Path, render):
        import duckdb

        self.render = render
        self.con = duckdb.connect(":memory:")
        for table in TPCH_TABLES:
            self.con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(str(data / f'{table}.parquet'))})"
            )

    def run(self, sql: str):
        return self.con.execute(sql).fetchall()

    def rendered(self, rows):
        return [[self.render(v) for v in row] for row in rows]


class DataFusion:
    name = "datafusion"

    def __init__(self, data: Path, render):
        from datafusion import SessionContext

        self.render = render
        self.ctx = SessionContext()
        for table in TPCH_TABLES:
            self.ctx.register_parquet(table, str(data / f"{table}.parquet"))

    def run(self, sql: str):
        return self.ctx.sql(sql).collect()

    def rendered(self, batches):
        rows = []
        for batch in batches:
            columns = [col.to_pylist() for col in batch.columns]
            for i in range(batch.num_rows):
                rows.append([self.render(c[i]) for c in columns])
        return rows


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def bench_engine(run, sql: str, runs: int, slow_s: float, probe=None) -> dict:
    """One warm-up run (its result is returned), then `runs` timed runs; only one timed run
    when the warm-up took longer than `slow_s`. `probe()`, if given, is read before the
    warm-up, after it and after the timed runs (`probe` key: the three readings)."""
    out = {"warmup_s": None, "times_s": [], "median_s": None, "error": None}
    readings = [probe()] if probe else None
    try:
        elapsed, result = timed(run, sql)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every engine error is a result
        if INTERRUPTED:
            raise KeyboardInterrupt from e
        out["error"] = describe_pg_error(e)
        return out
    out["warmup_s"] = elapsed
    out["result"] = result
    if probe:
        readings.append(probe())
    n = runs if elapsed <= slow_s else 1
    for _ in range(n):
        try:
            elapsed, _ = timed(run, sql)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001
            if INTERRUPTED:
                raise KeyboardInterrupt from e
            out["error"] = f"timed run failed: {describe_pg_error(e)}"
            break
        out["times_s"].append(elapsed)
    if out["times_s"]:
        out["median_s"] = statistics.median(out["times_s"])
    if probe:
        readings.append(probe())
        out["probe"] = readings
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt_s(v):
    return f"{v:.3f}" if v is not None else "-"


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def print_table(results: list[dict], load: dict, config: dict) -> dict:
    lines = []
    p = lines.append
    p("")
    p(
        f"TPC-H SF {config['sf']}: Blueshift {config['nodes']} nodes x {config['slices_per_node']} slices "
        f"vs DuckDB {config['versions']['duckdb']} vs DataFusion {config['versions']['datafusion']}; "
        f"median of {config['runs']} warm run{'' if config['runs'] == 1 else 's'}, seconds"
    )
    p(f"machine: {config['machine']['cpus']} CPUs, load average {config['machine']['loadavg_at_start'][0]:.2f} at start, {config['machine']['platform']}; git {config['blueshift_rev']}, binary built {config['binary_built']}")
    p(f"load (COPY of 8 tables into Blueshift): {load['total_s']:.2f} s  "
      + "  ".join(f"{t}={v['seconds']:.2f}" for t, v in load["tables"].items()))  # fmt: skip
    p("")
    header = f"{'query':<7} {'blueshift s':>12} {'duckdb s':>10} {'datafusion s':>13} {'bs/duckdb':>10} {'bs/datafusion':>14}  answer"
    p(header)
    p("-" * len(header))
    for r in results:
        bs, dk, df = (r[e]["median_s"] for e in ("blueshift", "duckdb", "datafusion"))
        mark = "*" if r["blueshift"]["median_s"] is not None and len(r["blueshift"]["times_s"]) < config["runs"] else " "
        p(
            f"{r['query']:<7} {fmt_s(bs):>11}{mark} {fmt_s(dk):>10} {fmt_s(df):>13} "
            f"{fmt_ratio(bs, dk):>10} {fmt_ratio(bs, df):>14}  {r['answer']}"
        )
    # Geometric means over the queries every engine answered.
    common = [r for r in results if all(r[e]["median_s"] for e in ("blueshift", "duckdb", "datafusion"))]
    g = {e: geomean([r[e]["median_s"] for r in common]) for e in ("blueshift", "duckdb", "datafusion")}
    p("-" * len(header))
    p(
        f"{'geomean':<7} {fmt_s(g['blueshift']):>11}  {fmt_s(g['duckdb']):>10} {fmt_s(g['datafusion']):>13} "
        f"{fmt_ratio(g['blueshift'], g['duckdb']):>10} {fmt_ratio(g['blueshift'], g['datafusion']):>14}  "
        f"({len(common)} of {len(results)} queries)"
    )
    if config.get("store") == "s3":
        # The warm-up is each query's first run: the segments it reads that no earlier query
        # read come from S3 into the compute nodes' caches; the timed runs read the caches.
        # The bytes fetched from S3 (stv_node_cache.store_bytes) by each say which is which.
        cold = [r for r in results if r["blueshift"]["warmup_s"] and r["blueshift"]["median_s"]]
        gc, gw = geomean([r["blueshift"]["warmup_s"] for r in cold]), geomean([r["blueshift"]["median_s"] for r in cold])
        p(f"segment cache (S3 store): geomean first run {fmt_s(gc)} s, warm {fmt_s(gw)} s, first/warm {fmt_ratio(gc, gw)} ({len(cold)} queries)")
        fetched = lambda r, a, b: (r["blueshift"]["probe"][b] - r["blueshift"]["probe"][a]) if r["blueshift"].get("probe") and len(r["blueshift"]["probe"]) > b else None
        mb = lambda n: "?" if n is None else f"{n / 1e6:.1f}MB"
        first_bytes = [fetched(r, 0, 1) for r in cold]
        warm_bytes = [fetched(r, 1, 2) for r in cold]
        p(f"  fetched from S3: first runs {mb(sum(b or 0 for b in first_bytes))}, timed warm runs {mb(sum(b or 0 for b in warm_bytes))}")
        p("  query=first/warm s (S3 bytes of the first run): " + "  ".join(
            f"{r['query']}={r['blueshift']['warmup_s']:.3f}/{r['blueshift']['median_s']:.3f} ({mb(b)})" for r, b in zip(cold, first_bytes)))
        cold_only = [r for r, b in zip(cold, first_bytes) if b]
        if cold_only:
            gc2 = geomean([r["blueshift"]["warmup_s"] for r in cold_only])
            gw2 = geomean([r["blueshift"]["median_s"] for r in cold_only])
            p(f"  queries whose first run fetched from S3 ({len(cold_only)}): geomean first {fmt_s(gc2)} s, warm {fmt_s(gw2)} s, {fmt_ratio(gc2, gw2)}")
    ok = sum(1 for r in results if r["answer"] == "ok")
    p(f"answers: {ok} of {len(results)} ok (Blueshift vs DuckDB)")
    if any(len(r["blueshift"]["times_s"]) < config["runs"] and r["blueshift"]["median_s"] is not None for r in results):
        p(f"* fewer timed runs: the warm-up took longer than --slow {config['slow_s']} s")
    df_bad = [r["query"] for r in results if r["datafusion_answer"] not in ("ok", "n/a")]
    if df_bad:
        p(f"note: DataFusion's answer differs from DuckDB's for {', '.join(df_bad)} (see JSON)")
    text = "\n".join(lines)
    print(text, flush=True)
    return {"table": text, "geomean_s": g, "geomean_queries": [r["query"] for r in common]}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", default="1", help="TPC-H scale factor (default 1)")
    ap.add_argument("--nodes", type=int, default=2, help="Blueshift compute nodes (default 2)")
    ap.add_argument("--slices-per-node", type=int, default=2, help="slices per node (default 2)")
    ap.add_argument("--queries", default="", help="comma-separated query numbers, e.g. 1,3,5 (default: all 22)")
    ap.add_argument("--runs", type=int, default=3, help="timed warm runs per query and engine; the median is reported (default 3)")
    ap.add_argument("--timeout", type=float, default=600, help="Blueshift statement_timeout in seconds (0: none; default 600)")
    ap.add_argument("--slow", type=float, default=120, help="a query whose warm-up run takes longer than this many seconds gets one timed run (default 120)")
    ap.add_argument("--binary", default=str(TARGET / "release" / "blueshift"), help="blueshift binary (default target/release/blueshift)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's temp directory")
    ap.add_argument("--store", choices=("local", "s3"), default="local", help="segment store: the embedded local directory, or an S3 bucket on a moto server started for the run (default local)")
    args = ap.parse_args(argv)
    args.sf = sf_label(args.sf)
    if args.queries.strip():
        try:
            nums = [int(x) for x in args.queries.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--queries must be numbers like 1,3,5, got {args.queries!r}")
        bad = [n for n in nums if not 1 <= n <= 22]
        if bad:
            ap.error(f"no TPC-H query {bad}")
        args.query_names = [f"q{n:02}" for n in nums]
    else:
        args.query_names = None
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("duckdb", "datafusion", "psycopg", "pyarrow", "tpchgen-cli"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# Set by the SIGINT / SIGTERM handler: DuckDB turns the KeyboardInterrupt raised inside a
# query into its own "Query interrupted" error, which must still stop the run.
INTERRUPTED = False


def _interrupt(signum, frame):
    global INTERRUPTED
    INTERRUPTED = True
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # Also when started with SIGINT ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, _interrupt)
    binary = Path(args.binary)
    if not binary.is_file():
        log(f"no blueshift binary at {binary}: run bench/run.sh (it builds it)")
        return 2

    ddl = parse_ddl()
    queries = parse_queries()
    if args.query_names:
        by_name = {q[0]: q for q in queries}
        queries = [by_name[n] for n in args.query_names]
    render = load_oracle_render()
    data = tpch_data(args.sf)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = TARGET / "bench-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    config = {
        "sf": args.sf,
        "nodes": args.nodes,
        "slices_per_node": args.slices_per_node,
        "store": args.store,
        "runs": args.runs,
        "slow_s": args.slow,
        "timeout_s": args.timeout,
        "queries": [q[0] for q in queries],
        "data_dir": str(data),
        "binary": str(binary),
        "binary_built": datetime.datetime.fromtimestamp(binary.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S"),
        "blueshift_rev": git_rev(),
        "versions": versions(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": load_before,
        },
        "started": stamp,
    }

    log("starting DuckDB and DataFusion sessions")
    duck = DuckDB(data, render)
    fusion = DataFusion(data, render)

    root = Path(tempfile.mkdtemp(prefix="blueshift-bench-"))
    cluster = None
    blueshift = None
    results: list[dict] = []
    load = {"tables": {}, "total_s": None}
    report = {"config": config, "load": load, "queries": results}
    exit_code = 0
    try:
        log(f"starting {binary} local --nodes {args.nodes} --slices-per-node {args.slices_per_node} in {root}")
        t0 = time.monotonic()
        extra_args, extra_env = [], {}
        if args.store == "s3":
            s3 = MotoS3(root)
            log(f"S3 store: moto on {s3.endpoint}, bucket bench")
            extra_args, extra_env = ["--store-url", "s3://bench/blueshift"], s3.env()
        cluster = Cluster(binary, args.nodes, args.slices_per_node, root, extra_args, extra_env)
        config["cluster_start_s"] = time.monotonic() - t0
        log(f"cluster ready on port {cluster.pg_port} after {config['cluster_start_s']:.1f} s")
        blueshift = Blueshift(cluster)

        # Load.
        total = 0.0
        for table, create in ddl:
            blueshift.execute(create)
            path = data / f"{table}.parquet"
            expected = parquet_rows(path)
            elapsed, (rowcount, _) = timed(blueshift.execute, f"COPY {table} FROM {sql_literal(str(path))} FORMAT AS PARQUET")
            total += elapsed
            load["tables"][table] = {"seconds": elapsed, "rows": rowcount, "parquet_rows": expected}
            log(f"COPY {table}: {rowcount} rows in {elapsed:.2f} s")
            if rowcount != expected:
                raise RuntimeError(f"COPY {table} loaded {rowcount} rows, the file has {expected}")
        load["total_s"] = total
        log(f"loaded in {total:.2f} s")

        # Queries.
        blueshift.set_timeout(args.timeout)
        for name, sql, order_by in queries:
            log(f"{name}: blueshift")
            entry = {"query": name}
            probe = blueshift.store_bytes if args.store == "s3" else None
            bs = bench_engine(blueshift.run, sql, args.runs, args.slow, probe)
            log(f"{name}: duckdb")
            dk = bench_engine(duck.run, sql, args.runs, args.slow)
            log(f"{name}: datafusion")
            df = bench_engine(fusion.run, sql, args.runs, args.slow)
            # The warm-up's answer, even when a timed run failed later.
            expected = dk.pop("result", None)
            expected = duck.rendered(expected) if expected is not None else None
            bs_rows = bs.pop("result", None)
            df_rows = df.pop("result", None)
            df_rows = fusion.rendered(df_rows) if df_rows is not None else None
            if bs["error"] is not None and not cluster.alive():
                bs["error"] += f" (cluster exited with {cluster.proc.returncode})"
            if bs_rows is None:
                entry["answer"] = "ERROR"
            elif expected is None:
                entry["answer"] = "no oracle"
            else:
                diff = compare_rows_ordered_by(bs_rows, expected, order_by)
                entry["answer"] = "ok" if diff is None else "DIFF"
                if diff is not None:
                    entry["diff"] = diff
                entry["rows"] = len(bs_rows)
                if bs["error"] is not None:
                    # Right or wrong, a timed run failed: report the error.
                    entry["answer"] = "ERROR"
            if df_rows is not None and expected is not None:
                df_diff = compare_rows_ordered_by(df_rows, expected, order_by)
                entry["datafusion_answer"] = "ok" if df_diff is None else "DIFF"
                if df_diff is not None:
                    entry["datafusion_diff"] = df_diff
            else:
                entry["datafusion_answer"] = "n/a"
            entry.update(blueshift=bs, duckdb=dk, datafusion=df)
            results.append(entry)
            log(
                f"{name}: blueshift {fmt_s(bs['median_s'])} s, duckdb {fmt_s(dk['median_s'])} s, "
                f"datafusion {fmt_s(df['median_s'])} s, answer {entry['answer']}"
            )
            if bs["error"]:
                log(f"{name}: blueshift error: {bs['error']}")
            if entry.get("diff"):
                log(f"{name}: {entry['diff']}")
            if df["error"]:
                log(f"{name}: datafusion error: {df['error']}")
            if dk["error"]:
                log(f"{name}: duckdb error: {dk['error']}")
    except KeyboardInterrupt:
        log("interrupted")
        exit_code = 130
    except Exception:  # noqa: BLE001 - report, then clean up
        log("failed:\n" + traceback.format_exc())
        if cluster is not None:
            log(f"last lines of {cluster.log_path}:\n{cluster.log_tail()}")
        exit_code = 1
    finally:
        if blueshift is not None:
            blueshift.close()
        if cluster is not None:
            alive_before_stop = cluster.alive()
            code = cluster.stop()
            config["cluster_exit"] = code
            config["cluster_alive_at_end"] = alive_before_stop
            log(f"cluster stopped (exit code {code})")
            notable = cluster.log_matches()
            config["cluster_log_notable_lines"] = notable[-200:]
            log_copy = results_dir / f"{stamp}-cluster.log"
            try:
                shutil.copyfile(cluster.log_path, log_copy)
                config["cluster_log"] = str(log_copy)
            except OSError:
                pass
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if results:
        summary = print_table(results, load, config) if load["total_s"] is not None else {}
        report["summary"] = summary
        for r in results:
            if r.get("diff"):
                print(f"\n{r['query']}: Blueshift's answer differs from DuckDB's:\n{r['diff']}", end="")
            if r["blueshift"]["error"]:
                print(f"\n{r['query']}: Blueshift error: {r['blueshift']['error']}")
        notable = config.get("cluster_log_notable_lines") or []
        if notable:
            print(f"\ncluster log: {len(notable)} lines report trouble (panics, errors, warnings, restarts); last ones:")
            for line in notable[-15:]:
                print(f"  {line[:400]}")
        print()
    out = results_dir / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"results written to {out}")
    if config.get("cluster_log"):
        log(f"cluster log copied to {config['cluster_log']}")
    if exit_code == 0 and any(r["answer"] != "ok" for r in results):
        exit_code = 3
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
