#!/usr/bin/env bash
# Benchmark (issue 3): bytes read from the source to finish a 1 GiB object
# after a SIGKILL at about half way, passeur vs `rclone copy` (Debian package
# rclone), on the same local s3s-fs servers. Not a test: prints a table and
# fails only if passeur misses its goal (≤ 1.05 × the object).
#   BENCH_SIZE_MIB=1024 bench/resume.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
bash scripts/setup.sh >/dev/null
if ! command -v rclone >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rclone >/dev/null
fi
# The same build as the test suite (never -p: it would rebuild RocksDB).
cargo build --workspace --all-targets --locked --quiet
"$CARGO_TARGET_DIR/debug/bench-resume"
