#!/usr/bin/env bash
# Makes sure the repo's Python venv (.venv, git-ignored) exists and holds every pinned
# `name==version` line of the requirements file given as $1 (following `-r` includes).
# Used by tests/run-all.sh (tests/requirements.txt) and bench/run.sh (bench/requirements.txt).
# Idempotent: when everything is installed at its pinned version it installs nothing.
#
#   tests/venv.sh REQUIREMENTS [LOG-PREFIX]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$1"
prefix="${2:-venv}"
python="$venv/bin/python"

log() { echo "$prefix: $*" >&2; }

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
            log "python3 -m venv failed and apt-get is not available"
            exit 1
        fi
    fi
fi

# Every `name==version` line of the requirements (following `-r` includes) that is not
# installed at that version.
missing="$("$python" - "$requirements" <<'PY'
import sys
from importlib import metadata
from pathlib import Path

def specs(path):
    for line in open(path):
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        if spec.startswith("-r"):
            yield from specs(Path(path).parent / spec[2:].strip())
            continue
        yield spec

for spec in specs(sys.argv[1]):
    name, _, version = spec.partition("==")
    try:
        installed = metadata.version(name.split("[", 1)[0].strip())
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
else
    log "Python requirements already installed in .venv"
fi

