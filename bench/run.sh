#!/usr/bin/env bash
# Blueshift's benchmark command: TPC-H on Blueshift, DuckDB and DataFusion, side by side.
#
#   bench/run.sh [--sf 1] [--nodes 2] [--slices-per-node 2] [--queries 1,3,5] [--runs 3]
#                [--timeout 600] [--slow 120] [--keep] [--rebuild]
#
#   1. .venv at the repo root, created with `python3 -m venv` if missing, with the pinned
#      bench/requirements.txt (which includes tests/requirements.txt) installed unless
#      already satisfied;
#   2. cargo build --release -p blueshift, only if target/release/blueshift is missing
#      (or with --rebuild);
#   3. bench/tpch.py with the remaining arguments (see `bench/tpch.py --help` and
#      bench/README.md).
#
# Idempotent: a second run installs and builds nothing. Exit code: tpch.py's (0 all answers
# right, 3 some Blueshift answer wrong or failed, 1 the harness failed, 130 interrupted).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
requirements="$root/bench/requirements.txt"
python="$venv/bin/python"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
binary="$target/release/blueshift"

log() { echo "bench: $*" >&2; }

rebuild=0
args=()
for arg in "$@"; do
    if [ "$arg" = "--rebuild" ]; then rebuild=1; else args+=("$arg"); fi
done

# 1. Python venv with the pinned requirements.
"$root/tests/venv.sh" "$requirements" bench

# 2. The release binary.
if [ "$rebuild" = 1 ] || [ ! -x "$binary" ]; then
    log "cargo build --release -p blueshift"
    cargo build --release -p blueshift
else
    log "using $binary (built $(date -r "$binary" '+%F %T'); --rebuild to rebuild)"
fi

# 3. The benchmark.
exec "$python" "$root/bench/tpch.py" --binary "$binary" ${args[@]+"${args[@]}"}
