#!/usr/bin/env bash
# The multi-process GPU checks (issue 16), run by scripts/gpu-check.sh (CHECKS contains
# "cluster") on a GPU machine with the binaries scripts/gpu-stage.sh staged in $BIN:
#   1. the NCCL pieces on CUDA (`nccl` test binary): a single-rank broadcast from tch tensors'
#      device pointers, bit-exact, with its GB/s; a communicator whose second rank never joins is
#      aborted at its deadline;
#   2. two processes on one GPU over TCP: a synchronous tiny-world run with every model on cuda:0,
#      once in one process, again in one process (the control: run-to-run noise on this GPU), and
#      with its generator and judge on a worker process (`grlhf launch`); the per-step reward,
#      loss, KL and gradient norm are compared (bit-exact expected; 1e-5 allowed);
#   3. the same two-process run with `[weights] transport = "auto"`: the head (learner on cuda:0)
#      tries NCCL with the worker, NCCL refuses two ranks on one GPU, the worker gets TCP, and
#      summary.json says so; the run matches the one-process run.
# NCCL forbids two ranks on one GPU, so a two-process NCCL broadcast needs two GPUs.
# Writes $RESULTS/cluster.txt; exits non-zero when a check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpu}
RESULTS=${RESULTS:-${OUT:-target/gpu-check}}
PY=${PY:-python3}
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/grlhf-gpu-cluster.XXXXXX)
status=0
{
  echo "== NCCL on CUDA"
  "$BIN/nccl" --test-threads 1 --nocapture || status=1

  echo "== two processes on one GPU over TCP"
  for name in one control two auto; do
    nodes=""; judge_node=""; transport="tcp"
    case $name in two|auto) nodes='nodes = ["w1"]'; judge_node='node = "w1"' ;; esac
    [ "$name" = auto ] && transport="auto"
    cat > "$WORK/$name.toml" <<TOML
mode = "sync"
steps = 4
seed = 0
run_dir = "$WORK/run-$name"
max_staleness = 0
group_size = 4
batch_groups = 4

[data]
world_size = 64

[model]
policy = "world:tiny"

[generator]
count = 1
devices = ["cuda:0"]
$nodes
batch_prompts = 2
max_new_tokens = 6

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
$judge_node

[learner]
device = "cuda:0"
lr = 1e-2
micro_batch = 16

[learner.grpo]
kl_beta = 0.0

[weights]
transport = "$transport"

[cluster]
attach_timeout_s = 60
TOML
  done
  timeout 240 "$BIN/grlhf" run "$WORK/one.toml" --no-progress || status=1
  timeout 240 "$BIN/grlhf" run "$WORK/control.toml" --no-progress || status=1
  timeout 300 "$BIN/grlhf" launch "$WORK/two.toml" --no-progress || status=1
  echo "== auto on one GPU: NCCL is tried, refuses two ranks on one GPU, and the worker gets TCP"
  timeout 300 "$BIN/grlhf" launch "$WORK/auto.toml" --no-progress || status=1
  "$PY" - "$WORK" <<'PY' || status=1
import json, sys
work = sys.argv[1]
def steps(name):
    with open(f"{work}/run-{name}/metrics.jsonl") as f:
        return [json.loads(l) for l in f if l.strip()]
one, control, two = steps("one"), steps("control"), steps("two")
keys = ["reward_mean", "loss", "kl", "grad_norm"]
def worst(a, b):
    assert len(a) == len(b) == 4, (len(a), len(b))
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in keys)
noise, across = worst(one, control), worst(one, two)
exact = all(x[k] == y[k] for x, y in zip(one, two) for k in keys)
tokens = all(x["response_tokens"] == y["response_tokens"] for x, y in zip(one, two))
print(f"one process vs one process (control): max |difference| {noise:.3g}")
print(f"one process vs two processes:         max |difference| {across:.3g}; bit-exact: {exact}; tokens equal: {tokens}")
with open(f"{work}/run-auto/summary.json") as f:
    summary = json.load(f)
print("auto:", summary["weights_transport"]["reason"])
for role, r in summary["remote_roles"].items():
    print(f"auto: {role} weights via {r.get('weights_via')}")
auto_same = worst(one, steps("auto")) <= 1e-5
print(f"auto run matches the one-process run: {auto_same}")
sys.exit(0 if across <= 1e-5 and tokens and auto_same else 1)
PY
} > "$RESULTS/cluster.txt" 2>&1
tail -n 4 "$RESULTS/cluster.txt"
rm -rf "$WORK"
exit $status
