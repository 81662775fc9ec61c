#!/usr/bin/env python3
"""Choose RL settings against an lr≈0 control, on the world's validation split.

A rising training reward is not evidence that RL learned: an lr≈0 control shows the same rise
(sampling noise, the reward's own drift). This script runs GRPO on the hidden oracle's score
from a warm-started policy once per (candidate, seed), with `grlhf run`, and compares each
candidate's held-out *validation* score after training with the control's on the same seed.
Evaluation sets are never touched, so settings chosen here do not overfit the report.

    .venv/bin/python scripts/choose_rl_settings.py --policy runs/demo/warm/policy/model \\
        --out runs/choose-rl --seeds 0,1,2

With `--stage grm-rl` it does the same for stage 1: GRPO of a warm-started GRM on preference
pairs (reward: the preferred response gets the higher boxed score), measured by pairwise
accuracy on the validation pairs (`grlhf eval-grm --split validation`), ×100.

    .venv/bin/python scripts/choose_rl_settings.py --stage grm-rl \\
        --policy runs/demo/warm/grm/model --out runs/choose-grm-rl --seeds 0,1,2

Writes OUT/choose.json (every run's numbers) and OUT/choose.md (the table docs/reproduction.md
quotes). A candidate is `name:key=value,...`; keys: lr, warmup, kl, temperature, groups, steps.
Reading the table: `Δ vs control` is the paired mean difference over seeds with its SE; a
setting is worth taking only where it is beyond 2 SE and the gain is not bought by refusing safe
requests (`safe refused`).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

DEFAULT_CANDIDATES = [
    "control:lr=1e-9",
    "lr1e-4:lr=1e-4",
    "lr3e-4:lr=3e-4",
    "lr1e-3:lr=1e-3",
    "lr3e-4-kl0.02:lr=3e-4,kl=0.02",
    "lr3e-4-t1.0:lr=3e-4,temperature=1.0",
]

DEFAULTS = {
    "lr": 3e-4,
    "warmup": 10,
    "kl": 0.05,
    "temperature": 0.7,
    "groups": 8,
    "steps": 60,
}

# One config for both stages; STAGES fills in what differs (stage 2: n = 5 answers judged by the
# oracle, evaluated on validation prompts as it trains; stage 1: k = 8 judgments per pair,
# rewarded when they prefer the preferred response, measured afterwards by eval-grm).
CONFIG = """# written by scripts/choose_rl_settings.py: candidate {name}, seed {seed}
mode = "async"
stage = "{stage}"
steps = {steps}
seed = {seed}
run_dir = "{run_dir}"
max_staleness = 1
group_size = {group_size}
batch_groups = {groups}

[data]
source = "world"
world_size = {world_size}
world_seed = {world_seed}

[model]
policy = "{policy}"

[generator]
batch_prompts = 4
max_new_tokens = {max_new_tokens}
temperature = {temperature}

[[judge]]
kind = "rule_judge"
rule = "{rule}"

[learner]
lr = {lr}
warmup_steps = {warmup}
micro_batch = {micro_batch}

