#!/usr/bin/env bash
# The fault campaign's soak mode (not in CI): Azurite → s3s-fs behind
# proxies breaking a seeded share of the requests every way, a live writer
# changing the source, `passeur sync --delete` pass after pass; then
# `passeur cutover --deep` and an independent byte-for-byte comparison.
# Prints the seed first and a table last; exit 0 only if CLEAN.
#   PASSEUR_SOAK_MINUTES=20 PASSEUR_FAULT_SEED=N bench/soak.sh
exec "$(dirname "$0")/run.sh" bench-soak
