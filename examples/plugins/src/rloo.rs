//! `rloo`: REINFORCE leave-one-out (Ahmadian et al. 2024). Each response's baseline is the mean
//! reward of the *other* responses to its prompt, so the advantage is unbiased without a value
//! model or a standard-deviation division:
//!
//! ```text
//! A_i = r_i − (Σ_{j≠i} r_j) / (n − 1)  =  n/(n−1) · (r_i − mean)
//! ```
//!
//! The policy loss is the clipped importance-weighted surrogate per token, averaged over the
//! step's trained tokens (exactly 1 on-policy, so it is plain REINFORCE there), plus an optional
//! k3 KL term.
//!
//! ```toml
//! [learner.loss]
//! kind = "rloo"
//! clip_eps = 0.2
//! kl_beta = 0.0
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grlhf_actors::grpo::{clipped_surrogate, k3_kl};
use grlhf_actors::policy_loss::{LossInputs, LossTerms, PolicyLoss};
use grlhf_actors::registry::{LossContext, Registry};
use serde::Deserialize;
use tch::Kind;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlooSettings {
    #[serde(default = "default_clip")]
    pub clip_eps: f64,
    #[serde(default)]
    pub kl_beta: f64,
}

fn default_clip() -> f64 {
    0.2
}

/// Micro-batch losses computed so far (for tests).
pub static LOSSES_COMPUTED: AtomicU64 = AtomicU64::new(0);

pub struct Rloo {
    pub clip_eps: f64,
    pub kl_beta: f64,
}

impl PolicyLoss for Rloo {
    fn advantages(&self, rewards: &[f32]) -> Vec<f32> {
        let n = rewards.len();
        if n < 2 {
            return vec![0.0; n];
        }
        let total: f32 = rewards.iter().sum();
        rewards
            .iter()
            .map(|r| r - (total - r) / (n - 1) as f32)
            .collect()
    }

    fn loss(&self, inputs: &LossInputs<'_>) -> LossTerms {
        LOSSES_COMPUTED.fetch_add(1, Ordering::Relaxed);
        let (mut per_token, outside) = clipped_surrogate(
            inputs.logp,
            inputs.behaviour_logp,
            inputs.advantages,
            self.clip_eps,
            self.clip_eps,
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
        LossTerms {
            loss: (per_token * inputs.mask).sum(Kind::Float) / tokens,
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
        "rloo",
        "REINFORCE leave-one-out: baseline = mean reward of the other responses, clipped surrogate",
        |s: RlooSettings, _context: LossContext| {
            Ok(Arc::new(Rloo {
                clip_eps: s.clip_eps,
                kl_beta: s.kl_beta,
            }) as Arc<dyn PolicyLoss>)
        },
    );
}
