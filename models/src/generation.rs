//! Batched generation with a preallocated KV cache.
//!
//! Prompts of different lengths share one batch: they are left-padded, the padding is masked
//! out of attention and skipped by the position ids, so every row gets the logits it would get
//! alone. Each row stops at its own stop token or at `max_new_tokens`, and reports why
//! ([`FinishReason`]), together with the log-probability of every sampled token.
//!
//! Sampling is repeatable: row `i` draws its uniforms from a ChaCha8 stream seeded by `seed`
//! with stream id `i`, so the same seed and prompts give the same tokens on every run.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::qwen2::{check_token_ids, PositionIds, Qwen2ForCausalLM};
use crate::sampling::{apply_repetition_penalty, sample, SamplingParams};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens per sequence (the stop token included).
    pub max_new_tokens: usize,
    #[serde(default)]
    pub sampling: SamplingParams,
    /// A sequence finishes when it emits one of these; the stop token is kept in its output.
    #[serde(default)]
    pub stop_token_ids: Vec<i64>,
    #[serde(default)]
    pub seed: u64,
}

impl GenerationConfig {
    pub fn greedy(max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            stop_token_ids: Vec::new(),
            seed: 0,
        }
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It emitted a stop token (the last token of `tokens`).
    Stop,
    /// It reached `max_new_tokens` without one.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedSequence {
    pub tokens: Vec<i64>,
    /// Log-probability of each token of `tokens` (see [`crate::sampling`] for which one).
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// Generates a continuation for every prompt, in one batch.
pub fn generate(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<GeneratedSequence>> {
    check_request(prompts, model.config(), config)?;
    tch::no_grad(|| generate_unchecked(model, prompts, config))
}

/// Validates a generation request against a model's config: sampling parameters, non-empty
/// prompts, token ids in range; warns when positions run past `max_position_embeddings`.
pub(crate) fn check_request(
    prompts: &[Vec<i64>],
    model: &crate::config::Config,
    config: &GenerationConfig,
) -> Result<()> {
    config.sampling.validate()?;
    if prompts.is_empty() {
        return Err(ModelError::invalid("prompts", "no prompt given"));
    }
    if config.max_new_tokens == 0 {
        return Err(ModelError::invalid("max_new_tokens", "must be at least 1"));
    }
    let vocab = model.vocab_size;
    for (i, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(ModelError::invalid(
                "prompts",
                format!("prompt {i} is empty"),
            ));
        }
        check_token_ids(prompt, vocab, &format!("prompt {i}"))?;
    }
    check_token_ids(&config.stop_token_ids, vocab, "stop_token_ids")?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) + config.max_new_tokens;
    let trained = model.max_position_embeddings;
    if longest as i64 > trained {
        // Rotary positions extrapolate as in transformers; say so rather than stay silent.
        tracing::warn!(
            "generating up to {longest} positions, beyond max_position_embeddings = {trained}"
        );
    }
    Ok(())
}

fn generate_unchecked(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<GeneratedSequence>> {
    let device = model.device();
    let batch = prompts.len() as i64;
    let lengths: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let width = *lengths.iter().max().expect("non-empty");
    let padded = lengths.iter().any(|&l| l != width);

    let (input_ids, mask) = left_pad(prompts, width, device)?;
    let positions = if padded {
        PositionIds::from_attention_mask(&mask)
    } else {
        PositionIds::sequential(batch, width, 0, device)
    };
    let mut cache = model.new_cache(batch, width + config.max_new_tokens as i64)?;
    let hidden = model.hidden_states(
        &input_ids,
        &positions,
        padded.then_some(&mask),
        Some(&mut cache),
    )?;
    let logits = model.logits(&hidden.select(1, width - 1))?;
    let prefilled = Prefilled {
        logits,
        cache,
        next_positions: lengths,
        prompts: prompts.to_vec(),
    };
    decode(model, prefilled, config)
}

/// A model that can extend cached sequences one token per row.
pub trait TokenDecoder {
    fn device(&self) -> Device;

    /// Logits `[batch, vocab]` for one new token per row (`tokens`: `[batch, 1]`) at the
    /// given rotary positions, appended to `cache`.
    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &[i64],
        cache: &mut KvCache,
    ) -> Result<Tensor>;
}

