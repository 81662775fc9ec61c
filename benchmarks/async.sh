#!/usr/bin/env bash
# Async-RL throughput (`grlhf bench`, docs/benchmarks.md): a real CPU run with its sweep and the
# simulator's replay of it, a balanced simulated cluster with every sweep axis, the same cluster
# across a head and two worker processes against one process, and simulated scale runs up to 256
# actors; then the criterion microbenchmarks (messaging, replay buffer,
# score parsing, weight sync). Knobs (environment): OUT_DIR (target/bench), GRLHF (release
# grlhf), CRITERION=0 to skip the microbenchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
GRLHF=${GRLHF:-target/release/grlhf}
"$GRLHF" bench configs/bench-cpu.toml --out "$OUT_DIR/async-cpu"
"$GRLHF" bench configs/bench-sim.toml --out "$OUT_DIR/async-sim"
"$GRLHF" bench configs/bench-cluster.toml --out "$OUT_DIR/async-cluster"
"$GRLHF" bench configs/bench-scale.toml --no-sweep --out "$OUT_DIR/async-scale"
if [ "${CRITERION:-1}" != 0 ]; then
  cargo bench -p grlhf-bench --bench messaging --bench replay_buffer --bench score_parsing \
    --bench weight_sync -- --warm-up-time 1 --measurement-time 3
fi
