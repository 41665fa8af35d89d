#!/usr/bin/env bash
# The performance benchmark (issue 13): every workload side by side with
# rclone, release builds, medians of BENCH_RUNS (default 3); a markdown
# table on stdout, every run as JSON in BENCH_JSON (default
# $CARGO_TARGET_DIR/bench-perf.json). A full run takes about an hour
# (BENCH_ONLY=large-azure-s3,small-fs-s3 picks workloads; BENCH_TINY=100000
# shrinks the tiny-file ones). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
export BENCH_JSON="${BENCH_JSON:-$CARGO_TARGET_DIR/bench-perf.json}"
need=()
command -v b3sum >/dev/null || need+=(b3sum)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PASSEUR_BIN="${PASSEUR_BIN:-$CARGO_TARGET_DIR/release/passeur}"
exec bash bench/run.sh bench-perf
