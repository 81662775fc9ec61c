#!/usr/bin/env bash
# Idempotent set-up: a project-local Python venv holding the pinned libtorch (via PyPI's
# torch wheel, the only reachable libtorch 2.11.0 build) and the packages the parity fixtures
# need, plus the readers the observability tests check grlhf's output with (tensorboard's event
# reader, prometheus_client's text parser). When everything is already installed it only
# compares a stamp file and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
# One line per pin; the stamp records exactly this list so a changed pin reinstalls.
# nvidia-cuda-crt (134 KB) is the one CUDA header the torch wheel lacks (crt/host_config.h); the
# CUDA-graph shim in models/csrc compiles against it.
PINS="torch==2.11.0 torchvision==0.26.0 transformers==5.24.0 numpy==2.4.6 pillow==13.0.0 pyarrow==26.0.1 tensorboard==2.21.0 prometheus_client==0.26.0 nvidia-cuda-crt==13.0.88"
STAMP="$VENV/.grlhf-setup-stamp"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ] && [ -x "$VENV/bin/python" ] \
  && [ -e "$VENV/libtorch/lib/libtorch.so" ]; then
  exit 0
fi

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: python3 is required (set PYTHON=/path/to/python3.10+)" >&2
  exit 1
fi

echo "setup: creating $VENV with $PINS (torch is ~4.6 GB; about a minute)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# --no-cache-dir: torch and its CUDA wheels would otherwise stay a second time (~3 GB) in pip's
# cache, on disks that CI machines keep small.
"$VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --no-cache-dir $PINS
"$VENV/bin/python" - <<'PY'
import torch, transformers
assert torch.__version__.startswith("2.11.0"), torch.__version__
print(f"setup: torch {torch.__version__}, transformers {transformers.__version__}")
PY
# torch-sys wants a libtorch directory (include/ + lib/); the torch package is one. A stable
# path keeps .cargo/config.toml independent of the Python minor version.
TORCH_DIR=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$TORCH_DIR" "$VENV/libtorch"
echo "$PINS" > "$STAMP"
