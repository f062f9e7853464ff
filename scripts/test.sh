#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit and integration test
# (the tests start and stop their own servers on 127.0.0.1). Long soak runs
# are separate: scripts/fuzz.sh (needs cargo-fuzz) and scripts/soak.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
log=$(mktemp)
set +e
cargo test --workspace --no-fail-fast >"$log" 2>&1
status=$?
set -e
cat "$log"
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}')
rm -f "$log"
echo "$passed passed, $failed failed"
exit "$status"
