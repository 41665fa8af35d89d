#!/usr/bin/env bash
# Benchmark (issue 14): the incremental cutover window after a few changes
# recorded by the Azure change feed, passeur cutover --changes vs a full
# passeur cutover vs rclone sync + rclone check, Azurite → local directory,
# for several dataset sizes. Not a test: prints a markdown table (goals:
# cutover --changes under 5 s, flat in the dataset size).
#   BENCH_SIZES=100000,1000000 BENCH_CHANGES=100 bench/changes.sh
# BENCH_RCLONE=0 leaves rclone out (its first copy of 10⁶ blobs: ~30 min).
# Azurite keeps its metadata in MariaDB (BENCH_AZURITE=sql, the default):
# its own store scans every blob per request and stalls near 430,000.
set -euo pipefail
if [ "${BENCH_AZURITE:-sql}" = sql ] && ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server >/dev/null
fi
exec "$(dirname "$0")/run.sh" bench-changes
