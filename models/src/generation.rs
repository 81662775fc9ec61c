//! Batched generation with a preallocated KV cache.
//!
//! Prompts of different lengths share one batch: they are left-padded, the padding is masked
//! out of attention and skipped by the position ids, so every row gets the logits it would get
//! alone. Each row stops at its own stop token or at `max_new_tokens`, and reports why
//! ([`FinishReason`]), together with the log-probability of every sampled token.
//!
//! Sampling is repeatable: row `i` draws its uniforms from a ChaCha8 stream seeded by `seed`
//! with stream id `i`, so the same seed and prompts give the same tokens on every run. The loop
//! after the prompt pass ([`decode`], in [`crate::decode_loop`]) never waits for the device.

use std::rc::Rc;

use tch::{Device, Kind, Tensor};

pub use crate::decode_loop::{decode, Prefilled, TokenDecoder};
use crate::error::{ModelError, Result};
pub use crate::generation_io::{FinishReason, GeneratedSequence, GenerationConfig};
use crate::kv_cache::KvCache;
use crate::qwen2::{check_token_ids, PositionIds, Qwen2ForCausalLM};
use crate::slot_cache::SlotCache;
use crate::slot_decoding::{decode_in_slots, Admitted, SlotDecoder};

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

impl TokenDecoder for Qwen2ForCausalLM {
    fn device(&self) -> Device {
        Qwen2ForCausalLM::device(self)
    }

    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let positions = text_positions(positions);
        let hidden = self.hidden_states(tokens, &positions, None, Some(cache))?;
        self.logits(&hidden.select(1, 0))
    }
}

impl SlotDecoder for Qwen2ForCausalLM {
    fn device(&self) -> Device {
        Qwen2ForCausalLM::device(self)
    }

    fn new_slot_cache(&self, slots: i64, capacity: i64) -> Result<SlotCache> {
        SlotCache::for_decoder(self.config(), slots, capacity, self.kind(), self.device())
    }

    fn decode_slots(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut SlotCache,
    ) -> Result<Tensor> {
        let embeds = self.model().embed(tokens)?;
        let hidden = self
            .model()
            .forward_slots(&embeds, &text_positions(positions), cache)?;
        self.logits(&hidden.select(1, 0))
    }
}

/// Generates a continuation for every prompt with continuous batching: `slots` rows decode at
/// once and a finished row takes the next prompt (see [`crate::slot_decoding`]). Prompt `i`
/// samples what row `i` of [`generate`] over all prompts samples.
pub fn generate_in_slots(
    model: &Qwen2ForCausalLM,
    prompts: &[Vec<i64>],
    slots: usize,
    config: &GenerationConfig,
) -> Result<Vec<GeneratedSequence>> {
    check_request(prompts, model.config(), config)?;
    let device = model.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let admit = |i: usize| -> Result<Admitted> {
        let prompt = &prompts[i];
        let len = prompt.len() as i64;
        let ids = Tensor::from_slice(prompt).unsqueeze(0).to_device(device);
        let mut cache = model.new_cache(1, len)?;
        let positions = PositionIds::sequential(1, len, 0, device);
        let hidden = model.hidden_states(&ids, &positions, None, Some(&mut cache))?;
        Ok(Admitted {
            logits: model.logits(&hidden.select(1, len - 1))?,
            cache: Rc::new(cache),
            next_position: len,
        })
    };
    tch::no_grad(|| decode_in_slots(model, prompts.len(), longest, admit, slots, config))
}

/// `[batch, 1]` text positions for a decode step from `[batch]` device positions.
pub(crate) fn text_positions(positions: &Tensor) -> PositionIds {
    PositionIds::Text(positions.unsqueeze(1))
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
