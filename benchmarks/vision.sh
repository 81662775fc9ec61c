#!/usr/bin/env bash
# Qwen2-VL vision encoding and multimodal decode: grlhf vs transformers, same checkpoints.
# Knobs (environment): PRESETS ("tiny 100m"; "2b" on a GPU), IMAGES (4), BATCH (1), NEW_TOKENS
# (32), REPEATS (3), THREADS (all CPUs), DEVICE (cpu), DTYPE (f32), OUT_DIR (target/bench),
# BENCH (release grlhf-bench), PY (the venv's python).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
PRESETS=${PRESETS:-"tiny 100m"}
BENCH=${BENCH:-target/release/grlhf-bench}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT_DIR/models"
models=()
for preset in $PRESETS; do
  dir="$OUT_DIR/models/vl-$preset"
  [ -f "$dir/bench_image.png" ] || "$PY" benchmarks/vision_peer.py --model "vl-$preset=$dir" --create "$preset" --dtype "${DTYPE:-f32}"
  models+=(--model "vl-$preset=$dir")
done
"$BENCH" vision "${models[@]}" --images "${IMAGES:-4}" --batch "${BATCH:-1}" \
  --new-tokens "${NEW_TOKENS:-32}" --repeats "${REPEATS:-3}" --threads "${THREADS:-$(nproc)}" \
  --device "${DEVICE:-cpu}" --dtype "${DTYPE:-f32}" --peer-python "$PY" --out "$OUT_DIR"
