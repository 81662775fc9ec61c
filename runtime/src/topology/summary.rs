//! Summarise: `summary.json` — throughput, busy ratios, staleness, the ledger, rewards, held-out
//! evaluations and the reliability record — from what a drained topology leaves behind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grlhf_actors::activity::{overlap_seconds, ActivityLog};
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::learner::StepStats;
use grlhf_actors::ledger::LedgerSnapshot;
use serde::Serialize;

use super::StepHistory;
use crate::run_config::{Mode, RunConfig, Stage};

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub stage: Stage,
    pub max_staleness: u64,
    pub max_staleness_seen: u64,
    pub staleness_violations: usize,
    pub learner_steps: u64,
    pub prompts_admitted: u64,
    pub prompts_trained: u64,
    pub prompts_dropped: BTreeMap<String, u64>,
    pub prompts_in_flight: u64,
    pub ledger_balanced: bool,
    pub ledger_violations: Vec<String>,
    pub versions_monotonic: bool,
    pub wall_s: f64,
    /// Trained samples (responses) per second of the whole run.
    pub samples_per_s: f64,
    /// Generated tokens per second of the whole run.
    pub tokens_per_s: f64,
    pub generated_samples: u64,
    pub generated_tokens: u64,
    pub judgments: u64,
    pub parse_failures: u64,
    /// Busy time / wall time, per actor.
    pub busy_ratio: BTreeMap<String, f64>,
    /// Seconds during which some generation and a learner step ran at once, over the spans the
    /// activity log keeps (the newest `[telemetry] activity_window`; all of them in most runs).
    pub generate_train_overlap_s: f64,
    pub weight_sync_ms: f64,
    pub weight_sync_bytes: u64,
    pub reward_mean_first: f64,
    pub reward_mean_last: f64,
    /// Held-out evaluation (with `[evaluator]`): the first and last mean, and the last by family.
    pub eval_first: Option<f64>,
    pub eval_last: Option<f64>,
    pub eval_last_per_family: BTreeMap<String, f64>,
    pub interrupted: bool,
    pub reliability: Reliability,
    /// Generators and judges on worker nodes (a head's run): calls, the process boundary's
    /// overhead per group, weight traffic (`grlhf_cluster::remote_stats`). Empty in a
    /// one-process run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_roles: BTreeMap<String, grlhf_cluster::remote_stats::RemoteRoleStats>,
    /// How weights reached workers, and why (a head's run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_transport: Option<grlhf_cluster::transport::TransportChoice>,
    /// Per node of a multi-process run: its actors and their busy shares of the wall time (a
    /// remote role counts on the worker that does its work). Empty in a one-process run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, super::node_load::NodeLoad>,
}

/// Faults met and survived, checkpoints and resumes (part of `summary.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reliability {
    /// The checkpoint this run continued from.
    pub resumed_from: Option<PathBuf>,
    /// Newer checkpoints that failed verification and were passed over on resume.
    pub damaged_checkpoints_skipped: Vec<String>,
    pub checkpoints_written: u64,
    pub checkpoint_failures: Vec<String>,
    pub last_checkpoint: Option<PathBuf>,
    /// Learner steps skipped (non-finite loss or gradient), over the whole run.
    pub skipped_steps: u64,
    /// Restarts by actor name.
    pub restarts: BTreeMap<String, u64>,
    pub actor_failures: Vec<String>,
    /// Prompts issued again: a failed actor's, and those in flight at the resumed checkpoint.
    pub prompts_reissued: u64,
    /// Injected faults by kind.
    pub faults_injected: BTreeMap<String, u64>,
    /// Why the run was stopped early with an error (a restart storm, skipped steps in a row).
    pub aborted: Option<String>,
}

/// Everything a finished run leaves behind, for the caller (tests read the spans).
pub struct RunOutcome {
    pub summary: Summary,
    /// The newest `[telemetry] steps_window` steps (every step unless the run was longer).
    pub steps: Vec<StepStats>,
    pub evals: Vec<EvalStats>,
    pub activity: ActivityLog,
    pub run_dir: PathBuf,
}

