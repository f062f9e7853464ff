#!/usr/bin/env bash
# Long soak runs that CI keeps short: the crash tests with many kills, and
# the fuzz targets for longer.
#   scripts/soak.sh [KILLS=500] [FUZZ_SECONDS=600]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-500}
fuzz=${2:-600}
VMKEEP_CRASH_BACKUPS=$kills VMKEEP_CRASH_GCS=$((kills / 2)) \
  cargo test --release -p vmkeep-tests --test crash -- --nocapture
if command -v cargo-fuzz >/dev/null; then
  bash scripts/fuzz.sh "$fuzz"
else
  echo "soak: cargo-fuzz is not installed (cargo install cargo-fuzz --locked); fuzzing skipped" >&2
  exit 1
fi
