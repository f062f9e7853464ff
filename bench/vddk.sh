#!/usr/bin/env bash
# Backup throughput through VDDK (the stand-in library) vs through the local
# image source, on the same image, in the same run. The issue's target: the
# VDDK path within 10% of the local path.
#
# Usage: bench/vddk.sh [SIZE_MIB]   (default 1024)
# Needs: cargo, qemu-img not required. Uses a temp dir; prints MB/s for both
# and the ratio. Each backup goes to its own fresh, unencrypted repository so
# neither benefits from the other's deduplication.
set -euo pipefail

SIZE_MIB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release -p vmkeep-cli --manifest-path "$ROOT/Cargo.toml"
cargo build --quiet --release -p vddk-sim --manifest-path "$ROOT/Cargo.toml" \
    --target-dir "$TARGET/vddk-sim/bench"
VMKEEP=$TARGET/release/vmkeep
mkdir -p "$WORK/libdir"
ln -s "$TARGET/vddk-sim/bench/release/libvixDiskLib.so" "$WORK/libdir/libvixDiskLib.so.8"

# A disk: half incompressible data, a quarter text-like, a quarter zeros.
FLAT=$WORK/disk-flat.vmdk
head -c $((SIZE_MIB / 2))M /dev/urandom > "$FLAT"
{ yes "vmkeep benchmark line $RANDOM" || true; } | head -c $((SIZE_MIB / 4))M >> "$FLAT"
truncate -s ${SIZE_MIB}M "$FLAT"
SECTORS=$((SIZE_MIB * 2048))
cat > "$WORK/disk.vmdk" <<DESC
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW $SECTORS FLAT "disk-flat.vmdk" 0
ddb.adapterType = "lsilogic"
DESC

run() { # name, args...
    local name=$1; shift
    local repo=$WORK/repo-$name
    "$VMKEEP" --quiet init --repo "$repo" --no-encryption >/dev/null
    sync
    local t0 t1
    t0=$(date +%s.%N)
    "$VMKEEP" --quiet backup --repo "$repo" --vddk-libdir "$WORK/libdir" --disk d0 "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk -v n="$name" -v s="$SIZE_MIB" \
        '{d=$2-$1; printf "%-6s %8.2f s %8.1f MB/s\n", n, d, s*1.048576/d}'
}

echo "image: ${SIZE_MIB} MiB"
LOCAL=$(run local --image "$FLAT")
VDDK=$(run vddk --vddk-disk "$WORK/disk.vmdk")
echo "$LOCAL"
echo "$VDDK"
echo "$LOCAL $VDDK" | awk '{printf "vddk/local throughput ratio: %.3f\n", $9/$4}'
