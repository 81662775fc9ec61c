#!/usr/bin/env bash
# Continuous batching (`[generator] slots`) against one plain batch of the same requests, with
# RL-like varied lengths, in one run (no peer: the baseline is grlhf's own plain batch).
# Knobs (environment): PRESETS ("100m"), REQUESTS (64), SLOTS (8,16,32), PROMPT_LEN (16),
# MAX_NEW (128), STOP_EVERY (32: stop probability ≈ 1/32 per step), REPEATS (3), THREADS (all
# CPUs), DEVICE (cpu), DTYPE (f32), OUT_DIR (target/bench), GRLHF / BENCH (release binaries),
# CUDA_GRAPHS (1: also each slot count with the step replayed from a CUDA graph; CUDA only).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
PRESETS=${PRESETS:-"100m"}
GRLHF=${GRLHF:-target/release/grlhf}
BENCH=${BENCH:-target/release/grlhf-bench}

mkdir -p "$OUT_DIR/models"
models=()
for preset in $PRESETS; do
  dir="$OUT_DIR/models/$preset"
  [ -f "$dir/model.safetensors" ] || "$GRLHF" init-model --preset "$preset" --seed 0 --dtype "${INIT_DTYPE:-f32}" --out "$dir"
  models+=(--model "$preset=$dir")
done
"$BENCH" slots "${models[@]}" --requests "${REQUESTS:-64}" --slots "${SLOTS:-8,16,32}" \
  --prompt-len "${PROMPT_LEN:-16}" --max-new-tokens "${MAX_NEW:-128}" --stop-every "${STOP_EVERY:-32}" \
  --repeats "${REPEATS:-3}" --threads "${THREADS:-$(nproc)}" --device "${DEVICE:-cpu}" \
  --dtype "${DTYPE:-f32}" --out "$OUT_DIR" ${CUDA_GRAPHS:+--cuda-graphs}
