//! GRPO's arithmetic: group-normalised advantages and the token-level policy loss.
//!
//! Kept free of actors so every term is tested on its own. The loss, averaged over all response
//! tokens of a batch (token-level, so long responses are not down-weighted):
//!
//! ```text
//! ratio   = exp(logp − logp_behaviour)
//! policy  = −min(ratio·A, clip(ratio, 1−ε, 1+ε_high)·A)
//! kl (k3) = exp(ref − logp) − (ref − logp) − 1
//! loss    = policy + β·kl
//! ```
//!
//! With `is_cap = C` the decoupled form is used instead (for stale samples): the proximal
//! policy is the learner's current one, the behaviour correction `min(exp(logp − logp_behaviour),
//! C)` is a detached weight, and the clip applies to the ratio against the proximal policy.
//!
//! **Top-p and top-k.** Generators record `logp_behaviour` from the temperature-scaled but
//! *unfiltered* distribution, and the learner computes `logp` the same way. This is deliberate:
//! both sides then describe the same policy, so the ratio is exactly 1 on-policy. Recording the
//! filtered (renormalised) log-prob instead would make the on-policy ratio `Z` — the kept mass,
//! below 1 and different at every token — so the clip would cut the gradient of negative-advantage
//! tokens wherever `Z < 1 − ε`, a worse bias. What remains is the usual one (verl, OpenRLHF and
//! TRL accept it too): samples come from the truncated distribution, so the objective is that of
//! the unfiltered policy evaluated on a sampler that never proposes the tail. Exact correction
//! would need the learner to apply the same filter to its own logits. RL configs therefore leave
//! `top_p` and `top_k` unset (every shipped config does); the run warns when one is set.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::policy_loss::{LossInputs, LossTerms, PolicyLoss};

/// Loss settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Clip range below 1.
    pub clip_eps: f64,
    /// Clip range above 1 (DAPO's asymmetric clip); defaults to `clip_eps`.
    pub clip_eps_high: Option<f64>,
    /// KL weight to the frozen reference (paper: 0.02).
    pub kl_beta: f64,
    /// Divide advantages by the group's standard deviation.
    pub normalize_std: bool,
    /// Truncated importance-weight cap for stale samples (off by default).
    pub is_cap: Option<f64>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            clip_eps: 0.2,
            clip_eps_high: None,
            kl_beta: 0.02,
            normalize_std: true,
            is_cap: None,
        }
    }
}

/// Advantages of one group's rewards: `r − mean`, divided by `std + 1e-6` when asked.
/// A group whose rewards are all equal gets zeros.
pub fn group_advantages(rewards: &[f32], normalize_std: bool) -> Vec<f32> {
    let n = rewards.len().max(1) as f32;
    let mean = rewards.iter().sum::<f32>() / n;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt();
    rewards
        .iter()
        .map(|r| {
            let a = r - mean;
            if normalize_std {
                a / (std + 1e-6)
            } else {
                a
            }
        })
        .collect()
}

/// Loss terms of a batch (the same shape for every loss kind).
pub use crate::policy_loss::LossTerms as GrpoLoss;

/// PPO's clipped surrogate per token, `−min(ratio·A, clip(ratio, 1−ε_low, 1+ε_high)·A)` with
/// `ratio = exp(logp − behaviour)`, and a 0/1 tensor of the tokens whose ratio lies outside
/// the clip range. `advantages` is `[batch]`, the rest `[batch, tokens]`. Public so a user's
/// loss kind builds on the same arithmetic.
pub fn clipped_surrogate(
    logp: &Tensor,
    behaviour_logp: &Tensor,
    advantages: &Tensor,
    eps_low: f64,
    eps_high: f64,
) -> (Tensor, Tensor) {
    let ratio = (logp - behaviour_logp).exp();
    let adv = advantages.unsqueeze(1);
    let unclipped = &ratio * &adv;
    let clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * &adv;
    let outside = ratio
        .detach()
        .lt(1.0 - eps_low)
        .logical_or(&ratio.detach().gt(1.0 + eps_high))
        .to_kind(Kind::Float);
    (-unclipped.minimum(&clipped), outside)
}

/// The k3 estimate of KL(policy ‖ reference) per token: `exp(ref − logp) − (ref − logp) − 1`
/// (unbiased, always ≥ 0).
pub fn k3_kl(reference_logp: &Tensor, logp: &Tensor) -> Tensor {
    let diff = reference_logp - logp;
    diff.exp() - &diff - 1.0
}

/// The token-level GRPO loss. All tensors are `[batch, tokens]`; `mask` is 1 on response tokens;
/// `advantages` is `[batch]`. `normalizer` is the token count the sum is divided by (the whole
/// step's tokens, so micro-batches accumulate to the full-batch mean).
pub fn grpo_loss(
    logp: &Tensor,
    behaviour_logp: &Tensor,
    reference_logp: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    normalizer: f64,
    config: &GrpoConfig,
) -> GrpoLoss {
    let eps_low = config.clip_eps;
    let eps_high = config.clip_eps_high.unwrap_or(config.clip_eps);
    let adv = advantages.unsqueeze(1);
    let (ratio, weight) = match config.is_cap {
        None => ((logp - behaviour_logp).exp(), None),
        Some(cap) => {
            let proximal = logp.detach();
            let behaviour_ratio = (&proximal - behaviour_logp).exp().clamp_max(cap);
            ((logp - &proximal).exp(), Some(behaviour_ratio))
        }
    };
    let unclipped = &ratio * &adv;
    let clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * &adv;
    let mut per_token = -unclipped.minimum(&clipped);
    if let Some(w) = weight {
        per_token *= w;
    }
    let clip_fraction = {
        let outside = ratio
            .detach()
            .lt(1.0 - eps_low)
            .logical_or(&ratio.detach().gt(1.0 + eps_high));
        (outside.to_kind(Kind::Float) * mask)
            .sum(Kind::Float)
            .double_value(&[])
            / normalizer.max(1.0)
    };
    let mut kl_value = 0.0;
    if let Some(reference) = reference_logp {
        let kl = k3_kl(reference, logp);
        kl_value = (kl.detach() * mask).sum(Kind::Float).double_value(&[]) / normalizer.max(1.0);
        per_token += kl * config.kl_beta;
    }
    let loss = (per_token * mask).sum(Kind::Float) / normalizer.max(1.0);
    GrpoLoss {
        loss,
        kl: kl_value,
        clip_fraction,
    }
}

/// GRPO as in the paper (`[learner.grpo]`): group-normalised advantages, the token-level
/// clipped surrogate and a k3 KL term (this module).
#[derive(Debug, Clone, Copy, Default)]
pub struct Grpo(pub GrpoConfig);

impl PolicyLoss for Grpo {
    fn advantages(&self, rewards: &[f32]) -> Vec<f32> {
        group_advantages(rewards, self.0.normalize_std)
    }

    fn loss(&self, inputs: &LossInputs<'_>) -> LossTerms {
        grpo_loss(
            inputs.logp,
            inputs.behaviour_logp,
            inputs.reference_logp,
            inputs.advantages,
            inputs.mask,
            inputs.step_tokens as f64,
            &self.0,
        )
    }

    fn kl_beta(&self) -> f64 {
        self.0.kl_beta
    }
}
