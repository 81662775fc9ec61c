#!/usr/bin/env bash
# The weight data plane against raw loopback TCP in the same run (docs/benchmarks.md,
# docs/distributed.md). Knobs (environment): OUT_DIR (target/bench), MIB (512), REPEATS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
target/release/grlhf-bench weights --mib "${MIB:-512}" --repeats "${REPEATS:-5}" --out "$OUT_DIR"
