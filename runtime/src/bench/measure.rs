//! The numbers `grlhf bench` reports for one run, all computed from what the run recorded: the
//! activity log's busy spans and group milestones, and the learner's per-step statistics.
//!
//! Throughputs are taken over the **steady window** — from the end of the last warm-up step to
//! the end of the last step — so start-up (model loading, the first generation) does not count.
//! **Stage times** are per learner step: a role's busy time in the steady window per unit of
//! work it finished there (per group for generators and judges, per step for the learner,
//! weight publication included),
//! times the B groups of a step, divided by the role's instance count. The **ideal bounds** follow:
//! lockstep = the sum of the stage times, perfect overlap = the slowest one — or the staleness
//! window, when slower: at most (η + 1)·B groups are in flight, each for at least one generation
//! call, one judging and one learner step, so a step takes at least that time / (η + 1).
//! `overlap_efficiency` = measured throughput / perfect-overlap throughput.

use std::collections::BTreeMap;

use grlhf_actors::activity::{busy_seconds, GroupEvent, Milestone};
use grlhf_actors::simulated::{CostModel, StageTimes, StepShape};
use grlhf_cluster::remote_stats::RemoteRoleStats;
use serde::{Deserialize, Serialize};

use crate::run::RunOutcome;
use crate::run_config::RunConfig;
use crate::topology::node_load::{node_loads, NodeLoad};

/// Busy and idle shares of one actor over the steady window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorLoad {
    pub busy: f64,
    pub idle: f64,
}

/// Queue depths (groups) at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSample {
    pub time: f64,
    /// Taken by a generator, not yet generated.
    pub generating: usize,
    /// Generated, not yet judged (in judges' mailboxes or being judged).
    pub awaiting_judge: usize,
    /// Judged, not yet trained (in the replay buffer or the learner's batch).
    pub awaiting_learner: usize,
}

/// Percentiles of a set of durations, seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut xs: Vec<f64>) -> Percentiles {
        if xs.is_empty() {
            return Percentiles::default();
        }
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            count: xs.len(),
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: *xs.last().unwrap(),
        }
    }
}

/// The bounds and how close the run came to them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdealBound {
    pub stage_times: StageTimes,
    pub lockstep_step_s: f64,
    pub overlap_step_s: f64,
    pub bottleneck: String,
    /// Samples/s at perfect overlap.
    pub ideal_samples_per_s: f64,
    /// Samples/s in lockstep.
    pub lockstep_samples_per_s: f64,
}

impl IdealBound {
    pub fn new(stage_times: StageTimes, samples_per_step: f64) -> IdealBound {
        IdealBound {
            lockstep_step_s: stage_times.lockstep_step_s(),
            overlap_step_s: stage_times.overlap_step_s(),
            bottleneck: stage_times.bottleneck().to_string(),
            ideal_samples_per_s: samples_per_step / stage_times.overlap_step_s().max(1e-12),
            lockstep_samples_per_s: samples_per_step / stage_times.lockstep_step_s().max(1e-12),
            stage_times,
        }
    }
}

/// `bench.json` for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub label: String,
    pub simulated: bool,
    pub mode: String,
    /// η (0 in sync mode).
    pub max_staleness: u64,
    pub generators: usize,
    pub judges: usize,
    pub group_size: usize,
    pub batch_groups: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    pub wall_s: f64,
    /// The steady window, seconds since the run started.
    pub window: (f64, f64),
    pub step_s: f64,
    /// Trained responses per second.
    pub samples_per_s: f64,
    /// Generated tokens per second (whole run).
    pub generated_tokens_per_s: f64,
    /// Judged response pairs per second (whole run; GRM judges count pairs, others none).
    pub judged_pairs_per_s: f64,
    /// Judged groups per second (whole run).
    pub judged_groups_per_s: f64,
    /// Trained tokens per second.
    pub learner_tokens_per_s: f64,
    pub actors: BTreeMap<String, ActorLoad>,
    /// Mean busy share per role (generator, judge, learner).
    pub role_busy: BTreeMap<String, f64>,
    /// Learner-side weight publication per version.
    pub weight_sync_ms: f64,
    pub weight_sync_bytes: u64,
    pub weight_sync_gb_per_s: f64,
    /// Trained groups by staleness.
    pub staleness_histogram: BTreeMap<u64, usize>,
    /// Taken by a generator → trained.
    pub latency_s: Percentiles,
    /// Generated → judged (queueing at the judges plus judging).
    pub judge_wait_s: Percentiles,
    /// Judged → trained (waiting in the buffer plus the step).
    pub learner_wait_s: Percentiles,
    pub queue_depths: Vec<QueueSample>,
    pub ideal: IdealBound,
    pub overlap_efficiency: f64,
    /// With simulated actors: the cost model's own stage times and bounds.
    pub analytic: Option<IdealBound>,
    /// admitted = trained + dropped + in flight held, and no prompt was trained twice.
    pub ledger_balanced: bool,
    /// A multi-process run: each node's actors and their busy shares of the steady window
    /// (a remote role counts on the worker doing its work). Empty with one process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeLoad>,
    /// A multi-process run: per remote role, the process boundary's overhead per group and the
    /// weight stream's bytes and GB/s (as in `summary.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_roles: BTreeMap<String, RemoteRoleStats>,
}

