#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a fixed time each.
#   scripts/fuzz.sh            30 s per target (CI smoke run)
#   scripts/fuzz.sh 3600       one hour per target (soak)
# Extra arguments after the seconds go to libFuzzer (e.g. -jobs=2).
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Only the stable
# toolchain is installed, so nightly-only flags are unlocked with
# RUSTC_BOOTSTRAP=1. Crashes are saved under fuzz/artifacts/<target>/ and
# make the script exit non-zero; corpora grow under fuzz/corpus/<target>/.
# FUZZ_FLAGS adds cargo-fuzz build flags, e.g. FUZZ_FLAGS=-O for a release
# build without debug assertions (the default build keeps overflow checks).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-30}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
# shellcheck disable=SC2086  # FUZZ_FLAGS is a list of flags
cargo fuzz build ${FUZZ_FLAGS:-}
status=0
for t in $targets; do
    echo "== $t (${secs}s)"
    log=$(mktemp)
    # shellcheck disable=SC2086
    if cargo fuzz run ${FUZZ_FLAGS:-} "$t" -- -max_total_time="$secs" "$@" >"$log" 2>&1; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" | tail -n 2 || true
    else
        status=1
        tail -n 40 "$log"
        echo "== $t FAILED (artifacts in fuzz/artifacts/$t/)"
    fi
    rm -f "$log"
done
exit "$status"
