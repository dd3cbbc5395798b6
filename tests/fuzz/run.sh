#!/usr/bin/env bash
# Runs Blueshift's fuzz targets (cargo-fuzz / libFuzzer, AddressSanitizer) for a while each.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Default: 60 s for each of pg_messages, sql_front_end, copy_from_stdin and plan_codec, one
# after the other. Installs what it needs: the nightly toolchain (rustup) and cargo-fuzz.
# The committed seed corpus (tests/fuzz/corpus/<target>) is read; what a run finds goes to
# tests/fuzz/target/corpus/<target> (git-ignored), crashes to tests/fuzz/artifacts/<target>.
# Prints libFuzzer's final stats (executions, exec/s) per target; exits non-zero when a
# target crashed. Not part of tests/run-all.sh: a meaningful run takes minutes per target.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pg_messages sql_front_end copy_from_stdin plan_codec)

log() { echo "fuzz: $*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

log "building the targets (release, AddressSanitizer)"
cargo +nightly fuzz build --fuzz-dir tests/fuzz

failed=0
for target in "${targets[@]}"; do
    found="tests/fuzz/target/corpus/$target"
    artifacts="tests/fuzz/artifacts/$target"
    mkdir -p "$found" "$artifacts"
    log "running $target for $seconds s"
    if ! cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "$found" "tests/fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts/" 2> "tests/fuzz/target/$target.log"; then
        log "$target FAILED: see tests/fuzz/target/$target.log and $artifacts"
        failed=1
    fi
    grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" \
        "tests/fuzz/target/$target.log" | sed "s/^/$target /" || true
done
exit "$failed"