[learner.grpo]
kl_beta = {kl}
{evaluator}"""

EVALUATOR = """
[evaluator]
every = {steps}
split = "validation"
prompts_per_family = {per_family}
max_new_tokens = 40
"""

STAGES = {
    "policy-rl": {"group_size": 5, "max_new_tokens": 40, "rule": "oracle", "micro_batch": 20},
    "grm-rl": {"group_size": 8, "max_new_tokens": 80, "rule": "grm_preference", "micro_batch": 16},
}


def parse_candidate(text):
    name, _, settings = text.partition(":")
    values = dict(DEFAULTS)
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            sys.exit(f"candidate `{text}`: unknown key `{key}` (use {', '.join(DEFAULTS)})")
        try:
            values[key] = type(DEFAULTS[key])(float(value)) if key in ("groups", "steps", "warmup") else float(value)
        except ValueError:
            sys.exit(f"candidate `{text}`: `{key}={value}` is not a number")
    return name, values


def mean_se(xs):
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def validation_accuracy(args, model):
    """Pairwise accuracy (×100) of a GRM on the validation pairs."""
    out = subprocess.run(
        [args.grlhf, "eval-grm", "--model", model, "--seed", str(args.world_seed),
         "--split", "validation", "--pairs", str(args.pairs), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["pairs_val"]["accuracy"] * 100


def grm_result(args, name, values, seed, run_dir, summary):
    cache = os.path.join(run_dir, "validation.json")
    if not os.path.exists(cache):
        json.dump({"after": validation_accuracy(args, os.path.join(run_dir, "policy"))},
                  open(cache, "w"))
    return {
        "candidate": name,
        "seed": seed,
        "settings": values,
        "after": json.load(open(cache))["after"],
        "per_family": {},
        "safe_refused": None,
        "safety_safe_refused": None,
        "wall_s": summary.get("wall_s"),
    }


def without_safety(run):
    scores = [v for family, v in run["per_family"].items() if family != "safety"]
    return sum(scores) / len(scores) if scores else float("nan")


def run_one(args, name, values, seed):
    run_dir = os.path.join(args.out, f"{name}-s{seed}")
    done = os.path.join(run_dir, "summary.json")
    if not os.path.exists(done):
        os.makedirs(run_dir, exist_ok=True)
        config = os.path.join(args.out, f"{name}-s{seed}.toml")
        evaluator = "" if args.stage == "grm-rl" else EVALUATOR.format(
            steps=values["steps"], per_family=args.per_family
        )
        with open(config, "w") as f:
            f.write(
                CONFIG.format(
                    stage=args.stage,
                    evaluator=evaluator,
                    **STAGES[args.stage],
                    name=name,
                    seed=seed,
                    run_dir=run_dir,
                    policy=args.policy,
                    world_size=args.world_size,
                    world_seed=args.world_seed,
                    per_family=args.per_family,
                    **values,
                )
            )
        start = time.time()
        log = open(run_dir + ".log", "w")
        rc = subprocess.call(
            [args.grlhf, "run", config, "--no-progress"], stdout=log, stderr=subprocess.STDOUT
        )
        if rc != 0:
            sys.exit(f"{name} seed {seed}: grlhf run failed (rc {rc}); see {run_dir}.log")
        print(f"  {name} seed {seed}: {time.time() - start:.0f} s", flush=True)
    summary = json.load(open(done))
    if args.stage == "grm-rl":
        return grm_result(args, name, values, seed, run_dir, summary)
    evals = [json.loads(line) for line in open(os.path.join(run_dir, "eval.jsonl"))]
    first, last = evals[0], evals[-1]
    return {
        "candidate": name,
        "seed": seed,
        "settings": values,
        "before": first["mean"] * 100,
        "after": last["mean"] * 100,
        "per_family": {k: v * 100 for k, v in last["per_family"].items()},
        "safe_refused": last.get("safe_refused"),
        "safety_safe_refused": last.get("safety_safe_refused"),
        "wall_s": summary.get("wall_s"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grlhf", default="target/release/grlhf")
    parser.add_argument("--stage", choices=["policy-rl", "grm-rl"], default="policy-rl",
                        help="stage 2 (policy-rl, judged by the oracle) or stage 1 (grm-rl)")
    parser.add_argument("--policy", required=True,
                        help="the warm-started checkpoint: the policy, or the GRM for grm-rl")
    parser.add_argument("--pairs", type=int, default=100, help="grm-rl: validation pairs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--world-seed", type=int, default=0, help="the world the policy was warm-started on")
    parser.add_argument("--world-size", type=int, default=2000)
    parser.add_argument("--per-family", type=int, default=8, help="validation prompts per family")
    parser.add_argument("--candidate", action="append", help="name:key=value,... (repeatable; first is the control)")
    args = parser.parse_args()
    if not os.path.isdir(args.policy):
        sys.exit(f"--policy {args.policy}: not a directory")
    seeds = [int(s) for s in args.seeds.split(",")]
    candidates = [parse_candidate(c) for c in (args.candidate or DEFAULT_CANDIDATES)]
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name, values in candidates:
        for seed in seeds:
            rows.append(run_one(args, name, values, seed))
    control = candidates[0][0]
    by = {(r["candidate"], r["seed"]): r for r in rows}
    table = []
    for name, values in candidates:
        after = [by[(name, s)]["after"] for s in seeds]
        deltas = [by[(name, s)]["after"] - by[(control, s)]["after"] for s in seeds]
        # The gain without the situational-safety family, where refusing every request (safe
        # ones included) already scores about 55: a gain made of refusals shows up here as none.
        deltas_no_safety = [
            without_safety(by[(name, s)]) - without_safety(by[(control, s)]) for s in seeds
        ]
        refused = [by[(name, s)]["safe_refused"] or 0.0 for s in seeds]
        safety_refused = [by[(name, s)]["safety_safe_refused"] or 0.0 for s in seeds]
        m, se = mean_se(after)
        dm, dse = mean_se(deltas)
        nm, nse = mean_se(deltas_no_safety)
        table.append(
            {
                "candidate": name,
                "settings": values,
                "validation_after": m,
                "validation_after_se": se,
                "delta_vs_control": dm,
                "delta_vs_control_se": dse,
                "beyond_2se": name != control and not math.isnan(dse) and abs(dm) > 2 * dse,
                "delta_without_safety": nm,
                "delta_without_safety_se": nse,
                "safe_refused": sum(refused) / len(refused),
                "safety_safe_refused": sum(safety_refused) / len(safety_refused),
            }
        )
    json.dump({"seeds": seeds, "control": control, "runs": rows, "table": table},
              open(os.path.join(args.out, "choose.json"), "w"), indent=2)
    measure = (
        f"Validation pairwise accuracy (×100, {args.pairs} pairs, greedy judgments) after stage 1"
        if args.stage == "grm-rl"
        else f"Validation oracle score (0–100, {args.per_family} prompts per family, greedy) after "
        f"stage 2 with the oracle's reward"
    )
    lines = [
        f"{measure}, over seeds {args.seeds}; Δ is paired by seed against `{control}`.",
        "",
        "| candidate | lr | warm-up | kl_beta | temperature | groups/step | steps | after (mean ± SE) | Δ vs control | beyond 2 SE | Δ without safety | safe refused (all / safety family) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for t in table:
        v = t["settings"]
        lines.append(
            f"| {t['candidate']} | {v['lr']:g} | {v['warmup']} | {v['kl']:g} | {v['temperature']:g} | "
            f"{v['groups']} | {v['steps']} | {t['validation_after']:.1f} ± {t['validation_after_se']:.1f} | "
            f"{t['delta_vs_control']:+.1f} ± {t['delta_vs_control_se']:.1f} | "
            f"{'yes' if t['beyond_2se'] else 'no'} | "
            + (
                "— | — |"
                if args.stage == "grm-rl"
                else f"{t['delta_without_safety']:+.1f} ± {t['delta_without_safety_se']:.1f} | "
                f"{t['safe_refused']:.2f} / {t['safety_safe_refused']:.2f} |"
            )
        )
    text = "\n".join(lines) + "\n"
    open(os.path.join(args.out, "choose.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
