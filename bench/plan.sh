#!/usr/bin/env bash
# Benchmark (issue 16): `passeur plan` over a synthetic S3 bucket against a
# plain listing of it (`rclone size --fast-list`), seconds and peak RSS;
# then `passeur plan --inventory` over S3 Inventory reports (gzip CSV,
# Parquet) of as many objects (BENCH_INVENTORY=0 skips them).
# Not a test: prints a markdown table.
#   BENCH_OBJECTS=1000000 BENCH_RUNS=3 BENCH_LATENCY_MS=0 bench/plan.sh
exec "$(dirname "$0")/run.sh" bench-plan
