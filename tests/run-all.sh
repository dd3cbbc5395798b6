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
if [ ! -x "$python" ]; then
    log "creating the Python venv $venv"
    if ! python3 -m venv "$venv"; then
        # Debian's python3 needs python3-venv for `-m venv`.
        if command -v apt-get >/dev/null; then
            log "installing Debian package python3-venv"
            apt-get update -qq && apt-get install -y -qq python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            log "python3 -m venv failed and apt-get is not available" >&2
            exit 1
        fi
    fi
fi

# Every `name==version` line of requirements.txt that is not installed at that version.
missing="$("$python" - "$requirements" <<'PY'
import sys
from importlib import metadata

for line in open(sys.argv[1]):
    spec = line.split("#", 1)[0].strip()
    if not spec:
        continue
    name, _, version = spec.partition("==")
    try:
        installed = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version.strip():
        print(spec)
PY
)"
if [ -n "$missing" ]; then
    log "installing into .venv: $(echo $missing)"
    pip_args=(--disable-pip-version-check --quiet)
    if [ -d /opt/wheels ] && compgen -G "/opt/wheels/*.whl" >/dev/null; then
        pip_args+=(--find-links /opt/wheels)
    fi
    "$python" -m pip install "${pip_args[@]}" -r "$requirements"
    "$python" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -iE '^(duckdb|tpchgen-cli) ' | sed 's/^/run-all: installed /'
else
    log "Python requirements already installed in .venv"
fi

# 2. The server binary the end-to-end tests start.
log "cargo build -p blueshift"
cargo build -p blueshift

# 3. Every test of the workspace.
log "cargo test --workspace"
export BLUESHIFT_PYTHON="$python"
cargo test --workspace --no-fail-fast "$@"
