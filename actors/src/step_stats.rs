//! What one learner step did: the record the learner sends the run after every step, that
//! `metrics.jsonl` holds one per line, and that a checkpoint keeps for the steps since the last
//! one. Its own module because the learner, the checkpoint and the run all read it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::protocol::Version;

/// What one step did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepStats {
    pub step: u64,
    /// The version after the step.
    pub version: Version,
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub reward_mean: f64,
    pub groups: usize,
    pub groups_dropped_zero_variance: usize,
    pub response_tokens: usize,
    pub mean_response_tokens: f64,
    /// Trained responses by length in tokens (a histogram: at most max_new_tokens entries).
    pub response_length_counts: std::collections::BTreeMap<usize, usize>,
    /// Largest (learner version − sample version) in the batch.
    pub max_staleness: u64,
    /// Groups in the batch by staleness (learner version − sample version).
    pub staleness_counts: std::collections::BTreeMap<u64, usize>,
    pub train_ms: f64,
    pub sync_ms: f64,
    pub sync_bytes: u64,
    /// Seconds since the run started when the step ended.
    pub time: f64,
    /// Samples older than η (must stay empty: the buffer filters them).
    pub staleness_violations: Vec<String>,
    /// The ledger right after this step's prompts were closed.
    pub ledger: crate::ledger::LedgerSnapshot,
    /// Steps skipped so far (non-finite loss or gradient, or a failed step).
    pub skipped_steps: u64,
    /// The checkpoint written after this step, if one was.
    pub checkpoint: Option<PathBuf>,
}
