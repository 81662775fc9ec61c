//! Teacher-forced log-probabilities of given responses: the learner's path.
//!
//! The batch layout is `[left padding | prompt | response | right padding]`: prompts are
//! right-aligned at column `P` so every response starts at the same column, and only the
//! logits that predict response tokens are projected to the vocabulary. Gradients flow when
//! the caller runs with grad mode on (the default outside `tch::no_grad`).

use tch::{Device, Kind, Tensor};

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
    let layout = TeacherForcing::new(prompts, responses, model.config().vocab_size, temperature)?;
    let device = model.device();
    let (input_ids, attention) = layout.inputs(device);
    let positions = PositionIds::from_attention_mask(&attention);
    let hidden = model.hidden_states(
        &input_ids,
        &positions,
        layout.padded().then_some(&attention),
        None,
    )?;
    layout.score(&hidden, |h| model.logits(h))
}

/// The `[padding | prompt | response | padding]` batch of a teacher-forced pass, shared by the
/// text and the vision-language models.
#[derive(Debug)]
pub(crate) struct TeacherForcing {
    pub(crate) batch: usize,
    /// Column where every response starts.
    pub(crate) p_width: usize,
    pub(crate) r_width: usize,
    pub(crate) ids: Vec<i64>,
    pub(crate) valid: Vec<bool>,
    targets: Vec<i64>,
    target_mask: Vec<f32>,
    temperature: f64,
}

impl TeacherForcing {
    /// Validates the request and lays the batch out.
    pub(crate) fn new(
        prompts: &[Vec<i64>],
        responses: &[Vec<i64>],
        vocab: i64,
        temperature: f64,
    ) -> Result<TeacherForcing> {
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
        Ok(TeacherForcing {
            batch,
            p_width,
            r_width,
            ids,
            valid,
            targets,
            target_mask,
            temperature,
        })
    }

    pub(crate) fn width(&self) -> usize {
        self.p_width + self.r_width
    }

    pub(crate) fn padded(&self) -> bool {
        self.valid.iter().any(|v| !v)
    }

    /// `(input_ids [batch, width], attention [batch, width] bool)`.
    pub(crate) fn inputs(&self, device: Device) -> (Tensor, Tensor) {
        let shape = [self.batch as i64, self.width() as i64];
        (
            Tensor::from_slice(&self.ids).view(shape).to_device(device),
            Tensor::from_slice(&self.valid)
                .view(shape)
                .to_kind(Kind::Bool)
                .to_device(device),
        )
    }

    /// Response log-probs from the final hidden states; only the positions that predict
    /// response tokens (column P-1+j predicts token j) are projected to the vocabulary.
    pub(crate) fn score(
        &self,
        hidden: &Tensor,
        logits: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<ResponseLogprobs> {
        let device = hidden.device();
        let predicting = hidden.narrow(1, self.p_width as i64 - 1, self.r_width as i64);
        let logits = logits(&predicting)?.to_kind(Kind::Float) / self.temperature;
        let rshape = [self.batch as i64, self.r_width as i64];
        let targets = Tensor::from_slice(&self.targets)
            .view(rshape)
            .to_device(device);
        let mask = Tensor::from_slice(&self.target_mask)
            .view(rshape)
            .to_device(device);
        let logprobs = logits
            .log_softmax(-1, Kind::Float)
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1)
            * &mask;
        Ok(ResponseLogprobs { logprobs, mask })
    }
}
