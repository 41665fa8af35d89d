#!/usr/bin/env bash
# Benchmark (issue 5): the cutover window after a few changes, passeur
# cutover (final pass + fast verification) vs rclone sync + rclone check, on
# the same s3s-fs source, for several bucket sizes. Not a test: prints a
# table (goal: passeur ≤ 0.3 × rclone).
#   BENCH_SIZES=5000,20000,50000 BENCH_CHANGES=50 bench/cutover.sh
exec "$(dirname "$0")/run.sh" bench-cutover
