#!/usr/bin/env bash
# How long the head takes to notice a lost worker (docs/distributed.md): a head and two workers
# of the release binary train a tiny world model on 127.0.0.1; after 5 steps worker w1 is
# SIGKILLed, 3 s later worker w2 is SIGSTOPped (and let go 9 s later). The delay is from the
# signal to the supervisor's log line recording the generator's failure. Writes
# OUT_DIR/worker_loss.json and .md. Knobs (environment): OUT_DIR (target/bench), TRIALS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-target/bench}
TRIALS=${TRIALS:-3}
BIN=$PWD/target/release/grlhf
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT_DIR"
cat > "$WORK/c.toml" <<TOML
mode = "async"
steps = 100000
seed = 0
run_dir = "$WORK/run"
group_size = 8
batch_groups = 8

[data]
world_size = 200

[model]
policy = "world:tiny"

[generator]
count = 2
nodes = ["w1", "w2"]
batch_prompts = 4
max_new_tokens = 8

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"

[learner]
lr = 1e-2
warmup_steps = 0
micro_batch = 16

[learner.grpo]
kl_beta = 0.0
TOML
results=()
for trial in $(seq 1 "$TRIALS"); do
  rm -rf "$WORK/run"
  port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=warn "$BIN" run "$WORK/c.toml" --listen "127.0.0.1:$port" --no-progress > "$WORK/head.log" 2>&1 &
  head=$!
  "$BIN" run "$WORK/c.toml" --join "127.0.0.1:$port" --node w1 > /dev/null 2>&1 &
  w1=$!
  "$BIN" run "$WORK/c.toml" --join "127.0.0.1:$port" --node w2 > /dev/null 2>&1 &
  w2=$!
  deadline=$((SECONDS + 300))
  until [ "$(wc -l < "$WORK/run/metrics.jsonl" 2>/dev/null || echo 0)" -ge 5 ]; do
    [ $SECONDS -lt $deadline ] || { echo "trial $trial: no 5 steps within 300 s" >&2; exit 1; }
    sleep 0.1
  done
  t_kill=$(date +%s.%N); kill -9 $w1
  sleep 3
  t_stop=$(date +%s.%N); kill -STOP $w2
  sleep 9; kill -CONT $w2; sleep 1
  kill -9 $head $w2 2>/dev/null || true
  wait 2>/dev/null || true
  results+=("$($PY - "$WORK/head.log" "$t_kill" "$t_stop" <<'PY'
import datetime, json, re, sys
log, t_kill, t_stop = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def at(line):
    stamp = re.search(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z', line).group(1)
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
kill = stop = None
for line in open(log):
    if 'supervisor' in line and 'generator-0 failed' in line and kill is None:
        kill = at(line) - t_kill
    if 'supervisor' in line and 'generator-1 failed' in line and stop is None:
        stop = at(line) - t_stop
print(json.dumps({"sigkill_s": kill, "sigstop_s": stop}))
PY
)")
  echo "trial $trial: ${results[-1]}"
done
$PY - "$OUT_DIR" "${results[@]}" <<'PY'
import json, platform, sys
out, trials = sys.argv[1], [json.loads(t) for t in sys.argv[2:]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
report = {"machine": cpu, "trials": trials,
          "note": "seconds from the signal to the supervisor's record of the failure; heartbeat 2 s x 3"}
json.dump(report, open(f"{out}/worker_loss.json", "w"), indent=1)
fmt = lambda v: "not seen" if v is None else f"{v:.3f} s"
md = "| trial | SIGKILL detected after | SIGSTOP detected after |\n|---:|---:|---:|\n"
md += "".join(f"| {i + 1} | {fmt(t['sigkill_s'])} | {fmt(t['sigstop_s'])} |\n" for i, t in enumerate(trials))
open(f"{out}/worker_loss.md", "w").write(md)
print(md)
PY
echo "wrote $OUT_DIR/worker_loss.{json,md}"
