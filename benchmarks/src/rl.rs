//! Async-RL throughput: one config run in sync and in async mode, with the ideal bounds computed
//! from the per-stage times measured in the same run.
//!
//! Stage time per learner step = a role's busy time / its instance count / steps, measured in
//! the sync run (where stages do not compete). Lockstep (sum of stages) and perfect overlap (the
//! slowest stage) bound the step time; `async / ideal` compares the measured async step time
//! with the perfect-overlap bound.

use std::path::Path;

use anyhow::Result;
use grlhf::run::{run, RunOutcome};
use grlhf::run_config::{Mode, RunConfig};
use grlhf_actors::activity::busy_seconds;
use grlhf_actors::registry::Registry;
use serde::Serialize;

use grlhf::charts::{grouped_bars, BarPanel};

#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: String,
    pub wall_s: f64,
    pub steps: u64,
    pub step_s: f64,
    pub samples_per_s: f64,
    pub tokens_per_s: f64,
    pub busy_ratio: std::collections::BTreeMap<String, f64>,
    pub reward_first: f64,
    pub reward_last: f64,
    pub max_staleness_seen: u64,
    pub generate_train_overlap_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RlReport {
    pub machine: String,
    pub config: String,
    pub samples_per_step: u64,
    /// Per learner step, seconds, from the sync run.
    pub generate_s: f64,
    pub judge_s: f64,
    pub learn_s: f64,
    pub ideal_lockstep_step_s: f64,
    pub ideal_overlap_step_s: f64,
    pub sync: ModeResult,
    pub r#async: ModeResult,
    pub async_over_sync: f64,
    pub async_over_ideal: f64,
    pub sync_over_lockstep_bound: f64,
}

fn result(outcome: &RunOutcome) -> ModeResult {
    let s = &outcome.summary;
    ModeResult {
        mode: format!("{:?}", s.mode).to_lowercase(),
        wall_s: s.wall_s,
        steps: s.learner_steps,
        step_s: s.wall_s / s.learner_steps.max(1) as f64,
        samples_per_s: s.samples_per_s,
        tokens_per_s: s.tokens_per_s,
        busy_ratio: s.busy_ratio.clone(),
        reward_first: s.reward_mean_first,
        reward_last: s.reward_mean_last,
        max_staleness_seen: s.max_staleness_seen,
        generate_train_overlap_s: s.generate_train_overlap_s,
    }
}

/// Seconds per learner step a role (actor-name prefix) is busy, per instance.
fn stage_seconds(outcome: &RunOutcome, prefix: &str) -> f64 {
    let spans = outcome.activity.spans();
    let mut actors: Vec<&str> = spans
        .iter()
        .map(|s| s.actor.as_str())
        .filter(|a| a.starts_with(prefix))
        .collect();
    actors.sort();
    actors.dedup();
    let wall = outcome.summary.wall_s;
    let busy: f64 = actors
        .iter()
        .map(|a| busy_seconds(&spans, a, 0.0, wall))
        .sum();
    busy / actors.len().max(1) as f64 / outcome.summary.learner_steps.max(1) as f64
}

pub fn measure(config_path: &Path, out: &Path, steps: Option<u64>) -> Result<RlReport> {
    let base = RunConfig::from_file(config_path)?;
    let mut outcomes = Vec::new();
    for mode in [Mode::Sync, Mode::Async] {
        let mut config = base.clone();
        config.mode = mode;
        if let Some(steps) = steps {
            config.steps = steps;
        }
        config.run_dir = out.join(format!("rl-{}", format!("{mode:?}").to_lowercase()));
        eprintln!("running {} in {mode:?} mode …", config_path.display());
        outcomes.push(run(config, config_path, Registry::with_builtins(), true)?);
    }
    let (sync, asynchronous) = (&outcomes[0], &outcomes[1]);
    let generate_s = stage_seconds(sync, "generator");
    let judge_s = stage_seconds(sync, "judge");
    let learn_s = stage_seconds(sync, "learner");
    let lockstep = generate_s + judge_s + learn_s;
    let overlap = generate_s.max(judge_s).max(learn_s);
    let (s, a) = (result(sync), result(asynchronous));
    Ok(RlReport {
        machine: crate::report::machine_name(&base.learner.device),
        config: config_path.display().to_string(),
        samples_per_step: (base.batch_groups * base.group_size) as u64,
        generate_s,
        judge_s,
        learn_s,
        ideal_lockstep_step_s: lockstep,
        ideal_overlap_step_s: overlap,
        async_over_sync: s.step_s / a.step_s,
        async_over_ideal: overlap / a.step_s,
        sync_over_lockstep_bound: lockstep / s.step_s,
        sync: s,
        r#async: a,
    })
}

pub fn table(r: &RlReport) -> String {
    let per_s = |step_s: f64| r.samples_per_step as f64 / step_s;
    let mut t = format!(
        "Async-RL throughput on {} — `{}` ({} samples per learner step)\n\n\
         Per-stage time per learner step (sync run): generate {:.1} ms, judge {:.1} ms, learn (train + weight sync) {:.1} ms.\n\n\
         | | step (ms) | samples/s | tokens/s | busy: generator / learner | reward first → last | max staleness |\n|---|---|---|---|---|---|---|\n",
        r.machine,
        r.config,
        r.samples_per_step,
        r.generate_s * 1e3,
        r.judge_s * 1e3,
        r.learn_s * 1e3
    );
    for m in [&r.sync, &r.r#async] {
        t.push_str(&format!(
            "| {} (measured) | {:.1} | {:.1} | {:.0} | {:.2} / {:.2} | {:.3} → {:.3} | {} |\n",
            m.mode,
            m.step_s * 1e3,
            m.samples_per_s,
            m.tokens_per_s,
            m.busy_ratio.get("generator-0").copied().unwrap_or(0.0),
            m.busy_ratio.get("learner").copied().unwrap_or(0.0),
            m.reward_first,
            m.reward_last,
            m.max_staleness_seen
        ));
    }
    t.push_str(&format!(
        "| lockstep bound (sum of stages) | {:.1} | {:.1} | | | | |\n| perfect-overlap bound (slowest stage) | {:.1} | {:.1} | | | | |\n\n",
        r.ideal_lockstep_step_s * 1e3,
        per_s(r.ideal_lockstep_step_s),
        r.ideal_overlap_step_s * 1e3,
        per_s(r.ideal_overlap_step_s)
    ));
    t.push_str(&format!(
        "async / sync = **{:.2}×**; async / ideal (perfect overlap) = **{:.2}**; sync / lockstep bound = {:.2}\n",
        r.async_over_sync, r.async_over_ideal, r.sync_over_lockstep_bound
    ));
    t
}

pub fn write(r: &RlReport, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("rl.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(out.join("rl.md"), table(r))?;
    let per_s = |step_s: f64| r.samples_per_step as f64 / step_s;
    grouped_bars(
        &out.join("rl.png"),
        &[BarPanel {
            title: "sync vs async GRPO: measured and bound".to_string(),
            groups: vec!["sync".into(), "async".into()],
            series: vec![
                (
                    "measured".into(),
                    vec![r.sync.samples_per_s, r.r#async.samples_per_s],
                ),
                (
                    "bound".into(),
                    vec![
                        per_s(r.ideal_lockstep_step_s),
                        per_s(r.ideal_overlap_step_s),
                    ],
                ),
            ],
            y_label: "trained samples/s".into(),
        }],
    )
}
