#!/usr/bin/env bash
# Benchmark: the multipart part pipeline on its own. BENCH_FILES (default 8)
# files of BENCH_SIZE_MIB (default 128) MiB in a local directory are copied
# with 5 MiB parts to an s3s-fs bucket (recorded uploads: one synced
# manifest write per part) and to a local directory (object_store's
# in-process upload), BENCH_RUNS (default 3) times each from a fresh state;
# prints the median wall time, MiB/s and CPU seconds, and checks every
# target file against its source with b3sum. Not a test.
#   PASSEUR_BIN=path/to/passeur bench/parts.sh     (default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
bash scripts/setup.sh >/dev/null
set -a; . "$HOME/.cache/passeur/servers/env"; set +a
if [ -z "${PASSEUR_BIN:-}" ]; then
  cargo build --release --workspace --bins --locked --quiet
  PASSEUR_BIN="$CARGO_TARGET_DIR/release/passeur"
fi
FILES="${BENCH_FILES:-8}"
SIZE="${BENCH_SIZE_MIB:-128}"
RUNS="${BENCH_RUNS:-3}"
work="$(mktemp -d)"
s3s_pid=""
cleanup() {
  [ -n "$s3s_pid" ] && kill "$s3s_pid" 2>/dev/null && wait "$s3s_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/src" "$work/s3s/dst"
for i in $(seq 1 "$FILES"); do
  head -c "$((SIZE * 1024 * 1024))" /dev/urandom >"$work/src/f$i.bin"
done
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PASSEUR_S3S_FS" --host 127.0.0.1 --port "$port" --access-key testing --secret-key testing \
  "$work/s3s" >/dev/null 2>&1 &
s3s_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
cat >"$work/s3.toml" <<EOF
[target]
endpoint = "http://127.0.0.1:$port"
allow-http = true
path-style = true
region = "us-east-1"
access-key-id = "testing"
secret-access-key = "testing"
part-size = "5MiB"
EOF
printf '[target]\npart-size = "5MiB"\n' >"$work/local.toml"

# run TARGET_NAME TARGET_URL CONFIG TARGET_DIR → "wall cpu"
run() {
  local name=$1 url=$2 cfg=$3 dir=$4
  rm -rf "$work/state" "$dir"
  mkdir -p "$dir"
  /usr/bin/time -f "%e %U %S" -o "$work/time" \
    "$PASSEUR_BIN" sync --source "$work/src" --target "$url" --state "$work/state" \
    --config "$cfg" --output json >"$work/out" 2>"$work/err" \
    || { echo "$name: passeur failed" >&2; tail -5 "$work/err" >&2; exit 1; }
  for i in $(seq 1 "$FILES"); do
    a="$(b3sum --no-names "$work/src/f$i.bin")"
    b="$(b3sum --no-names "$dir/f$i.bin")"
    [ "$a" = "$b" ] || { echo "$name: f$i.bin differs at the target" >&2; exit 1; }
  done
  read -r wall user sys <"$work/time"
  echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

total=$((FILES * SIZE))
echo "| target | median wall s | MiB/s | median CPU s |"
echo "|---|---|---|---|"
for t in s3s-fs local; do
  : >"$work/walls"; : >"$work/cpus"
  for _ in $(seq 1 "$RUNS"); do
    if [ "$t" = s3s-fs ]; then
      r="$(run "$t" s3://dst "$work/s3.toml" "$work/s3s/dst")"
    else
      r="$(run "$t" "$work/dst-local" "$work/local.toml" "$work/dst-local")"
    fi
    echo "${r% *}" >>"$work/walls"; echo "${r#* }" >>"$work/cpus"
  done
  w="$(median <"$work/walls")"; c="$(median <"$work/cpus")"
  echo "| $t ($FILES × $SIZE MiB, 5 MiB parts) | $w | $(awk -v t="$total" -v w="$w" 'BEGIN {printf "%.0f", t / w}') | $c |"
done
