#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine (which has no cargo) and stages
# stripped copies in .gpu/ (git-ignored), small enough to carry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p grlhf -p grlhf-bench
cargo test --release -p grlhf-models --no-run --test parity --test generation --test qwen2_vl \
  --test slot_decoding --test fused
cargo test --release -p grlhf-cluster --no-run --test nccl
mkdir -p .gpu
cp target/release/grlhf target/release/grlhf-bench .gpu/
for t in parity generation qwen2_vl slot_decoding fused nccl; do
  bin=$(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -n 1)
  cp "$bin" ".gpu/$t"
done
strip .gpu/*
du -sh .gpu/*
