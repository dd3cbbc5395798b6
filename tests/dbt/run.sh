#!/usr/bin/env bash
# Runs the dbt compatibility project (tests/dbt/project) against a running server.
#
#   DBT_HOST=127.0.0.1 DBT_PORT=5439 DBT_USER=dbt DBT_PASSWORD=... DBT_DBNAME=dev \
#       tests/dbt/run.sh redshift|postgres [STEP...]
#
# Env: DBT_HOST DBT_PORT DBT_USER DBT_PASSWORD DBT_DBNAME (required), DBT_SCHEMA (default
# dbt_test; dropped and rebuilt by the run), DBT_THREADS (default 1), DBT_VENV (default
# tests/dbt/.venv, created with tests/dbt/requirements.txt when it has no dbt), DBT_KEEP_TMP=1
# keeps the temp dir. (DBT_-prefixed because USER and HOST are often already set in a shell.)
#
# Steps, in order (default: all): debug reset seed run test snapshot run_late snapshot_late
# test_late compare docs.
#   reset          `dbt run-operation reset_schema`: drop schema DBT_SCHEMA cascade.
#   test           leaves out what needs the snapshots (tag:needs_snapshot).
#   *_late         pass --vars '{include_late: true}': the staging views then union in
#                  seeds/*_late.csv, so the second run does incremental work (delete+insert,
#                  merge) and the second snapshot closes and opens versions.
#   compare        `dbt compile --full-refresh` (late rows included), then compare_duckdb.py
#                  rebuilds every model in DuckDB from the seeds and compares its rows with the
#                  server's; runs with DBT_COMPARE_PYTHON (default: the repo's .venv, which
#                  tests/requirements.txt gives duckdb and psycopg).
#
# Each step runs in a fresh temp copy of the project with target-path and log-path in the
# temp dir. Stops at the first failing step; exits non-zero when any step failed. Ends with
# a line `dbt: N passed, N failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
all_steps=(debug reset seed run test snapshot run_late snapshot_late test_late compare docs)

usage() { echo "usage: $0 redshift|postgres [STEP...]   (steps: ${all_steps[*]})" >&2; exit 2; }
[ $# -ge 1 ] || usage
target="$1"
shift
case "$target" in redshift|postgres) ;; *) usage ;; esac
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all_steps[@]}")

for var in DBT_HOST DBT_PORT DBT_USER DBT_PASSWORD DBT_DBNAME; do
    if [ -z "${!var+set}" ]; then
        echo "run.sh: $var is not set" >&2
        exit 2
    fi
done
export DBT_HOST DBT_PORT DBT_USER DBT_PASSWORD DBT_DBNAME
export DBT_SCHEMA="${DBT_SCHEMA:-dbt_test}"
export DBT_THREADS="${DBT_THREADS:-1}"
export DBT_TARGET="$target"

# No telemetry, no version check against the package index, plain output.
export DO_NOT_TRACK=1
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
export DBT_VERSION_CHECK=false
export DBT_PARTIAL_PARSE=false
export DBT_USE_COLORS=false
export DBT_PRINTER_WIDTH=100

venv="${DBT_VENV:-$here/.venv}"
dbt="$venv/bin/dbt"
if [ ! -x "$dbt" ]; then
    echo "run.sh: creating $venv with $here/requirements.txt" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$here/requirements.txt"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/blueshift-dbt.XXXXXX")"
cleanup() {
    if [ "${DBT_KEEP_TMP:-0}" = 1 ] || [ "$failed" -gt 0 ]; then
        echo "run.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
passed=0
failed=0
trap cleanup EXIT

late_vars='{include_late: true}'

run_step() {
    local step="$1"
    local dir="$tmp/$step"
    mkdir -p "$dir"
    cp -r "$here/project" "$dir/project"
    local args
    case "$step" in
        debug)         args=(debug) ;;
        reset)         args=(run-operation reset_schema) ;;
        seed)          args=(seed) ;;
        run)           args=(run) ;;
        test)          args=(test --exclude tag:needs_snapshot) ;;
        snapshot)      args=(snapshot) ;;
        run_late)      args=(run --vars "$late_vars") ;;
        snapshot_late) args=(snapshot --vars "$late_vars") ;;
        test_late)     args=(test --vars "$late_vars") ;;
        compare)       args=(compile --full-refresh --vars "$late_vars") ;;
        docs)          args=(docs generate --vars "$late_vars") ;;
        *) echo "run.sh: unknown step $step" >&2; return 2 ;;
    esac
    local common=(--project-dir "$dir/project" --profiles-dir "$here" --target "$target")
    if [ "$step" != debug ]; then
        common+=(--target-path "$dir/target" --log-path "$dir/logs")
    fi
    echo "== [$target] dbt ${args[*]}"
    if (cd "$dir/project" && "$dbt" "${args[@]}" "${common[@]}"); then
        if [ "$step" != compare ] \
            || "${DBT_COMPARE_PYTHON:-$root/.venv/bin/python}" "$here/compare_duckdb.py" \
                "$dir/target" "$dir/project/seeds"; then
            echo "== [$target] $step: ok"
            return 0
        fi
    fi
    echo "== [$target] $step: FAILED (logs in $dir/logs)"
    return 1
}

for step in "${steps[@]}"; do
    if run_step "$step"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        break
    fi
done

echo "dbt: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
