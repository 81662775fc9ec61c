//! `dr_grpo`: Dr. GRPO ("Understanding R1-Zero-Like Training", Liu et al. 2025). GRPO without
//! its two biases: advantages are `r − mean` (no division by the group's standard deviation),
//! and token losses are summed per response and divided by a constant — `max_tokens` — instead
//! of the response's length, so long wrong answers are not penalised less per token:
//!
//! ```text
//! loss = Σ_i Σ_t mask·(−min(ratio·A, clip(ratio)·A) + β·k3) / (sequences · max_tokens)
//! ```
//!
//! ```toml
//! [learner.loss]
//! kind = "dr_grpo"
//! clip_eps = 0.2
//! kl_beta = 0.0
//! max_tokens = 32   # default: the generator's max_new_tokens
//! ```

use std::sync::Arc;

use grlhf_actors::grpo::{clipped_surrogate, k3_kl};
use grlhf_actors::policy_loss::{LossInputs, LossTerms, PolicyLoss};
use grlhf_actors::registry::{LossContext, Registry};
use serde::Deserialize;
use tch::Kind;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrGrpoSettings {
    #[serde(default = "default_clip")]
    pub clip_eps: f64,
    /// Clip range above 1 (defaults to `clip_eps`).
    #[serde(default)]
    pub clip_eps_high: Option<f64>,
    #[serde(default)]
    pub kl_beta: f64,
    /// The constant every response's token sum is divided by (default: the generator's
    /// `max_new_tokens`).
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

fn default_clip() -> f64 {
    0.2
}

pub struct DrGrpo {
    pub clip_eps: f64,
    pub clip_eps_high: f64,
    pub kl_beta: f64,
    pub max_tokens: usize,
}

impl PolicyLoss for DrGrpo {
    fn advantages(&self, rewards: &[f32]) -> Vec<f32> {
        let mean = rewards.iter().sum::<f32>() / rewards.len().max(1) as f32;
        rewards.iter().map(|r| r - mean).collect()
    }

    fn loss(&self, inputs: &LossInputs<'_>) -> LossTerms {
        let (mut per_token, outside) = clipped_surrogate(
            inputs.logp,
            inputs.behaviour_logp,
            inputs.advantages,
            self.clip_eps,
            self.clip_eps_high,
        );
        let tokens = (inputs.step_tokens as f64).max(1.0);
        let mut kl = 0.0;
        if let Some(reference) = inputs.reference_logp {
            let k3 = k3_kl(reference, inputs.logp);
            kl = (k3.detach() * inputs.mask)
                .sum(Kind::Float)
                .double_value(&[])
                / tokens;
            per_token += k3 * self.kl_beta;
        }
        let constant = (inputs.step_sequences * self.max_tokens).max(1) as f64;
        LossTerms {
            loss: (per_token * inputs.mask).sum(Kind::Float) / constant,
            kl,
            clip_fraction: (outside * inputs.mask).sum(Kind::Float).double_value(&[]) / tokens,
        }
    }

    fn kl_beta(&self) -> f64 {
        self.kl_beta
    }
}

pub fn register(registry: &mut Registry) {
    registry.register_loss(
        "dr_grpo",
        "Dr. GRPO: advantages r − mean, token sums divided by a constant (no length or std normalisation)",
        |s: DrGrpoSettings, context: LossContext| {
            let max_tokens = s.max_tokens.unwrap_or(context.max_new_tokens);
            if max_tokens == 0 {
                return Err("max_tokens: must be at least 1".into());
            }
            Ok(Arc::new(DrGrpo {
                clip_eps: s.clip_eps,
                clip_eps_high: s.clip_eps_high.unwrap_or(s.clip_eps),
                kl_beta: s.kl_beta,
                max_tokens,
            }) as Arc<dyn PolicyLoss>)
        },
    );
}
