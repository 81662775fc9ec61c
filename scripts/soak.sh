#!/usr/bin/env bash
# The soak run (`make soak`; not part of CI): configs/soak.toml with faults on, SIGKILLed once
# part-way and resumed, then a report of what was trained, injected, restarted and lost —
# runs/soak/soak-report.json and .md. Exits non-zero if any prompt was lost or trained twice.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/grlhf
CONFIG=${1:-configs/soak.toml}
RUN=runs/soak
rm -rf "$RUN"
started=$(date +%s)

KILL_AFTER=${KILL_AFTER:-500}
newest() { ls "$RUN/checkpoints" 2>/dev/null | sed -n 's/^step-0*\([0-9][0-9]*\)$/\1/p' | sort -n | tail -1; }
echo "soak: first leg (faults on; SIGKILLed at a random point after a checkpoint at step $KILL_AFTER or later)" >&2
"$BIN" run "$CONFIG" --no-progress > "$RUN.leg1.log" 2>&1 &
pid=$!
until [ "$(newest || true)" -ge "$KILL_AFTER" ] 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
kill -0 "$pid" 2>/dev/null || { echo "soak: the first leg ended before the kill (see $RUN.leg1.log)" >&2; exit 1; }
sleep "$((RANDOM % 2)).$((RANDOM % 10))"
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true

echo "soak: second leg (resume from the newest checkpoint that verifies)" >&2
"$BIN" run "$CONFIG" --no-progress --resume "$RUN" | tee "$RUN.leg2.log"
wall=$(( $(date +%s) - started ))

python3 - "$RUN" "$wall" <<'PY'
import json, re, sys, pathlib, tomllib
run, wall = pathlib.Path(sys.argv[1]), int(sys.argv[2])
summary = json.loads((run / "summary.json").read_text())
group_size = tomllib.loads((run / "config.toml").read_text())["group_size"]
checkpoints = sorted((run / "checkpoints").glob("step-*"))
state = json.loads((checkpoints[-1] / "state.json").read_text())
uids = [u for u, _ in state["ledger"]]
missing = sorted(set(range(state["source"]["next_uid"])) - set(uids))
r = summary["reliability"]
# The first leg was SIGKILLed before writing a summary: count its faults from its log.
leg1 = (run.parent / (run.name + ".leg1.log")).read_text(errors="replace")
first_leg = {
    "kill_generator": len(re.findall(r"faults: killing a generator", leg1)),
    "kill_judge": len(re.findall(r"faults: killing a judge", leg1)),
    "restarts": len(re.findall(r"supervisor: \S+ failed", leg1)),
    "skipped_steps": len(re.findall(r"learner: step \d+ skipped", leg1)),
    "checkpoint_write_failures": len(re.findall(r"checkpoint at step \d+ not written", leg1)),
}
report = {
    "wall_s": wall,
    "learner_steps": summary["learner_steps"],
    "samples_trained": summary["prompts_trained"] * group_size,
    "prompts_admitted": summary["prompts_admitted"],
    "prompts_trained": summary["prompts_trained"],
    "prompts_dropped": summary["prompts_dropped"],
    "prompts_in_flight_at_end": summary["prompts_in_flight"],
    "first_leg_faults": first_leg,
    "second_leg_faults_injected": r["faults_injected"],
    "second_leg_restarts": sum(r["restarts"].values()),
    "second_leg_restarts_by_actor": r["restarts"],
    "prompts_reissued": r["prompts_reissued"],
    "skipped_steps_both_legs": r["skipped_steps"],
    "checkpoint_failures": len(r["checkpoint_failures"]),
    "resumed_from": r["resumed_from"],
    # Lost: admitted but absent from the final ledger, or an unbalanced ledger; duplicated:
    # a prompt trained twice (a ledger violation).
    "prompts_lost": len(missing) + (0 if summary["ledger_balanced"] else 1),
    "ledger_violations": summary["ledger_violations"],
    "killed_process_and_resumed": r["resumed_from"] is not None,
}
(run / "soak-report.json").write_text(json.dumps(report, indent=2))
rows = "\n".join(f"| {k} | {v} |" for k, v in report.items())
(run / "soak-report.md").write_text(f"# Soak report\n\n| | |\n|---|---|\n{rows}\n")
print(json.dumps(report, indent=2))
ok = report["prompts_lost"] == 0 and not report["ledger_violations"] and report["killed_process_and_resumed"]
sys.exit(0 if ok else 1)
PY
