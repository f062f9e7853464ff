#!/usr/bin/env bash
# Benchmark (issue 2): vmkeep against restic and borg on the same data set in
# the same run. Data set: ../shared/bench/make-dataset.py (4 GiB ext4 image
# from /usr/lib, 3 later generations at 2% churn, with .cbt change lists).
#   scripts/bench.sh [WORKDIR]        (default /tmp/vmkeep-bench; reuses the data set)
# Prints one line per step (TOOL STEP SECONDS REPO_BYTES [PEAK_RSS_KiB]
# [trials=...]) and a summary table with the ratios. vmkeep's backup steps
# are the median of TRIALS runs (default 3; see backup_step).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_DIR:-$here/../shared}
work=${1:-/tmp/vmkeep-bench}
ds=${BENCH_DATASET:-$work/ds}
mkdir -p "$work"
bash "$here/scripts/install-deps.sh"
for p in restic borgbackup time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
[ -f "$ds/gen3.raw" ] || python3 "$shared/bench/make-dataset.py" "$ds" --size-gib 4 --generations 3 --churn 0.02
(cd "$here" && cargo build --release -q -p vmkeep-cli && cargo build --release -q -p vmkeep-engine --example ceiling)
vmkeep=$here/target/release/vmkeep
out=$work/results.txt
if [ "${SUMMARY_ONLY:-}" = 1 ]; then summary_only=1; else summary_only=0; : > "$out"; fi
now() { date +%s.%N; }
size() { du -sb "$1" | cut -f1; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

if [ "$summary_only" = 0 ]; then
# The machine's ceiling: hash + compress + encrypt on both cores, no storage.
drop
"$here/target/release/examples/ceiling" "$ds/gen0.raw" 2 | tee -a "$out"

export VMKEEP_REPOSITORY=$work/vmkeep-repo VMKEEP_CACHE_DIR=$work/vmkeep-cache VMKEEP_PASSWORD=bench
rm -rf "$VMKEEP_REPOSITORY" "$VMKEEP_CACHE_DIR"
"$vmkeep" init -q >/dev/null
run() { # STEP CMD...
  local step=$1; shift
  drop
  local t0 t1 rss
  t0=$(now)
  /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null
  t1=$(now)
  rss=$(tail -1 "$work/rss")
  echo "vmkeep $step $(echo "$t1 - $t0" | bc) $(size "$VMKEEP_REPOSITORY") $rss" | tee -a "$out"
}
# A backup step runs $TRIALS times (default 3), each from the same repository
# state: the state before the step is kept as hard links (objects are
# immutable files, written by temp file and rename) with a copy of the index
# cache, and put back before each further trial. The median is reported, the
# last trial's repository carries on. Spent trials are moved aside and only
# deleted at the end: this file system may be mounted with `discard`, and
# freeing a gigabyte issues discards that slow the next measured step.
trials=${TRIALS:-3}
spent=$work/spent-trials
rm -rf "$spent"; mkdir -p "$spent"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
backup_step() { # STEP CMD...
  local step=$1; shift
  local before=$work/vmkeep-before times=() rss=0 r t0 t1 i
  rm -rf "$before" "$before-cache"
  cp -al "$VMKEEP_REPOSITORY" "$before"
  cp -a "$VMKEEP_CACHE_DIR" "$before-cache"
  for i in $(seq "$trials"); do
    if [ "$i" -gt 1 ]; then
      mv "$VMKEEP_REPOSITORY" "$spent/$step-$i-repo"
      mv "$VMKEEP_CACHE_DIR" "$spent/$step-$i-cache"
      cp -al "$before" "$VMKEEP_REPOSITORY"
      cp -a "$before-cache" "$VMKEEP_CACHE_DIR"
    fi
    drop
    t0=$(now)
    /usr/bin/time -f "%M" -o "$work/rss" "$@" >"$work/$step.json"
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc)")
    r=$(tail -1 "$work/rss")
    if [ "$r" -gt "$rss" ]; then rss=$r; fi
  done
  mv "$before" "$spent/$step-before"
  mv "$before-cache" "$spent/$step-before-cache"
  echo "vmkeep $step $(median "${times[@]}") $(size "$VMKEEP_REPOSITORY") $rss trials=$(IFS=,; echo "${times[*]}")" | tee -a "$out"
}
mkdir -p "$VMKEEP_CACHE_DIR"
backup_step backup-gen0 "$vmkeep" -q --json backup --image "$ds/gen0.raw" --disk bench
for g in 1 2 3; do
  backup_step "backup-gen$g" "$vmkeep" -q --json backup --image "$ds/gen$g.raw" --disk bench --parent latest --changed-areas "$ds/gen$g.cbt"