fn role_of(actor: &str) -> &str {
    actor.split('-').next().unwrap_or(actor)
}

fn times(events: &[GroupEvent], milestone: Milestone) -> Vec<f64> {
    let mut t: Vec<f64> = events
        .iter()
        .filter(|e| e.milestone == milestone)
        .map(|e| e.time)
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

fn count_by(sorted: &[f64], t: f64) -> usize {
    sorted.partition_point(|&x| x <= t)
}

fn waits(events: &[GroupEvent], from: Milestone, to: Milestone) -> Vec<f64> {
    let mut start: BTreeMap<u64, f64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.milestone == from) {
        start.insert(e.uid, e.time);
    }
    events
        .iter()
        .filter(|e| e.milestone == to)
        .filter_map(|e| start.get(&e.uid).map(|s| e.time - s))
        .collect()
}

/// The step shape of `config` (simulated or real).
pub fn step_shape(config: &RunConfig, judges: usize) -> StepShape {
    StepShape {
        batch_groups: config.batch_groups,
        group_size: config.group_size,
        batch_prompts: config.generator.batch_prompts,
        generators: config.generator.count,
        judges,
        subscribers: config.generator.count,
        max_staleness: config.effective_staleness(),
    }
}

/// Measured stage times of a run over the window `(t0, t1]` (see the module docs): busy time
/// inside the window per unit of work finished inside it.
pub fn measured_stage_times(
    outcome: &RunOutcome,
    config: &RunConfig,
    judges: usize,
    (t0, t1): (f64, f64),
) -> StageTimes {
    let spans = outcome.activity.spans();
    let events = outcome.activity.events();
    let inside = |t: f64| t > t0 && t <= t1;
    let busy = |role: &str, kinds: &[&str]| -> f64 {
        spans
            .iter()
            .filter(|s| role_of(&s.actor) == role && kinds.contains(&&*s.kind))
            .map(|s| (s.end.min(t1) - s.start.max(t0)).max(0.0))
            .sum()
    };
    let finished = |m: Milestone| {
        events
            .iter()
            .filter(|e| e.milestone == m && inside(e.time))
            .count()
            .max(1) as f64
    };
    let b = config.batch_groups as f64;
    let steps = outcome
        .steps
        .iter()
        .filter(|s| inside(s.time))
        .count()
        .max(1) as f64;
    let calls = spans
        .iter()
        .filter(|s| role_of(&s.actor) == "generator" && &*s.kind == "generate" && inside(s.end))
        .count()
        .max(1) as f64;
    let learn_s = busy("learner", &["train", "sync"]) / steps;
    let judge_per_group = busy("judge", &["judge"]) / finished(Milestone::Judged);
    let call_s = busy("generator", &["generate"]) / calls;
    StageTimes {
        generate_s: busy("generator", &["generate", "sync"]) / finished(Milestone::Generated) * b
            / config.generator.count.max(1) as f64,
        judge_s: judge_per_group * b / judges.max(1) as f64,
        learn_s,
        window_s: (call_s + judge_per_group + learn_s) / (config.effective_staleness() + 1) as f64,
    }
}

/// Busy and idle ratios over `[t0, t1]` per actor, and the mean busy ratio per role.
fn actor_loads(
    spans: &[grlhf_actors::activity::Span],
    t0: f64,
    t1: f64,
    span: f64,
) -> (BTreeMap<String, ActorLoad>, BTreeMap<String, f64>) {
    let mut actor_names: Vec<String> = spans.iter().map(|s| s.actor.to_string()).collect();
    actor_names.sort();
    actor_names.dedup();
    let actors: BTreeMap<String, ActorLoad> = actor_names
        .iter()
        .map(|a| {
            let busy = busy_seconds(spans, a, t0, t1) / span;
            (
                a.clone(),
                ActorLoad {
                    busy,
                    idle: 1.0 - busy,
                },
            )
        })
        .collect();
    let mut role_busy: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (a, load) in &actors {
        let entry = role_busy.entry(role_of(a).to_string()).or_default();
        entry.0 += load.busy;
        entry.1 += 1;
    }
    let role_busy = role_busy
        .into_iter()
        .map(|(r, (sum, n))| (r, sum / n.max(1) as f64))
        .collect();
    (actors, role_busy)
}

