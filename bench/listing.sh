#!/usr/bin/env bash
# Benchmark (issue 4): an incremental pass over a large unchanged S3 bucket
# (behind a proxy that adds a round trip to every request), passeur with one
# listing and with parallel key ranges, vs `rclone lsf -R`. Not a test:
# prints a table.
#   BENCH_OBJECTS=50000 BENCH_LATENCY_MS=30 BENCH_SERVER=moto bench/listing.sh
exec "$(dirname "$0")/run.sh" bench-listing
