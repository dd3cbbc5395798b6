#!/usr/bin/env bash
# Blueshift's test command: sets up what the tests need, builds the server, runs every test.
#
#   1. .venv at the repo root (git-ignored), created with `python3 -m venv` if missing, with
#      the pinned tests/requirements.txt installed unless already satisfied (DuckDB is the
#      oracle for answers, tpchgen-cli generates the TPC-H data);
#   2. the non-Python clients of the client-matrix test (psql, Java, Debian's pgjdbc), from
#      Debian packages when missing;
#   3. cargo build --workspace --all-targets (the binary the end-to-end tests start, and
#      the tests, with one set of features);
#   4. cargo test --workspace, with BLUESHIFT_PYTHON pointing at the venv's Python.
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

# 2. psql, java and the PostgreSQL JDBC driver (tests/e2e/clients.rs), iproute2.
missing_packages=()
command -v psql >/dev/null || missing_packages+=(postgresql-client)
command -v java >/dev/null || missing_packages+=(default-jre-headless)
# `ip netns` for the multi-host test.
command -v ip >/dev/null || missing_packages+=(iproute2)
[ -f /usr/share/java/postgresql.jar ] || missing_packages+=(libpostgresql-jdbc-java)
if [ ${#missing_packages[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        log "installing Debian packages: ${missing_packages[*]}"
        apt-get install -y -qq "${missing_packages[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq "${missing_packages[@]}" >/dev/null; }
    else
        log "missing ${missing_packages[*]} and apt-get is not available; the client tests will fail"
    fi
fi

# 3. The server binary the end-to-end tests start.
# dbt has its own venv (tests/dbt/requirements.txt says why); tests/e2e/dbt.rs uses it.
dbt_venv="$root/tests/dbt/.venv"
if [ ! -x "$dbt_venv/bin/dbt" ]; then
    log "creating the dbt venv $dbt_venv"
    python3 -m venv "$dbt_venv"
    "$dbt_venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        -r "$root/tests/dbt/requirements.txt"
fi
# The whole workspace with every target, not `-p blueshift` alone: cargo unifies the
# dependencies' features over what one invocation builds, so building only the binary
# would build DataFusion & co. a second time, with other features, for `cargo test`.
log "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

# 4. Every test of the workspace.
log "cargo test --workspace"
export BLUESHIFT_PYTHON="$python"
cargo test --workspace --no-fail-fast "$@"