#[allow(clippy::too_many_arguments)]
pub fn summarize(
    config: &RunConfig,
    steps: &StepHistory,
    ledger: &LedgerSnapshot,
    ledger_violations: Vec<String>,
    activity: &ActivityLog,
    wall: f64,
    interrupted: bool,
    buffer_max_staleness: Option<u64>,
) -> Summary {
    let busy_ratio: BTreeMap<String, f64> = activity
        .busy_totals()
        .into_iter()
        .map(|(actor, busy)| (actor, busy.min(wall) / wall.max(1e-9)))
        .collect();
    let nodes = super::node_load::node_loads(config, &busy_ratio);
    let versions_monotonic = activity.versions_monotonic();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let rewards = steps.rewards();
    let window = (rewards.len() / 4).max(1).min(rewards.len());
    let trained_samples = ledger.trained * config.group_size as u64;
    Summary {
        mode: config.mode,
        stage: config.stage,
        max_staleness: config.effective_staleness(),
        max_staleness_seen: steps.max_staleness().max(buffer_max_staleness.unwrap_or(0)),
        staleness_violations: steps.staleness_violations(),
        learner_steps: steps.count(),
        prompts_admitted: ledger.admitted,
        prompts_trained: ledger.trained,
        prompts_dropped: ledger.dropped_by_reason.clone(),
        prompts_in_flight: ledger.in_flight,
        ledger_balanced: ledger.balances(),
        ledger_violations,
        versions_monotonic,
        wall_s: wall,
        samples_per_s: trained_samples as f64 / wall.max(1e-9),
        tokens_per_s: activity.counter("generated_tokens") as f64 / wall.max(1e-9),
        generated_samples: activity.counter("generated_samples"),
        generated_tokens: activity.counter("generated_tokens"),
        judgments: activity.counter("judgments"),
        parse_failures: activity.counter("parse_failures"),
        busy_ratio,
        generate_train_overlap_s: overlap_seconds(&activity.spans(), "generate", "train"),
        weight_sync_ms: steps.mean_sync_ms(),
        weight_sync_bytes: steps.last().map(|s| s.sync_bytes).unwrap_or(0),
        reward_mean_first: mean(&rewards[..window.min(rewards.len())]),
        reward_mean_last: mean(&rewards[rewards.len().saturating_sub(window)..]),
        eval_first: None,
        eval_last: None,
        eval_last_per_family: BTreeMap::new(),
        interrupted,
        reliability: Reliability::default(),
        remote_roles: BTreeMap::new(),
        weights_transport: None,
        nodes,
    }
}

impl super::Finished {
    /// `summary.json` for this run: the common numbers, this process's throughput (a resumed
    /// run counts only what it trained), the held-out evaluations and the reliability record.
    pub fn summary(&self, config: &RunConfig) -> Summary {
        let mut summary = summarize(
            config,
            &self.steps,
            &self.ledger,
            self.ledger_violations.clone(),
            &self.activity,
            self.end,
            self.interrupted,
            self.buffer_max_staleness,
        );
        summary.samples_per_s = (self.ledger.trained - self.trained_at_start) as f64
            * config.group_size as f64
            / self.end.max(1e-9);
        summary.eval_first = self.evals.first().map(|e| e.mean);
        summary.eval_last = self.evals.last().map(|e| e.mean);
        summary.eval_last_per_family = self
            .evals
            .last()
            .map(|e| e.per_family.clone())
            .unwrap_or_default();
        let learner = &self.learner;
        let mut reliability = self.restored.clone();
        reliability.checkpoints_written = learner.checkpoints_written;
        reliability.checkpoint_failures = learner.checkpoint_failures.clone();
        reliability.last_checkpoint = learner.last_checkpoint.clone();
        reliability.skipped_steps = reliability.skipped_steps.max(learner.skipped_steps);
        reliability.restarts = self.supervision.restarts.clone();
        reliability.actor_failures = self.supervision.failures.clone();
        reliability.prompts_reissued += self.supervision.requeued;
        reliability.faults_injected = learner.faults_injected.clone();
        for (kind, count) in &self.kills {
            *reliability.faults_injected.entry(kind.clone()).or_default() += count;
        }
        reliability.aborted = learner.aborted.clone();
        summary.reliability = reliability;
        summary
    }
}
