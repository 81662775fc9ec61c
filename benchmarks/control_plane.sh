#!/usr/bin/env bash
# The control plane across processes: a remote batch call against the same instant engine in
# this process, per group (docs/benchmarks.md, docs/distributed.md). Knobs (environment):
# OUT_DIR (target/bench), BATCHES (1,4,16), REPEATS (50).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
target/release/grlhf-bench control-plane --batches "${BATCHES:-1,4,16}" --repeats "${REPEATS:-50}" --out "$OUT_DIR"
