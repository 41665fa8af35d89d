#!/usr/bin/env bash
# The main job on an embedded default: generates a sample dataset in a local
# directory and replicates it to another, twice (the second pass reads and
# writes nothing). No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/passeur/target}"
scripts/setup.sh --system-only
# Same package selection as scripts/test.sh, so both share one build.
cargo build --workspace --all-targets --locked
"$CARGO_TARGET_DIR/debug/passeur" demo --dir "${1:-passeur-demo}"
