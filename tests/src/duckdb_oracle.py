"""DuckDB oracle for the Blueshift end-to-end tests.

Reads one JSON object from stdin:
    {"setup": ["CREATE VIEW ...", ...], "queries": ["SELECT ...", ...]}
runs the setup statements, then every query, in one in-memory DuckDB database, and
writes a marker line and then one JSON array to stdout with one entry per query:
    {"rows": [[cell, ...], ...]}   or   {"error": "message"}
Every cell is rendered as the PostgreSQL text protocol would send it (NULL as JSON null,
booleans as t/f, dates as YYYY-MM-DD, decimals with their scale), so the Rust side can
compare it with what the cluster returns over the simple query protocol.

Used by tests/src/lib.rs (embedded with include_str!); it has no other entry point.
"""

import datetime
import decimal
import json
import math
import sys

import duckdb

# Must match tests/src/duckdb.rs.
ANSWER_MARKER = "==== blueshift duckdb oracle answer ===="


def render(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def main():
    request = json.load(sys.stdin)
    con = duckdb.connect(":memory:")
    # DuckDB can print to stdout on its own (a progress bar on a slow query); the answer
    # follows a marker line, so nothing printed before it can corrupt it.
    con.execute("SET enable_progress_bar = false")
    for statement in request.get("setup", []):
        con.execute(statement)
    answers = []
    for query in request.get("queries", []):
        try:
            rows = con.execute(query).fetchall()
            answers.append({"rows": [[render(v) for v in row] for row in rows]})
        except duckdb.Error as exc:
            answers.append({"error": str(exc)})
    sys.stdout.write("\n" + ANSWER_MARKER + "\n")
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
