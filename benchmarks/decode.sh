#!/usr/bin/env bash
# Decode throughput of grlhf vs transformers' generate, same checkpoints / machine / threads.
# Knobs (environment): PRESETS ("tiny 100m"), BATCHES (1,8,64), PROMPT_LEN (16), NEW_TOKENS
# (64), REPEATS (3), THREADS (all CPUs), DEVICE (cpu), DTYPE (f32), OUT_DIR (target/bench),
# GRLHF / BENCH (release binaries), PY (the venv's python).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
PRESETS=${PRESETS:-"tiny 100m"}
BATCHES=${BATCHES:-1,8,64}
PROMPT_LEN=${PROMPT_LEN:-16}
NEW_TOKENS=${NEW_TOKENS:-64}
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-$(nproc)}
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-f32}
GRLHF=${GRLHF:-target/release/grlhf}
BENCH=${BENCH:-target/release/grlhf-bench}
PY=${PY:-.venv/bin/python}

mkdir -p "$OUT_DIR/models"
models=()
for preset in $PRESETS; do
  dir="$OUT_DIR/models/$preset"
  [ -f "$dir/model.safetensors" ] || "$GRLHF" init-model --preset "$preset" --seed 0 --dtype "${INIT_DTYPE:-f32}" --out "$dir"
  models+=(--model "$preset=$dir")
done
common=(--batches "$BATCHES" --prompt-len "$PROMPT_LEN" --new-tokens "$NEW_TOKENS"
        --repeats "$REPEATS" --threads "$THREADS" --device "$DEVICE" --dtype "$DTYPE")
"$BENCH" decode "${models[@]}" "${common[@]}" --peer-python "$PY" --out "$OUT_DIR"
