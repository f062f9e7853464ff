#!/usr/bin/env bash
# gc memory at scale (issue 3): builds synthetic repositories of SMALL and
# LARGE chunk counts (half referenced, half garbage; engine/examples/gc_scale.rs),
# runs `vmkeep index rebuild` and then `vmkeep gc` on each under /usr/bin/time,
# and reports gc's peak RSS per chunk as the difference between the two runs
# divided by the difference in chunk counts (the process's fixed baseline
# cancels out).
#   bench/gc-scale.sh [WORKDIR] [SMALL] [LARGE]   (defaults /tmp/vmkeep-gc-scale 20000 2000000)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/vmkeep-gc-scale}
small=${2:-20000}
large=${3:-2000000}
(cd "$here" && cargo build --release -q -p vmkeep-cli && cargo build --release -q -p vmkeep-engine --example gc_scale)
vmkeep=$here/target/release/vmkeep
export VMKEEP_PASSWORD=bench
declare -A peak secs
for n in "$small" "$large"; do
  rm -rf "$work/$n"; mkdir -p "$work/$n"
  export VMKEEP_REPOSITORY=$work/$n/repo VMKEEP_CACHE_DIR=$work/$n/cache
  "$here/target/release/examples/gc_scale" "$VMKEEP_REPOSITORY" "$n" >/dev/null
  "$vmkeep" -q index rebuild >/dev/null
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/$n/rss" "$vmkeep" -q gc >/dev/null
  t1=$(date +%s.%N)
  peak[$n]=$(tail -1 "$work/$n/rss")
  secs[$n]=$(echo "$t1 - $t0" | bc)
  # gc must have removed exactly the garbage half and left the rest intact.
  left=$(find "$VMKEEP_REPOSITORY/chunks" -type f | wc -l)
  [ "$left" -eq $((n / 2)) ] || { echo "gc left $left chunks of $n, expected $((n / 2))" >&2; exit 1; }
  echo "gc chunks=$n garbage=$((n / 2)) seconds=${secs[$n]} peak_rss_kib=${peak[$n]}"
done
echo "gc peak memory per chunk: $(( (peak[$large] - peak[$small]) * 1024 / (large - small) )) bytes (target < 64)"
rm -rf "$work"
