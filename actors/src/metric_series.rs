//! Every Prometheus series a run exports, in one catalogue: its name (by Prometheus's
//! conventions: `_total` for counters, base units such as `_seconds` and `_bytes`), its type,
//! its `# HELP` text, its labels and, for histograms, its buckets. Actors record through the
//! `metrics` facade with these names; the run installs the exporter, describes every series and
//! registers each at zero so a scrape shows the full set from the first second
//! (docs/observability.md lists them, and a test checks that list against this one).

/// What kind of series a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
}

impl SeriesKind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Counter => "counter",
            SeriesKind::Gauge => "gauge",
            SeriesKind::Histogram => "histogram",
        }
    }
}

/// One exported series.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub kind: SeriesKind,
    pub help: &'static str,
    /// Label names (an empty slice: one unlabelled series).
    pub labels: &'static [&'static str],
    /// Bucket upper bounds of a histogram (empty for counters and gauges).
    pub buckets: &'static [f64],
}

/// Labels of a per-actor series: the actor's name (`generator-1`), its role (`generator`) and
/// its index within the role (`1`; empty for a single actor such as the learner).
pub const ACTOR_LABELS: &[&str] = &["actor", "role", "index"];

const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const STALENESS_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0];

pub const PROMPTS_ISSUED: &str = "grlhf_prompts_issued_total";
pub const PROMPTS_REQUEUED: &str = "grlhf_prompts_requeued_total";
pub const PROMPTS_DROPPED: &str = "grlhf_prompts_dropped_total";
pub const PROMPTS_IN_FLIGHT: &str = "grlhf_prompts_in_flight";
pub const GENERATED_TOKENS: &str = "grlhf_generated_tokens_total";
pub const GENERATED_SAMPLES: &str = "grlhf_generated_samples_total";
pub const JUDGMENTS: &str = "grlhf_judgments_total";
pub const JUDGE_PARSE_FAILURES: &str = "grlhf_judge_parse_failures_total";
pub const QUEUE_DEPTH: &str = "grlhf_queue_depth";
pub const LEARNER_STEPS: &str = "grlhf_learner_steps_total";
pub const LEARNER_SKIPPED_STEPS: &str = "grlhf_learner_skipped_steps_total";
pub const LEARNER_STEP_SECONDS: &str = "grlhf_learner_step_seconds";
pub const SAMPLES_TRAINED: &str = "grlhf_samples_trained_total";
pub const POLICY_VERSION: &str = "grlhf_policy_version";
pub const REWARD_MEAN: &str = "grlhf_reward_mean";
pub const KL: &str = "grlhf_kl";
pub const CLIP_FRACTION: &str = "grlhf_clip_fraction";
pub const LOSS: &str = "grlhf_loss";
pub const GRAD_NORM: &str = "grlhf_grad_norm";
pub const RESPONSE_TOKENS_MEAN: &str = "grlhf_response_tokens_mean";
pub const STALENESS: &str = "grlhf_staleness";
pub const WEIGHT_SYNC_SECONDS: &str = "grlhf_weight_sync_seconds";
pub const WEIGHT_SYNC_BYTES: &str = "grlhf_weight_sync_bytes_total";
pub const ACTOR_BUSY_SECONDS: &str = "grlhf_actor_busy_seconds";
pub const ACTOR_RESTARTS: &str = "grlhf_actor_restarts_total";
pub const FAULTS_INJECTED: &str = "grlhf_faults_injected_total";
pub const CHECKPOINTS_WRITTEN: &str = "grlhf_checkpoints_written_total";
pub const LAST_CHECKPOINT_TIMESTAMP: &str = "grlhf_last_checkpoint_timestamp_seconds";
pub const EVAL_SCORE: &str = "grlhf_eval_score";

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Series {
    Series {
        name,
        kind: SeriesKind::Counter,
        help,
        labels,
        buckets: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Series {
    Series {
        name,
        kind: SeriesKind::Gauge,
        help,
        labels,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> Series {
    Series {
        name,
        kind: SeriesKind::Histogram,
        help,
        labels,
        buckets,
    }
}

/// The catalogue.
pub const SERIES: &[Series] = &[
    counter(PROMPTS_ISSUED, "Prompts the prompt source handed to generators, re-issued ones included.", &[]),
    counter(PROMPTS_REQUEUED, "Prompts issued again because the actor holding them failed.", &[]),
    counter(PROMPTS_DROPPED, "Admitted prompts closed without training, by reason (stale, zero_variance, skipped_step, sink_closed, judge_error, generation_error, or a plug-in stage's own).", &["reason"]),
    gauge(PROMPTS_IN_FLIGHT, "Prompts admitted and neither trained nor dropped yet (the ledger's in-flight count).", &[]),
    counter(GENERATED_TOKENS, "Tokens the policy generated (environment turns of a multi-turn workflow excluded).", &[]),
    counter(GENERATED_SAMPLES, "Responses generated (n per prompt group).", &[]),
    counter(JUDGMENTS, "Pairwise comparisons a generative reward model judge made (0 for rule and scalar judges).", &[]),
    counter(JUDGE_PARSE_FAILURES, "GRM outputs whose scores could not be parsed (scored as a tie).", &[]),
    gauge(QUEUE_DEPTH, "Prompt groups waiting or in progress at a stage: generate (taken by a generator), judge (queued at or being scored by a judge), buffer (scored, waiting for the learner).", &["stage"]),
    counter(LEARNER_STEPS, "Optimiser steps the learner completed.", &[]),
    counter(LEARNER_SKIPPED_STEPS, "Learner steps skipped (non-finite loss or gradient, or a failed step).", &[]),
    histogram(LEARNER_STEP_SECONDS, "Wall time of one learner step (forward, backward, optimiser), without the weight sync.", &[], SECONDS_BUCKETS),
    counter(SAMPLES_TRAINED, "Responses the learner trained on.", &[]),
    gauge(POLICY_VERSION, "The learner's policy version (one per optimiser step).", &[]),
    gauge(REWARD_MEAN, "Mean reward of the newest training batch.", &[]),
    gauge(KL, "KL estimate (k3) to the reference policy of the newest step.", &[]),
    gauge(CLIP_FRACTION, "Share of response tokens whose ratio was clipped in the newest step.", &[]),
    gauge(LOSS, "Policy loss of the newest step.", &[]),
    gauge(GRAD_NORM, "Gradient norm of the newest step, before clipping.", &[]),
    gauge(RESPONSE_TOKENS_MEAN, "Mean response length in tokens of the newest training batch.", &[]),
    histogram(STALENESS, "Staleness (learner version minus the version that generated it) of every trained group.", &[], STALENESS_BUCKETS),
    histogram(WEIGHT_SYNC_SECONDS, "Time to copy a new policy version into one subscriber.", &[], SECONDS_BUCKETS),
    counter(WEIGHT_SYNC_BYTES, "Bytes of weights the learner published, over all subscribers' copies.", &[]),
    histogram(ACTOR_BUSY_SECONDS, "Busy spans of an actor, by activity (generate, judge, train, sync, evaluate); rate() of its _sum is the busy share, 1 minus that the idle share.", &["actor", "role", "index", "activity"], SECONDS_BUCKETS),
    counter(ACTOR_RESTARTS, "Restarts of a failed generator or judge by the supervisor.", ACTOR_LABELS),
    counter(FAULTS_INJECTED, "Faults injected on purpose by [faults], by kind.", &["kind"]),
    counter(CHECKPOINTS_WRITTEN, "Checkpoints written and verified.", &[]),
    gauge(LAST_CHECKPOINT_TIMESTAMP, "Unix time of the newest checkpoint (its age is time() minus this; 0 before the first).", &[]),
    gauge(EVAL_SCORE, "Mean held-out score of the newest evaluation, over all prompts (family=\"all\") and per task family.", &["family"]),
];

/// Splits an actor name into its role and index at the first `-` followed by a digit:
/// `generator-1` → (`generator`, `1`), `judge-0-2` (judge table 0, replica 2) → (`judge`,
/// `0-2`), `learner` → (`learner`, ``).
pub fn role_and_index(actor: &str) -> (&str, &str) {
    let split = actor
        .char_indices()
        .find(|&(i, c)| c == '-' && actor[i + 1..].starts_with(|d: char| d.is_ascii_digit()));
    match split {
        Some((i, _)) => (&actor[..i], &actor[i + 1..]),
        None => (actor, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_names_split_into_role_and_index() {
        assert_eq!(role_and_index("generator-1"), ("generator", "1"));
        assert_eq!(role_and_index("judge-0-2"), ("judge", "0-2"));
        assert_eq!(role_and_index("learner"), ("learner", ""));
        assert_eq!(role_and_index("my-stage-3"), ("my-stage", "3"));
    }

    #[test]
    fn counters_end_in_total_and_times_are_in_seconds() {
        for s in SERIES {
            assert!(s.name.starts_with("grlhf_"), "{}", s.name);
            assert_eq!(
                s.kind == SeriesKind::Counter,
                s.name.ends_with("_total"),
                "{}",
                s.name
            );
            assert!(!s.name.contains("_ms"), "{}", s.name);
            assert_eq!(
                s.kind == SeriesKind::Histogram,
                !s.buckets.is_empty(),
                "{}",
                s.name
            );
            assert!(s.buckets.windows(2).all(|w| w[0] < w[1]), "{}", s.name);
        }
        let mut names: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SERIES.len(), "a name is catalogued twice");
    }
}

/// The actor labels of a per-actor series.
pub fn actor_labels(actor: &str) -> [(&'static str, String); 3] {
    let (role, index) = role_and_index(actor);
    [
        ("actor", actor.to_string()),
        ("role", role.to_string()),
        ("index", index.to_string()),
    ]
}

/// Describes every series to the installed recorder (the `# HELP` lines) and registers each
/// unlabelled one, and the fixed label values of labelled ones, at zero (`drop_reasons`: the
/// ledger's, [`crate::ledger::DropReason::BUILT_IN`]).
pub fn describe_and_register(drop_reasons: &[&'static str]) {
    for s in SERIES {
        match s.kind {
            SeriesKind::Counter => metrics::describe_counter!(s.name, s.help),
            SeriesKind::Gauge => metrics::describe_gauge!(s.name, s.help),
            SeriesKind::Histogram => metrics::describe_histogram!(s.name, s.help),
        }
        if s.labels.is_empty() {
            match s.kind {
                SeriesKind::Counter => metrics::counter!(s.name).increment(0),
                SeriesKind::Gauge => metrics::gauge!(s.name).increment(0.0),
                SeriesKind::Histogram => drop(metrics::histogram!(s.name)),
            }
        }
    }
    for stage in ["generate", "judge", "buffer"] {
        metrics::gauge!(QUEUE_DEPTH, "stage" => stage).increment(0.0);
    }
    for &reason in drop_reasons {
        metrics::counter!(PROMPTS_DROPPED, "reason" => reason).increment(0);
    }
    metrics::gauge!(EVAL_SCORE, "family" => "all").increment(0.0);
    for kind in FAULT_KINDS {
        metrics::counter!(FAULTS_INJECTED, "kind" => kind).increment(0);
    }
}

/// The kinds of fault `[faults]` injects (the `kind` label of [`FAULTS_INJECTED`]).
pub const FAULT_KINDS: [&str; 5] = [
    "kill_generator",
    "kill_judge",
    "nan_loss",
    "checkpoint_write_failure",
    "corrupt_checkpoint",
];

/// Registers an actor's per-actor series at zero, so a scrape lists every actor from its start.
pub fn register_actor(actor: &str) {
    metrics::counter!(ACTOR_RESTARTS, &actor_labels(actor)).increment(0);
}

/// Adds one busy span of `actor` doing `activity` (the histogram's `_sum` is the busy total).
pub fn observe_busy(actor: &str, activity: &str, seconds: f64) {
    let [a, r, i] = actor_labels(actor);
    let labels = [a, r, i, ("activity", activity.to_string())];
    metrics::histogram!(ACTOR_BUSY_SECONDS, &labels).record(seconds);
}

/// Counts `n` groups into a stage's queue depth while it lives; dropping it (also on a panic's
/// unwind) counts them out, so the gauge cannot drift when an actor fails mid-batch.
#[derive(Debug)]
pub struct StageDepth {
    stage: &'static str,
    n: f64,
}

impl StageDepth {
    pub fn enter(stage: &'static str, n: usize) -> StageDepth {
        metrics::gauge!(QUEUE_DEPTH, "stage" => stage).increment(n as f64);
        StageDepth { stage, n: n as f64 }
    }
}

impl Drop for StageDepth {
    fn drop(&mut self) {
        metrics::gauge!(QUEUE_DEPTH, "stage" => self.stage).decrement(self.n);
    }
}
