#!/usr/bin/env bash
# Benchmark (issue 3): bytes read from the source to finish a 1 GiB object
# after a SIGKILL at about half way, passeur vs `rclone copy` (Debian package
# rclone), on the same local s3s-fs servers. Not a test: prints a table and
# fails only if passeur misses its goal (≤ 1.05 × the object).
#   BENCH_SIZE_MIB=1024 bench/resume.sh
exec "$(dirname "$0")/run.sh" bench-resume
