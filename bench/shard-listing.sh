#!/usr/bin/env bash
# Benchmark (issue 15): one shard's no-op pass, hash shards (each lists every
# name, skips the others') vs range shards (each lists its range, learned by
# `passeur manifest ranges`), a synthetic S3 bucket behind a proxy adding a
# round trip per request. Not a test: prints a markdown table.
#   BENCH_OBJECTS=1000000 BENCH_SHARDS=4 BENCH_LATENCY_MS=30 bench/shard-listing.sh
exec "$(dirname "$0")/run.sh" bench-shard-listing
