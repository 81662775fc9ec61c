#!/usr/bin/env bash
# Every GPU check in one call, for a GPU machine that has PyTorch + transformers but no cargo.
#
# Build here first (scripts/gpu-stage.sh puts stripped binaries in .gpu/), carry .gpu/, then run
# this from the repository root there. Results go to $OUT (or target/gpu-check): doctor output,
# bf16/f32 parity on CUDA against transformers on the same GPU (text and vision-language),
# the generation tests on CUDA (the sync-free loop against the stepwise one, token for token),
# continuous batching (slot cache) on CUDA, which attention kernel SDPA picks for decode shapes
# and what cuDNN's plan cache costs, the decode benchmark (0.5B-shaped random Qwen2, bf16) and
# the multimodal benchmark (2B-shaped random Qwen2-VL, bf16) against transformers, and a short
# `grlhf pipeline` (configs/gpu-smoke.toml) with every model on cuda:0, and the multi-process
# checks (scripts/gpu-cluster-check.sh: NCCL from tensor pointers, two processes on one GPU
# over TCP against one process).
# CHECKS selects parts: "parity generation slots sdpa decode vision pipeline cluster" (the
# default) or a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpu}
RESULTS=${OUT:-target/gpu-check}
PY=${PY:-python3}
mkdir -p "$RESULTS"
TORCH_LIB=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
CHECKS=${CHECKS:-"parity generation slots sdpa decode vision pipeline cluster"}
wants() { [[ " $CHECKS " == *" $1 "* ]]; }

"$BIN/grlhf" doctor > "$RESULTS/doctor.txt" 2>&1 || status=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$RESULTS/doctor.txt" 2>&1

if wants parity; then {
  "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  "$PY" scripts/make_fixtures.py --device cuda --out /tmp/grlhf-fixtures-cuda
  GRLHF_FIXTURES=/tmp/grlhf-fixtures-cuda GRLHF_TEST_DEVICE=cuda:0 \
    "$BIN/parity" --test-threads 1 --nocapture
  # Vision-language parity (those fixtures are also computed on the GPU).
  GRLHF_FIXTURES=/tmp/grlhf-fixtures-cuda GRLHF_TEST_DEVICE=cuda:0 \
    "$BIN/qwen2_vl" --test-threads 1 --nocapture
} > "$RESULTS/parity.txt" 2>&1 || status=1; fi

if wants generation; then
  GRLHF_TEST_DEVICE=cuda:0 "$BIN/generation" --test-threads 1 > "$RESULTS/generation.txt" 2>&1 || status=1
fi

if wants slots; then
  # Continuous batching (CUDA-graph replay against the eager step included), and fused
  # q/k/v + gate/up against the separate projections, on CUDA; then the continuous-batching
  # benchmark on the 0.5B shape in bf16, eager and graphed.
  { GRLHF_TEST_DEVICE=cuda:0 "$BIN/slot_decoding" --test-threads 1 --nocapture
    GRLHF_TEST_DEVICE=cuda:0 "$BIN/fused" --test-threads 1
  } > "$RESULTS/slots.txt" 2>&1 || status=1
  timeout 240 env PRESETS=0.5b INIT_DTYPE=bf16 DEVICE=cuda:0 DTYPE=bf16 REQUESTS=64 SLOTS=16,64 \
    REPEATS=2 CUDA_GRAPHS=1 GRLHF="$BIN/grlhf" BENCH="$BIN/grlhf-bench" \
    OUT_DIR=/tmp/grlhf-gpu-slots bash benchmarks/slots.sh > "$RESULTS/slots-bench.txt" 2>&1 || status=1
  cp /tmp/grlhf-gpu-slots/slots.json "$RESULTS/" 2>/dev/null
fi

if wants sdpa; then
  timeout 120 "$PY" benchmarks/sdpa_choice.py --out "$RESULTS/sdpa.json" > "$RESULTS/sdpa.txt" 2>&1 || status=1
fi

if wants vision; then
  PRESETS=${VL_PRESETS:-2b} DEVICE=cuda:0 DTYPE=bf16 IMAGES=8 BATCH=8 NEW_TOKENS=64 \
    REPEATS=${REPEATS:-2} BENCH="$BIN/grlhf-bench" PY="$PY" OUT_DIR=/tmp/grlhf-gpu-vision \
    bash benchmarks/vision.sh > "$RESULTS/vision-bench.txt" 2>&1 || status=1
  # The table is in vision-bench.txt; at most 8 files come back from the GPU machine.
  cp /tmp/grlhf-gpu-vision/vision.json "$RESULTS/" 2>/dev/null
fi

if wants decode; then
  PRESETS=${PRESETS:-0.5b} INIT_DTYPE=bf16 DEVICE=cuda:0 DTYPE=bf16 PROMPT_LEN=64 NEW_TOKENS=128 \
    BATCHES=${BATCHES:-1,8,64} REPEATS=${REPEATS:-2} GRLHF="$BIN/grlhf" BENCH="$BIN/grlhf-bench" \
    PY="$PY" OUT_DIR=/tmp/grlhf-gpu-bench bash benchmarks/decode.sh > "$RESULTS/bench.txt" 2>&1 || status=1
  cp /tmp/grlhf-gpu-bench/decode.json /tmp/grlhf-gpu-bench/decode.png "$RESULTS/" 2>/dev/null
fi

if wants pipeline; then
  rm -rf runs/gpu-smoke
  if timeout 300 "$BIN/grlhf" pipeline configs/gpu-smoke.toml > "$RESULTS/pipeline.txt" 2>&1; then
    cp runs/gpu-smoke/report.md "$RESULTS/pipeline-report.md"
  else
    status=1
  fi
fi

if wants cluster; then
  BIN="$BIN" RESULTS="$RESULTS" PY="$PY" bash scripts/gpu-cluster-check.sh > /dev/null 2>&1 || status=1
fi

tail -n 3 "$RESULTS"/*.txt
exit $status
