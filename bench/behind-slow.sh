#!/usr/bin/env bash
# Benchmark (issue 10, finding 6): peak RSS of a pass over BENCH_OBJECTS
# (default 2,000,000) small objects listed behind one slow object of
# BENCH_SLOW_GIB GiB (default 5), from a synthetic S3 bucket to a local
# directory; then of `sync --delete` when the source lists nothing. Not a
# test: prints what it measured, fails if passeur misses its goal (≤ 150 MiB)
# or the target read back differs. Needs about 15 GB of free disk and
# GNU time.
#   BENCH_OBJECTS=2000000 BENCH_SLOW_GIB=5 bench/behind-slow.sh
set -euo pipefail
if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time >/dev/null
fi
exec "$(dirname "$0")/run.sh" bench-behind-slow
