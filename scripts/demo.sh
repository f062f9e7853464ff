#!/usr/bin/env bash
# The main job on the embedded default: a local repository backing up a
# local disk image, no vSphere anywhere. Makes a small ext4 image, backs it
# up, changes a file, backs it up again incrementally with a changed-areas
# list, lists the generations, restores the first and checks it byte for
# byte. Work files go to ${DEMO_DIR:-/tmp/vmkeep-demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -q -p vmkeep-cli
vmkeep=$PWD/target/release/vmkeep
dir=${DEMO_DIR:-/tmp/vmkeep-demo}
rm -rf "$dir"; mkdir -p "$dir/files"
export VMKEEP_REPOSITORY=$dir/repo VMKEEP_CACHE_DIR=$dir/cache
echo "demo password" > "$dir/password"; export VMKEEP_PASSWORD_FILE=$dir/password
# A 256 MiB ext4 image holding some real files.
cp -r /usr/share/doc "$dir/files/doc" 2>/dev/null || true
head -c 8M /dev/urandom > "$dir/files/random.bin"
mke2fs -q -t ext4 -d "$dir/files" "$dir/disk.raw" 256M
cp --sparse=always "$dir/disk.raw" "$dir/gen0.raw"
set -x
"$vmkeep" init
"$vmkeep" backup --image "$dir/disk.raw" --disk demo-disk
{ set +x; } 2>/dev/null
# Change 2 MiB in the middle of the disk and record where, as CBT would.
head -c 2M /dev/urandom | dd of="$dir/disk.raw" bs=1M seek=100 conv=notrunc status=none
echo "104857600,2097152" > "$dir/changed.txt"
set -x
"$vmkeep" backup --image "$dir/disk.raw" --disk demo-disk --parent latest --changed-areas "$dir/changed.txt"
"$vmkeep" generations
"$vmkeep" stats
first=$("$vmkeep" generations --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"][:12])')
"$vmkeep" restore "$first" --to "$dir/restored-gen0.raw"
cmp "$dir/gen0.raw" "$dir/restored-gen0.raw"
"$vmkeep" restore latest --to "$dir/restored-latest.raw"
cmp "$dir/disk.raw" "$dir/restored-latest.raw"
{ set +x; } 2>/dev/null
echo "demo OK: both generations restored byte for byte (work files in $dir)"
