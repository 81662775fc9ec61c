#!/usr/bin/env bash
# Sync vs async GRPO throughput on one config, with ideal bounds from measured stage times.
# Knobs (environment): CONFIG (configs/tiny-async.toml), STEPS (the config's), OUT_DIR
# (target/bench), BENCH (release grlhf-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
BENCH=${BENCH:-target/release/grlhf-bench}
args=("${CONFIG:-configs/tiny-async.toml}" --out "$OUT_DIR")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
"$BENCH" rl "${args[@]}"
