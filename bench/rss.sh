#!/usr/bin/env bash
# Benchmark (issue 4): peak RSS of one pass over many source objects
# (default 1,000,000 small files; local directory → local directory),
# passeur vs `rclone copy` on the same listing, measured by GNU time.
# Not a test: prints a table and fails only if passeur misses its goal
# (≤ 150 MiB). Needs about 4 GB of free disk for a million files.
#   BENCH_OBJECTS=1000000 bench/rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
n="${BENCH_OBJECTS:-1000000}"
need=()
command -v rclone >/dev/null || need+=(rclone)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup.sh --system-only >/dev/null
# The same build as the test suite (never -p: it would rebuild RocksDB).
cargo build --workspace --all-targets --locked --quiet
passeur="$CARGO_TARGET_DIR/debug/passeur"

work="$(mktemp -d "${TMPDIR:-/tmp}/passeur-rss.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "creating $n objects of 100 bytes in 1,000 directories..." >&2
python3 - "$work/src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
body = b"x" * 100
for d in range(1000):
    os.makedirs(f"{root}/d{d:03}", exist_ok=True)
for i in range(n):
    with open(f"{root}/d{i % 1000:03}/obj-{i:07}", "wb") as f:
        f.write(body)
PY

measure() { # name, command...
  local name="$1"; shift
  /usr/bin/time -f "%M %e" -o "$work/$name.time" "$@" >/dev/null 2>"$work/$name.err" || {
    echo "$name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
  read -r kib secs < "$work/$name.time"
  printf '%-8s %12d %14.1f %10.1f\n' "$name" "$n" "$(echo "$kib/1024" | bc -l)" "$secs"
  echo "$kib" > "$work/$name.kib"
}
printf '%-8s %12s %14s %10s\n' tool objects "peak RSS MiB" seconds
measure passeur "$passeur" sync --source "$work/src" --target "$work/dst-passeur" --state "$work/state" --output plain
measure rclone rclone copy "$work/src" "$work/dst-rclone"
kib="$(cat "$work/passeur.kib")"
if [ "$kib" -gt $((150 * 1024)) ]; then
  echo "goal missed: passeur peak RSS $((kib / 1024)) MiB (goal <= 150 MiB)" >&2; exit 1
fi
echo "goal met: passeur peak RSS $((kib / 1024)) MiB (goal <= 150 MiB)"
