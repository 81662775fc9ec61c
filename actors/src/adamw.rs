//! AdamW whose state grlhf owns, so a checkpoint can save and restore it exactly.
//!
//! `tch::nn::Optimizer` keeps its moments inside libtorch with no way to read them out, so a
//! run resumed from a checkpoint would restart Adam from zero moments — a different trajectory
//! from the run it continues. This is the same update as `torch.optim.AdamW` (decoupled weight
//! decay, bias-corrected moments, `eps` added after the square root), over the trainable
//! variables of a var store in name order; `adamw_matches_tch` in the tests checks it against
//! tch's own AdamW.

use crate::error::ActorError;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// AdamW hyper-parameters (torch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Decay every parameter, as `torch.optim.AdamW` over one parameter group does. Off by
    /// default: norms, biases and embeddings are not decayed (see [`is_decayed`]).
    pub decay_all: bool,
}

/// Whether weight decay applies to parameter `name` of shape `shape` (unless `decay_all`):
/// matrices and kernels are decayed; biases and norm scales (one dimension) and embeddings are
/// not — pulling a norm's gain or a token's embedding towards zero is a regulariser nobody
/// wants (the usual two parameter groups of transformer training).
pub fn is_decayed(name: &str, shape: &[i64]) -> bool {
    shape.len() >= 2 && !name.contains("embed")
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_all: false,
        }
    }
}

struct Slot {
    name: String,
    /// Weight decay applies to this parameter.
    decayed: bool,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The optimizer: one first and second moment per trainable parameter, and the step count.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    steps: u64,
}

const EXP_AVG: &str = "exp_avg.";
const EXP_AVG_SQ: &str = "exp_avg_sq.";

impl AdamW {
    /// Zero moments for every trainable variable of `vars`.
    pub fn new(vars: &VarStore, config: AdamWConfig) -> AdamW {
        let mut named: Vec<(String, Tensor)> = vars
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, param)| Slot {
                decayed: config.decay_all || is_decayed(&name, &param.size()),
                exp_avg: param.zeros_like().detach(),
                exp_avg_sq: param.zeros_like().detach(),
                name,
                param,
            })
            .collect();
        AdamW {
            config,
            slots,
            steps: 0,
        }
    }

    /// Optimizer steps taken (the bias corrections depend on it).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// The global L2 norm of the gradients (in f64; one device sync, not one per parameter).
    pub fn grad_norm(&self) -> f64 {
        let mut total: Option<Tensor> = None;
        for slot in &self.slots {
            let grad = slot.param.grad();
            if grad.defined() {
                let squares = grad
                    .to_kind(Kind::Double)
                    .pow_tensor_scalar(2)
                    .sum(Kind::Double);
                total = Some(match total {
                    Some(sum) => sum + squares,
                    None => squares,
                });
            }
        }
        total.map_or(0.0, |t| t.double_value(&[])).sqrt()
    }

    /// Scales the gradients so their global norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.grad_norm();
        self.clip_to(norm, max_norm);
        norm
    }

    /// [`AdamW::clip_grad_norm`] with the gradients' norm already known.
    pub fn clip_to(&mut self, norm: f64, max_norm: f64) {
        let coefficient = max_norm / (norm + 1e-6);
        if coefficient < 1.0 {
            tch::no_grad(|| {
                for slot in &mut self.slots {
                    let mut grad = slot.param.grad();
                    if grad.defined() {
                        let _ = grad.g_mul_scalar_(coefficient);
                    }
                }
            });
        }
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                if slot.decayed {
                    let _ = slot.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = slot
                    .exp_avg_sq
                    .g_mul_scalar_(c.beta2)
                    .addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
                let denom = (slot.exp_avg_sq.sqrt() / bias2.sqrt()) + c.eps;
                let update = (&slot.exp_avg / &denom) * (lr / bias1);
                let _ = slot.param.g_sub_(&update);
            }
        });
    }

    /// The moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("{EXP_AVG}{}", s.name), s.exp_avg.shallow_clone()),
                    (
                        format!("{EXP_AVG_SQ}{}", s.name),
                        s.exp_avg_sq.shallow_clone(),
                    ),
                ]
            })
            .collect()
    }

    /// Restores moments written by [`AdamW::state_tensors`] and the step count; every moment
    /// must be present with its parameter's shape.
    pub fn load_state(
        &mut self,
        tensors: &[(String, Tensor)],
        steps: u64,
    ) -> Result<(), ActorError> {
        let by_name: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        if by_name.len() != 2 * self.slots.len() {
            return Err(ActorError::Weights(format!(
                "optimizer state has {} tensors; the model needs {}",
                by_name.len(),
                2 * self.slots.len()
            )));
        }
        tch::no_grad(|| {
            for slot in &mut self.slots {
                for (prefix, target) in [
                    (EXP_AVG, &mut slot.exp_avg),
                    (EXP_AVG_SQ, &mut slot.exp_avg_sq),
                ] {
                    let key = format!("{prefix}{}", slot.name);
                    let source = by_name.get(key.as_str()).ok_or_else(|| {
                        ActorError::Weights(format!("optimizer state lacks {key}"))
                    })?;
                    if source.size() != target.size() {
                        return Err(ActorError::Weights(format!(
                            "optimizer state {key} has shape {:?}; the parameter has {:?}",
                            source.size(),
                            target.size()
                        )));
                    }
                    target.copy_(source);
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}