done
# Fixed costs of a backup (start, KDF, lock, index, commit): an incremental
# whose change list is empty reads nothing. Run on a scratch copy so the
# repository the later steps use keeps its 4 generations.
: > "$work/empty.cbt"
fixed=()
for i in $(seq "$trials"); do
  rm -rf "$work/fixed-repo" "$work/fixed-cache"
  cp -al "$VMKEEP_REPOSITORY" "$work/fixed-repo"; cp -a "$VMKEEP_CACHE_DIR" "$work/fixed-cache"
  drop; t0=$(now)
  VMKEEP_REPOSITORY=$work/fixed-repo VMKEEP_CACHE_DIR=$work/fixed-cache \
    "$vmkeep" -q --json backup --image "$ds/gen3.raw" --disk bench --changed-areas "$work/empty.cbt" >/dev/null
  t1=$(now); fixed+=("$(echo "$t1 - $t0" | bc)")
  mv "$work/fixed-repo" "$spent/fixed-$i-repo"; mv "$work/fixed-cache" "$spent/fixed-$i-cache"
done
echo "vmkeep backup-fixed $(median "${fixed[@]}") 0 0 trials=$(IFS=,; echo "${fixed[*]}")" | tee -a "$out"
rm -f "$work/vmkeep-restore.raw"
run restore-latest "$vmkeep" -q restore latest --to "$work/vmkeep-restore.raw"
cmp "$ds/gen3.raw" "$work/vmkeep-restore.raw" && echo "vmkeep restore verified byte for byte" | tee -a "$out"
rm -f "$work/vmkeep-restore.raw"

# Issue 14: two 4 GiB disks (gen0 and gen3, which share most chunks) into one
# generation through one write session, against the same two backed up one
# after the other; each into a fresh repository, cold cache.
two() { # STEP CMD...
  local step=$1; shift
  rm -rf "$work/two-repo" "$work/two-cache"
  VMKEEP_REPOSITORY=$work/two-repo "$vmkeep" init -q >/dev/null
  drop; t0=$(now)
  VMKEEP_REPOSITORY=$work/two-repo VMKEEP_CACHE_DIR=$work/two-cache "$@"
  t1=$(now)
  echo "vmkeep $step $(echo "$t1 - $t0" | bc) $(size "$work/two-repo")" | tee -a "$out"
  mv "$work/two-repo" "$spent/$step-repo"; mv "$work/two-cache" "$spent/$step-cache"
}
two two-disks-sequential sh -c '"$0" -q --json backup --image "$1" --disk a >/dev/null &&
  "$0" -q --json backup --image "$2" --disk b >/dev/null' "$vmkeep" "$ds/gen0.raw" "$ds/gen3.raw"
two two-disks-one-generation sh -c '"$0" -q --json backup --image "$1" --disk a --image "$2" --disk b --lineage two >/dev/null' \
  "$vmkeep" "$ds/gen0.raw" "$ds/gen3.raw"

# Peers, same data, same run (their generations are full re-reads: they have no CBT).
drop
bash "$shared/bench/peers.sh" "$ds" "$work/peers" restic borg | tee -a "$out"

# peers.sh restores right after its backups (repository partly in the page
# cache) and restic never fsyncs what it restores. Fair restore: cold cache
# for both, timed until the data is durable (vmkeep fsyncs; restic + sync).
export RESTIC_PASSWORD=bench
rrepo=$work/peers/restic-repo
rm -rf "$work/restic-restore"; mkdir -p "$work/restic-restore"
drop; t0=$(now)
restic -q -r "$rrepo" restore latest --target "$work/restic-restore" >/dev/null
t1=$(now); sync; t2=$(now)
echo "restic restore-cold $(echo "$t1 - $t0" | bc) $(size "$rrepo")" | tee -a "$out"
echo "restic restore-cold-durable $(echo "$t2 - $t0" | bc) $(size "$rrepo")" | tee -a "$out"
rm -rf "$work/restic-restore"

# Issue 3: verify against restic check --read-data, then forget gen0 in both
# and time gc against restic prune. Cold cache before each.
peer() { # STEP CMD...
  local step=$1; shift
  drop
  local t0 t1
  t0=$(now)
  /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null 2>&1
  t1=$(now)
  echo "restic $step $(echo "$t1 - $t0" | bc) $(size "$rrepo") $(tail -1 "$work/rss")" | tee -a "$out"
}
run verify "$vmkeep" -q verify
peer check restic -r "$rrepo" check --read-data
"$vmkeep" -q forget --keep-last 3 >/dev/null
restic -q -r "$rrepo" forget --keep-last 3 >/dev/null
run gc "$vmkeep" -q gc
peer prune restic -r "$rrepo" prune
run verify-after-gc "$vmkeep" -q verify
fi
if [ -n "${spent:-}" ]; then rm -rf "$spent"; fi