/// Groups at each stage of the pipeline, sampled at 201 moments over the run.
fn queue_depths(events: &[grlhf_actors::activity::GroupEvent], wall: f64) -> Vec<QueueSample> {
    let (taken, generated, judged, trained) = (
        times(events, Milestone::Taken),
        times(events, Milestone::Generated),
        times(events, Milestone::Judged),
        times(events, Milestone::Trained),
    );
    let samples_at = 200usize;
    (0..=samples_at)
        .map(|i| {
            let t = wall * i as f64 / samples_at as f64;
            let (a, g, j, r) = (
                count_by(&taken, t),
                count_by(&generated, t),
                count_by(&judged, t),
                count_by(&trained, t),
            );
            QueueSample {
                time: t,
                generating: a.saturating_sub(g),
                awaiting_judge: g.saturating_sub(j),
                awaiting_learner: j.saturating_sub(r),
            }
        })
        .collect()
}

/// Everything `bench.json` holds, for one finished run.
pub fn measure(
    label: &str,
    config: &RunConfig,
    outcome: &RunOutcome,
    judges: usize,
    warmup_steps: u64,
    cost: Option<&CostModel>,
) -> BenchReport {
    let steps = &outcome.steps;
    let spans = outcome.activity.spans();
    let events = outcome.activity.events();
    let wall = outcome.summary.wall_s;
    let warm = (warmup_steps as usize).min(steps.len().saturating_sub(1));
    let t0 = if warm == 0 { 0.0 } else { steps[warm - 1].time };
    let t1 = steps.last().map_or(wall, |s| s.time);
    let window_steps = &steps[warm..];
    let span = (t1 - t0).max(1e-9);
    let samples: usize = window_steps
        .iter()
        .map(|s| s.groups * config.group_size)
        .sum();
    let tokens: usize = window_steps.iter().map(|s| s.response_tokens).sum();
    let (actors, role_busy) = actor_loads(&spans, t0, t1, span);
    let busy: BTreeMap<String, f64> = actors.iter().map(|(a, l)| (a.clone(), l.busy)).collect();
    let mut staleness_histogram = BTreeMap::new();
    for s in steps {
        for (k, v) in &s.staleness_counts {
            *staleness_histogram.entry(*k).or_default() += v;
        }
    }
    let sync_ms = steps.iter().map(|s| s.sync_ms).sum::<f64>() / steps.len().max(1) as f64;
    let sync_bytes = steps.last().map_or(0, |s| s.sync_bytes);
    let queue_depths = queue_depths(&events, wall);
    let samples_per_step = (config.batch_groups * config.group_size) as f64;
    let ideal = IdealBound::new(
        measured_stage_times(outcome, config, judges, (t0, t1)),
        samples_per_step,
    );
    let samples_per_s = samples as f64 / span;
    let shape = step_shape(config, judges);
    BenchReport {
        label: label.to_string(),
        simulated: cost.is_some(),
        mode: format!("{:?}", config.mode).to_lowercase(),
        max_staleness: config.effective_staleness(),
        generators: config.generator.count,
        judges,
        group_size: config.group_size,
        batch_groups: config.batch_groups,
        steps: steps.len() as u64,
        warmup_steps: warm as u64,
        wall_s: wall,
        window: (t0, t1),
        step_s: span / window_steps.len().max(1) as f64,
        samples_per_s,
        generated_tokens_per_s: outcome.summary.generated_tokens as f64 / wall.max(1e-9),
        judged_pairs_per_s: outcome.summary.judgments as f64 / wall.max(1e-9),
        judged_groups_per_s: times(&events, Milestone::Judged).len() as f64 / wall.max(1e-9),
        learner_tokens_per_s: tokens as f64 / span,
        actors,
        role_busy,
        weight_sync_ms: sync_ms,
        weight_sync_bytes: sync_bytes,
        weight_sync_gb_per_s: if sync_ms > 0.0 {
            sync_bytes as f64 / (sync_ms / 1e3) / 1e9
        } else {
            0.0
        },
        staleness_histogram,
        latency_s: Percentiles::of(waits(&events, Milestone::Taken, Milestone::Trained)),
        judge_wait_s: Percentiles::of(waits(&events, Milestone::Generated, Milestone::Judged)),
        learner_wait_s: Percentiles::of(waits(&events, Milestone::Judged, Milestone::Trained)),
        queue_depths,
        overlap_efficiency: samples_per_s / ideal.ideal_samples_per_s.max(1e-12),
        ideal,
        analytic: cost.map(|c| IdealBound::new(c.stage_times(&shape), samples_per_step)),
        ledger_balanced: outcome.summary.ledger_balanced
            && outcome.summary.ledger_violations.is_empty(),
        nodes: node_loads(config, &busy),
        remote_roles: outcome.summary.remote_roles.clone(),
    }
}
