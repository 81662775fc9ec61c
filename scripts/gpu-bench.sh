#!/usr/bin/env bash
# Everything worth measuring about async-RL throughput on a GPU machine, in one call of under
# 10 minutes. The machine needs PyTorch (for libtorch) but no cargo: build here first
# (scripts/gpu-stage.sh puts stripped release binaries in .gpu/), carry .gpu/, and run this from
# the repository root there. Results go to $OUT (or target/gpu-bench):
#   doctor.txt            devices and libraries
#   bench.json, bench.md  `grlhf bench configs/bench-gpu.toml`: baseline on cuda:0, the simulator
#                         replaying it, sync vs async at η = 1, 2, 4, a second generator / judge,
#                         and simulated scale runs up to 256 actors fed the GPU run's profile
#   timeline.png, sweep.png, scale.png
#   decode.json           the decode benchmark against transformers (bf16), for the same card
# PARTS selects: "bench decode" (the default) or one of them.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpu}
RESULTS=${OUT:-target/gpu-bench}
PY=${PY:-python3}
mkdir -p "$RESULTS"
TORCH_LIB=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PARTS=${PARTS:-"bench decode"}
wants() { [[ " $PARTS " == *" $1 "* ]]; }
status=0

"$BIN/grlhf" doctor > "$RESULTS/doctor.txt" 2>&1 || status=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$RESULTS/doctor.txt" 2>&1

if wants bench; then
  timeout 420 "$BIN/grlhf" bench configs/bench-gpu.toml --out /tmp/grlhf-gpu-rl --no-progress \
    > "$RESULTS/bench.txt" 2>&1 || status=1
  for f in bench.json bench.md timeline.png sweep.png scale.png; do
    cp "/tmp/grlhf-gpu-rl/$f" "$RESULTS/" 2>/dev/null
  done
fi

if wants decode; then
  timeout 150 env CHECKS=decode BIN="$BIN" OUT=/tmp/grlhf-gpu-decode PY="$PY" REPEATS=2 \
    bash scripts/gpu-check.sh > "$RESULTS/decode.txt" 2>&1 || status=1
  cp /tmp/grlhf-gpu-decode/decode.json "$RESULTS/" 2>/dev/null
fi

tail -n 5 "$RESULTS"/*.txt
exit $status
