//! The learner's settings (`[learner]` in a run config): optimisation, the GRPO loss, when to
//! give up on skipped steps. Read by the learner actor and by the engines it drives.

use grlhf_models::device::DeviceName;
use serde::{Deserialize, Serialize};

use crate::grpo::GrpoConfig;
use crate::registry::KindTable;
use crate::schedule::LrSchedule;

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Where the learner (and its frozen reference) runs: `cpu` or `cuda:N`.
    pub device: DeviceName,
    /// Sequences per forward/backward pass (gradients accumulate over the step's batch).
    pub micro_batch: usize,
    pub grad_clip: f64,
    pub weight_decay: f64,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Linear warm-up steps (default 10: Adam's first steps, with near-zero second moments, are
    /// the largest, and GRPO's first groups the noisiest).
    pub warmup_steps: u64,
    /// The learning rate at the last step, as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    /// Drop groups whose rewards are all equal (no learning signal) instead of training on
    /// zero advantages.
    pub drop_zero_variance: bool,
    /// Keep a frozen reference for the KL term (needs `grpo.kl_beta > 0`).
    pub reference: bool,
    /// Skipped steps (non-finite loss or gradient) in a row after which the run stops.
    pub max_skipped_in_a_row: u64,
    /// The built-in GRPO loss's settings (used when `loss` is unset).
    pub grpo: GrpoConfig,
    /// `[learner.loss]`: a registered loss kind and its settings (`kind = "rloo"`, …); unset:
    /// GRPO with `[learner.grpo]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<KindTable>,
}

impl LearnerConfig {
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            device: DeviceName::from("cpu"),
            micro_batch: 16,
            grad_clip: 1.0,
            weight_decay: 0.01,
            lr: 1e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            drop_zero_variance: false,
            reference: true,
            max_skipped_in_a_row: 3,
            grpo: GrpoConfig::default(),
            loss: None,
        }
    }
}
