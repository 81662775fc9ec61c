#!/usr/bin/env bash
# Resident memory of a 10,000-step tiny run with every telemetry output on (docs/benchmarks.md,
# docs/observability.md): flat after warm-up means telemetry does not grow with the run.
# Knobs (environment): OUT_DIR (target/bench), STEPS (10000), WARMUP_STEP (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
target/release/grlhf-bench memory --config configs/bench-memory.toml --steps "${STEPS:-10000}" \
  --warmup-step "${WARMUP_STEP:-1000}" --out "$OUT_DIR/memory"
