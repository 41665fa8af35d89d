#!/usr/bin/env bash
# Benchmark (issue 14): the incremental cutover window after a few changes
# recorded by the Azure change feed, passeur cutover --changes vs a full
# passeur cutover vs rclone sync + rclone check, Azurite → local directory,
# for several dataset sizes. Not a test: prints a markdown table (goals:
# cutover --changes under 5 s, flat in the dataset size).
#   BENCH_SIZES=100000,1000000 BENCH_CHANGES=100 bench/changes.sh
exec "$(dirname "$0")/run.sh" bench-changes
