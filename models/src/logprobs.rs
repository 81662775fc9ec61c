//! Teacher-forced log-probabilities of given responses: the learner's path.
//!
//! The batch layout is `[left padding | prompt | response | right padding]`: prompts are
//! right-aligned at column `P` so every response starts at the same column, and only the
//! logits that predict response tokens are projected to the vocabulary. Gradients flow when
//! the caller runs with grad mode on (the default outside `tch::no_grad`).

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::qwen2::{check_token_ids, PositionIds, Qwen2ForCausalLM};

/// Per-token log-probs of a batch of responses.
#[derive(Debug)]
pub struct ResponseLogprobs {
    /// `[batch, max_response_len]` f32; 0 at padding.
    pub logprobs: Tensor,
    /// `[batch, max_response_len]` f32; 1 for real response tokens, 0 for padding.
    pub mask: Tensor,
}

/// Log-probs of each response token given its prompt and the response tokens before it, under
/// `log_softmax(logits / temperature)` (use the sampling temperature; 1 for greedy).
pub fn response_logprobs(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    temperature: f64,
) -> Result<ResponseLogprobs> {
    if prompts.len() != responses.len() || prompts.is_empty() {
        return Err(ModelError::invalid(
            "responses",
            format!(
                "need one response per prompt and at least one pair, got {} prompts and {} responses",
                prompts.len(),
                responses.len()
            ),
        ));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(ModelError::invalid(
            "temperature",
            format!("must be > 0, got {temperature}"),
        ));
    }
    let vocab = model.config().vocab_size;
    for (i, (p, r)) in prompts.iter().zip(responses).enumerate() {
        if p.is_empty() {
            return Err(ModelError::invalid(
                "prompts",
                format!("prompt {i} is empty"),
            ));
        }
        check_token_ids(p, vocab, &format!("prompt {i}"))?;
        check_token_ids(r, vocab, &format!("response {i}"))?;
    }
    let device = model.device();
    let batch = prompts.len();
    let p_width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let r_width = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let width = p_width + r_width;
    let mut ids = vec![0i64; batch * width];
    let mut valid = vec![false; batch * width];
    let mut targets = vec![0i64; batch * r_width];
    let mut target_mask = vec![0f32; batch * r_width];
    for (row, (p, r)) in prompts.iter().zip(responses).enumerate() {
        let base = row * width;
        let start = base + p_width - p.len();
        ids[start..base + p_width].copy_from_slice(p);
        ids[base + p_width..base + p_width + r.len()].copy_from_slice(r);
        valid[start..base + p_width + r.len()].fill(true);
        targets[row * r_width..row * r_width + r.len()].copy_from_slice(r);
        target_mask[row * r_width..row * r_width + r.len()].fill(1.0);
    }
    let shape = [batch as i64, width as i64];
    let input_ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let attention = Tensor::from_slice(&valid)
        .view(shape)
        .to_kind(Kind::Bool)
        .to_device(device);
    let positions = PositionIds::from_attention_mask(&attention);
    let padded = valid.iter().any(|v| !v);
    let hidden = model.hidden_states(&input_ids, &positions, padded.then_some(&attention), None)?;
    // Position P-1+j predicts response token j.
    let predicting = hidden.narrow(1, p_width as i64 - 1, r_width as i64);
    let logits = model.logits(&predicting)?.to_kind(Kind::Float) / temperature;
    let rshape = [batch as i64, r_width as i64];
    let targets = Tensor::from_slice(&targets).view(rshape).to_device(device);
    let mask = Tensor::from_slice(&target_mask)
        .view(rshape)
        .to_device(device);
    let logprobs = logits
        .log_softmax(-1, Kind::Float)
        .gather(-1, &targets.unsqueeze(-1), false)
        .squeeze_dim(-1)
        * &mask;
    Ok(ResponseLogprobs { logprobs, mask })
}