python3 - "$out" "$work" <<'PY'
import json, os, sys
rows = {}
ceiling = None
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "ceiling":
        ceiling = int(f[1]) / float(f[2])
    elif len(f) >= 4 and f[0] in ("vmkeep", "restic", "borg") and f[2].replace(".", "", 1).isdigit():
        rows[(f[0], f[1])] = (float(f[2]), int(f[3]), f[4] if len(f) > 4 else "")
size = 4 << 30
def t(tool, step): return rows.get((tool, step), (float("nan"), 0, ""))[0]
print("\n| step | vmkeep s | restic s | borg s | vmkeep vs restic |")
print("|---|---|---|---|---|")
for step in ["backup-gen0", "backup-gen1", "backup-gen2", "backup-gen3", "restore-latest"]:
    v, r, b = t("vmkeep", step), t("restic", step), t("borg", step)
    print(f"| {step} | {v:.1f} | {r:.1f} | {b:.1f} | {r / v:.2f}x faster |")
for tool in ("vmkeep", "restic", "borg"):
    print(f"| repo size after 4 generations, {tool} | {rows.get((tool, 'backup-gen3'), (0, 0))[1] / 2**20:.0f} MiB |")
v0 = t("vmkeep", "backup-gen0")
print(f"full backup: {size / v0 / 1e6:.0f} MB/s; ceiling (hash+zstd+AES on 2 threads): {ceiling / 1e6:.0f} MB/s -> {size / v0 / ceiling * 100:.0f}% of ceiling")
def read_bytes(step):
    # The backup's own report (--json, last trial): bytes it read from the image.
    try:
        return json.load(open(os.path.join(sys.argv[2], step + ".json")))["read_bytes"]
    except (OSError, ValueError, KeyError):
        return None
r0 = read_bytes("backup-gen0")
fx = t("vmkeep", "backup-fixed")
slot = 1 << 20
if r0:
    per0 = (v0 - fx) / (r0 / slot) * 1000
    print(f"fixed costs of a backup (an empty change list: start, KDF, lock, index, commit): {fx:.2f} s")
    print(f"full backup: {per0:.3f} ms per slot read, fixed costs taken off")
for g in (1, 2, 3):
    rg = read_bytes(f"backup-gen{g}")
    floor = f"; it read {rg / r0 * 100:.1f}% of the full backup's bytes (the floor before fixed costs)" if rg and r0 else ""
    print(f"incremental gen{g}: {t('vmkeep', f'backup-gen{g}') / v0 * 100:.1f}% of the full backup's time{floor}")
    if rg and r0:
        per = (t("vmkeep", f"backup-gen{g}") - fx) / (rg / slot) * 1000
        print(f"  per slot read: {per:.3f} ms, {per / per0 * 100:.0f}% of the full backup's (target: within 120%)")
def line(tool, step):
    r = rows.get((tool, step))
    return f"{r[0]:.2f} s, peak {int(r[2]) // 1024} MiB" if r and r[2] else (f"{r[0]:.2f} s" if r else "n/a")
rc, vc = t("restic", "restore-cold-durable"), t("vmkeep", "restore-latest")
print(f"restore, cold cache, until durable: vmkeep {vc:.2f} s, restic {rc:.2f} s (restore {t('restic', 'restore-cold'):.2f} s + sync) -> {rc / vc:.2f}x")
print(f"verify: vmkeep {line('vmkeep', 'verify')}; restic check --read-data {line('restic', 'check')} -> {t('restic', 'check') / t('vmkeep', 'verify'):.2f}x")
print(f"gc after forgetting gen0: vmkeep {line('vmkeep', 'gc')}; restic prune {line('restic', 'prune')} -> {t('restic', 'prune') / t('vmkeep', 'gc'):.2f}x")
ts, to = t("vmkeep", "two-disks-sequential"), t("vmkeep", "two-disks-one-generation")
print(f"two 4 GiB disks: one generation {to:.2f} s, one after the other {ts:.2f} s -> {ts / to:.2f}x")
print("peak RSS KiB: " + ", ".join(f"{s}={rows[('vmkeep', s)][2]}" for s in ["backup-gen0", "backup-gen1", "restore-latest"] if ("vmkeep", s) in rows))
PY