impl TokenDecoder for Qwen2ForCausalLM {
    fn device(&self) -> Device {
        Qwen2ForCausalLM::device(self)
    }

    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &[i64],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let positions = text_positions(positions, self.device());
        let hidden = self.hidden_states(tokens, &positions, None, Some(cache))?;
        self.logits(&hidden.select(1, 0))
    }
}

/// `[batch, 1]` text positions for a decode step.
pub(crate) fn text_positions(positions: &[i64], device: Device) -> PositionIds {
    PositionIds::Text(Tensor::from_slice(positions).to_device(device).unsqueeze(1))
}

/// The state after a prompt pass: last-position logits, the filled cache, and the rotary
/// position each row's first generated token takes.
#[derive(Debug)]
pub struct Prefilled {
    pub logits: Tensor,
    pub cache: KvCache,
    pub next_positions: Vec<i64>,
    /// Each row's prompt ids (padding left out): what a repetition penalty counts as seen.
    pub prompts: Vec<Vec<i64>>,
}

/// The sampling loop shared by every model: samples, records tokens / log-probs / finish
/// reasons, and feeds the tokens back until every row stopped or `max_new_tokens` is reached.
pub fn decode(
    model: &impl TokenDecoder,
    prefilled: Prefilled,
    config: &GenerationConfig,
) -> Result<Vec<GeneratedSequence>> {
    let device = model.device();
    let Prefilled {
        mut logits,
        mut cache,
        next_positions,
        prompts,
    } = prefilled;
    // Tokens a repetition penalty applies to: the prompt, then each generated token.
    let mut seen = config.sampling.repetition_penalty.map(|_| prompts);
    let batch = next_positions.len();
    let max_new = config.max_new_tokens as i64;
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
        .map(|row| {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            rng.set_stream(row);
            rng
        })
        .collect();
    let mut out: Vec<GeneratedSequence> = (0..batch)
        .map(|_| GeneratedSequence {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; batch];

    for step in 0..max_new {
        // One uniform per row every step (finished rows too) keeps each row's stream aligned
        // with its step count, independent of the other rows.
        let uniforms: Vec<f64> = rngs.iter_mut().map(|r| 1.0 - r.random::<f64>()).collect();
        let uniforms = Tensor::from_slice(&uniforms).to_device(device);
        if let (Some(penalty), Some(seen)) = (config.sampling.repetition_penalty, &seen) {
            logits = apply_repetition_penalty(&logits, seen, penalty);
        }
        let (tokens, logprobs) = sample(&logits, &config.sampling, &uniforms);
        let tokens_host = Vec::<i64>::try_from(tokens.to_device(Device::Cpu))?;
        let logprobs_host = Vec::<f32>::try_from(logprobs.to_device(Device::Cpu))?;
        for row in 0..batch {
            if done[row] {
                continue;
            }
            out[row].tokens.push(tokens_host[row]);
            if let Some(seen) = seen.as_mut() {
                seen[row].push(tokens_host[row]);
            }
            out[row].logprobs.push(logprobs_host[row]);
            if config.stop_token_ids.contains(&tokens_host[row]) {
                out[row].finish_reason = FinishReason::Stop;
                done[row] = true;
            }
        }
        if step + 1 == max_new || done.iter().all(|&d| d) {
            break;
        }
        let positions: Vec<i64> = next_positions.iter().map(|p| p + step).collect();
        logits = model.decode_step(&tokens.unsqueeze(1), &positions, &mut cache)?;
    }
    Ok(out)
}

/// Left-pads prompts to `width`: `(ids [batch, width] i64, mask [batch, width] bool)`.
/// Padding uses token 0, which the mask hides.
pub fn left_pad(prompts: &[Vec<i64>], width: i64, device: Device) -> Result<(Tensor, Tensor)> {
    let batch = prompts.len();
    let width_u = width as usize;
    let mut ids = vec![0i64; batch * width_u];
    let mut mask = vec![false; batch * width_u];
    for (row, prompt) in prompts.iter().enumerate() {
        let start = row * width_u + width_u - prompt.len();
        ids[start..start + prompt.len()].copy_from_slice(prompt);
        mask[start..start + prompt.len()].fill(true);
    }
    let shape = [batch as i64, width];
    Ok((
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&mask)
            .view(shape)
            .to_kind(Kind::Bool)
            .to_device(device),
    ))
}
