#!/usr/bin/env bash
# Blueshift's test command: sets up what the tests need, builds the server, runs every test.
#
#   1. .venv at the repo root (git-ignored), created with `python3 -m venv` if missing, with
#      the pinned tests/requirements.txt installed unless already satisfied (DuckDB is the
#      oracle for answers, tpchgen-cli generates the TPC-H data);
#   2. cargo build -p blueshift (the binary the end-to-end tests start);
#   3. cargo test --workspace, with BLUESHIFT_PYTHON pointing at the venv's Python.
#
# Idempotent: a second run installs nothing. Extra arguments go to `cargo test`
# (e.g. `tests/run-all.sh -- slt`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
requirements="$root/tests/requirements.txt"
python="$venv/bin/python"

log() { echo "run-all: $*"; }

# 1. Python venv with the pinned requirements.
"$root/tests/venv.sh" "$requirements" run-all

# 2. The server binary the end-to-end tests start.
log "cargo build -p blueshift"
cargo build -p blueshift

# 3. Every test of the workspace.
log "cargo test --workspace"
export BLUESHIFT_PYTHON="$python"
cargo test --workspace --no-fail-fast "$@"
