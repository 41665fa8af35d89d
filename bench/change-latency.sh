#!/usr/bin/env bash
# Benchmark (issue 14): change-feed replication latency. passeur run
# follows the change feed with full passes 6 h apart; each round writes
# objects (1 KiB … 21 MiB) and deletes one at the source, records them in
# the feed, and times each change from the moment the feed makes it
# consumable to the moment it reads back equal at the target. Not a test:
# prints a markdown table (goal: max within one poll interval + transfer).
#   BENCH_POLL=10s BENCH_ROUNDS=8 BENCH_DELAYS=0,50 bench/change-latency.sh
exec "$(dirname "$0")/run.sh" bench-change-latency
