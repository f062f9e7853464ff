#!/usr/bin/env bash
# Installs what vmkeep's build and tests need, idempotently and quietly when
# everything is already there: Debian packages (RocksDB library and headers,
# libclang for its bindings, Go and govmomi for the vCenter simulator,
# e2fsprogs and qemu-utils for test images) and the Rust components
# (rustfmt, clippy). Benchmarks need more (restic, borg): scripts/bench.sh
# installs those itself.
set -euo pipefail
pkgs=(librocksdb-dev libclang-dev clang golang-go golang-github-vmware-govmomi-dev
      e2fsprogs qemu-utils pkg-config bc make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
  done
fi
