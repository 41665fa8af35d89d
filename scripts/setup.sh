#!/usr/bin/env bash
# Installs what building and testing passeur needs, idempotently:
#   - system packages: libclang-dev (RocksDB's bindgen), b3sum (test oracle),
#     systemd (systemd-analyze checks the shipped units), strace (the
#     durability test watches fsyncs), chromium (the plan's HTML page is
#     checked in a real headless browser)
#   - test servers, into a cache outside the checkout keyed by version:
#     Azurite (npm), moto + azure-storage-blob + pyarrow (Python venv; pyarrow
#     writes the Parquet inventory reports the plan tests read), s3s-fs (cargo)
#   - kubernetes-validate (Python venv; Kubernetes' JSON schemas bundled, so
#     the manifests under deploy/ are validated offline, without a cluster)
# Usage: scripts/setup.sh [--system-only]
set -euo pipefail

AZURITE_VERSION=3.37.0
MOTO_VERSION=5.2.5
AZURE_BLOB_VERSION=12.31.1
PYARROW_VERSION=26.0.1
S3S_FS_VERSION=0.14.1
KUBE_VALIDATE_VERSION=1.37.0

CACHE="${PASSEUR_CACHE:-$HOME/.cache/passeur}"
SERVERS="$CACHE/servers"
mkdir -p "$SERVERS"

need_apt=()
command -v b3sum >/dev/null || need_apt+=(b3sum)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v strace >/dev/null || need_apt+=(strace)
command -v chromium >/dev/null || need_apt+=(chromium)
# libclang: RocksDB's build (bindgen) fails with "Unable to find libclang"
# without it. bindgen loads libclang.so / libclang-N.so, never
# libclang-cpp.so (the C++ API, present on fresh machines): see
# scripts/libclang.sh, which the test suite checks on fake library trees.
. "$(dirname "$0")/libclang.sh"
if ! have_libclang; then
  need_apt+=(libclang-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ "${1:-}" = "--system-only" ] && exit 0

# Azurite (Azure Blob emulator)
AZ_DIR="$SERVERS/azurite-$AZURITE_VERSION"
if [ ! -x "$AZ_DIR/node_modules/.bin/azurite-blob" ]; then
  echo "setup: installing azurite $AZURITE_VERSION" >&2
  rm -rf "$AZ_DIR.tmp" && mkdir -p "$AZ_DIR.tmp"
  (cd "$AZ_DIR.tmp" && npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null)
  rm -rf "$AZ_DIR" && mv "$AZ_DIR.tmp" "$AZ_DIR"
fi

# moto (S3) and the Azure SDK used only to create test containers
PY_DIR="$SERVERS/py-moto-$MOTO_VERSION-az-$AZURE_BLOB_VERSION-pa-$PYARROW_VERSION"
if [ ! -x "$PY_DIR/bin/moto_server" ] || ! "$PY_DIR/bin/python" -c 'import azure.storage.blob, boto3, pyarrow' 2>/dev/null; then
  echo "setup: installing moto $MOTO_VERSION, pyarrow $PYARROW_VERSION" >&2
  rm -rf "$PY_DIR"
  python3 -m venv "$PY_DIR"
  "$PY_DIR/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
    "azure-storage-blob==$AZURE_BLOB_VERSION" "pyarrow==$PYARROW_VERSION"
fi

# s3s-fs (S3 over a directory); newer versions need a newer rustc
S3S_DIR="$SERVERS/s3s-fs-$S3S_FS_VERSION"
if [ ! -x "$S3S_DIR/bin/s3s-fs" ]; then
  echo "setup: installing s3s-fs $S3S_FS_VERSION (about 2 minutes)" >&2
  cargo install -q "s3s-fs@$S3S_FS_VERSION" --locked --features binary --root "$S3S_DIR" \
    --target-dir "$CACHE/s3s-build"
fi

# kubernetes-validate: the deploy/ manifests against Kubernetes' schemas
KV_DIR="$SERVERS/py-kubernetes-validate-$KUBE_VALIDATE_VERSION"
if [ ! -x "$KV_DIR/bin/kubernetes-validate" ]; then
  echo "setup: installing kubernetes-validate $KUBE_VALIDATE_VERSION" >&2
  rm -rf "$KV_DIR"
  python3 -m venv "$KV_DIR"
  "$KV_DIR/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBE_VALIDATE_VERSION"
fi

# The test suite finds the servers through this file.
cat > "$SERVERS/env" <<ENV
PASSEUR_AZURITE=$AZ_DIR/node_modules/.bin/azurite-blob
PASSEUR_MOTO=$PY_DIR/bin/moto_server
PASSEUR_PYTHON=$PY_DIR/bin/python
PASSEUR_S3S_FS=$S3S_DIR/bin/s3s-fs
PASSEUR_KUBE_VALIDATE=$KV_DIR/bin/kubernetes-validate
PASSEUR_CHROMIUM=$(command -v chromium)
ENV
echo "setup: servers ready" >&2
