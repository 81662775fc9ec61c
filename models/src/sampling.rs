//! Token selection from logits: greedy, temperature, top-k and top-p, on the model's device.
//!
//! Randomness comes from the caller as one uniform number per row (see
//! [`crate::generation`], which draws them from a per-sequence ChaCha stream), and selection is
//! inverse-CDF sampling over the filtered distribution. That keeps sampling repeatable for a
//! seed regardless of thread, device or libtorch's global generator, and a token whose
//! probability was filtered to exactly zero can never be chosen.
//!
//! The returned log-probability is that of the chosen token under the temperature-scaled,
//! *unfiltered* distribution: `log_softmax(logits / temperature)`. That is the quantity the
//! learner recomputes by teacher forcing (see [`crate::logprobs`]), so behaviour and learner
//! log-probs are comparable. Greedy decoding reports `log_softmax(logits)`.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 selects greedy decoding; otherwise logits are divided by it before sampling.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Keep only the k most likely tokens (ties with the k-th are kept, as in transformers).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// transformers' `repetition_penalty`: before anything else, the logit of every token
    /// already in the sequence (prompt and generated) is divided by it when positive and
    /// multiplied by it when negative. The reported log-probs are then those of the penalised
    /// distribution — no longer what the learner recomputes — so RL leaves it unset.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
}

fn default_temperature() -> f64 {
    1.0
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams::greedy()
    }
}

impl SamplingParams {
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The temperature log-probs are reported at (1 for greedy).
    pub fn logprob_temperature(&self) -> f64 {
        if self.is_greedy() {
            1.0
        } else {
            self.temperature
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(ModelError::invalid(
                "temperature",
                format!("must be finite and >= 0, got {}", self.temperature),
            ));
        }
        if let Some(k) = self.top_k {
            if k < 1 {
                return Err(ModelError::invalid(
                    "top_k",
                    format!("must be >= 1, got {k}"),
                ));
            }
        }
        if let Some(r) = self.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                return Err(ModelError::invalid(
                    "repetition_penalty",
                    format!("must be finite and > 0, got {r}"),
                ));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ModelError::invalid(
                    "top_p",
                    format!("must be in (0, 1], got {p}"),
                ));
            }
        }
        Ok(())
    }
}

/// transformers' repetition penalty: for each row, the logits `[batch, vocab]` of the tokens in
/// `seen[row]` divided by `penalty` where positive, multiplied where negative. A new tensor.
pub fn apply_repetition_penalty(logits: &Tensor, seen: &[Vec<i64>], penalty: f64) -> Tensor {
    let out = logits.to_kind(Kind::Float).copy();
    for (row, ids) in seen.iter().enumerate() {
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.is_empty() {
            continue;
        }
        let index = Tensor::from_slice(&unique).to_device(out.device());
        let mut line = out.get(row as i64);
        let values = line.index_select(0, &index);
        // tch's `x.where_self(cond, y)` is `where(cond, x, y)`.
        let penalised = (&values * penalty).where_self(&values.lt(0.0), &(&values / penalty));
        let _ = line.index_copy_(0, &index, &penalised);
    }
    out
}

/// Masks logits outside top-k / top-p with -inf. `logits` is `[batch, vocab]`, f32.
pub fn filter_logits(logits: &Tensor, params: &SamplingParams) -> Tensor {
    let vocab = logits.size()[1];
    let mut filtered = logits.shallow_clone();
    if let Some(k) = params.top_k.filter(|&k| k < vocab) {
        let (top, _) = filtered.topk(k, -1, true, true);
        let kth = top.narrow(-1, k - 1, 1);
        filtered = filtered.masked_fill(&filtered.lt_tensor(&kth), f64::NEG_INFINITY);
    }
    if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
        let (sorted, order) = filtered.sort(-1, true);
        let probs = sorted.softmax(-1, Kind::Float);
        // Mass strictly before each token: the first token is always kept (0 < p).
        let before = probs.cumsum(-1, Kind::Float) - &probs;
        let sorted = sorted.masked_fill(&before.ge(p), f64::NEG_INFINITY);
        filtered = filtered.scatter(-1, &order, &sorted);
    }
    filtered
}

/// Chooses one token per row. `uniforms` is `[batch]` f64 in (0, 1], ignored when greedy.
/// Returns `(tokens [batch] i64, logprobs [batch] f32)`.
pub fn sample(logits: &Tensor, params: &SamplingParams, uniforms: &Tensor) -> (Tensor, Tensor) {
    let logits = logits.to_kind(Kind::Float);
    let scaled = if params.is_greedy() {
        logits
    } else {
        logits / params.temperature
    };
    let logprobs = scaled.log_softmax(-1, Kind::Float);
    let tokens = if params.is_greedy() {
        scaled.argmax(-1, true)
    } else {
        let probs = filter_logits(&scaled, params).softmax(-1, Kind::Float);
        let cdf = probs.cumsum(-1, Kind::Double);
        let total = cdf.narrow(-1, cdf.size()[1] - 1, 1);
        let targets = uniforms.to_kind(Kind::Double).unsqueeze(-1) * total;
        // First index whose cdf reaches the target; a zero-probability token never starts a
        // new cdf step, so it cannot be that index.
        targets
            .searchsorted(&cdf, false, false, "left", None::<Tensor>)
            .clamp_max(cdf.size()[1] - 1)
    };
    let chosen = logprobs.gather(-1, &tokens, false).squeeze_dim(-1);
    (tokens.squeeze_dim(-1), chosen)
}
