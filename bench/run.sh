#!/usr/bin/env bash
# Set up what the benchmarks need (test servers, rclone), build the
# binaries optimised (release profile: rclone is an optimised binary too),
# and run the benchmark binary named by $1:
#   bench/run.sh bench-resume
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
bash scripts/setup.sh >/dev/null
if ! command -v rclone >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rclone >/dev/null
fi
# Whole workspace (never -p: it would rebuild RocksDB with other features).
cargo build --release --workspace --bins --locked --quiet
exec "$CARGO_TARGET_DIR/release/$1"
