#!/usr/bin/env bash
# The main job on an embedded default: generates a sample dataset in a local
# directory and replicates it to another, twice (the second pass reads and
# writes nothing). No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
scripts/setup.sh --system-only
cargo run --locked -q -p passeur -- demo --dir "${1:-passeur-demo}"
