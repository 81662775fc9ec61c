//! The sampling loop every model shares, written so that no step waits for the device.
//!
//! A step samples one token per row from the last logits and feeds it back through the model.
//! On a GPU the host only queues work; any read of a device value (a token, a log-prob, "has
//! this row stopped?") makes it wait until the GPU has caught up, so host time and GPU time add
//! up instead of overlapping. So, inside the loop:
//!
//! - every step's seeded uniforms are drawn on the host and uploaded once, before the loop
//!   (row `i` still draws one number per step from ChaCha8 stream `i`: the seed contract of
//!   [`crate::generation`] is unchanged);
//! - rotary positions live on the device and advance by one per step;
//! - tokens and log-probs stay on the device and are stacked once after the loop;
//! - stop tokens are matched on the device, into one `done` flag per row;
//! - stop tokens are looked up in a `[vocab]` mask (a gather; libtorch's `isin` may sort and
//!   read a size back on a GPU when there are many stop ids);
//! - whether every row is done is read back only every [`poll_interval`] steps (or
//!   `GenerationConfig::poll_every`).
//!
//! After the loop one copy brings tokens and log-probs to the host, where each row is cut after
//! its first stop token. Rows that finish early keep being fed (their outputs are discarded), as
//! before. The result is the same, token for token and bit for bit, as a loop that reads every
//! step back: `models/tests/generation.rs` keeps that loop as the reference.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::generation_io::{FinishReason, GeneratedSequence, GenerationConfig};
use crate::kv_cache::KvCache;
use crate::sampling::sample;

/// A model that can extend cached sequences one token per row.
pub trait TokenDecoder {
    fn device(&self) -> Device;

    /// Logits `[batch, vocab]` for one new token per row (`tokens`: `[batch, 1]`) at the
    /// given rotary positions (`[batch]` i64 on the model's device), appended to `cache`.
    /// Nothing here may read a device value back: see [`crate::decode_loop`].
    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor>;
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

/// How often (in steps) the loop reads back whether every row has stopped. Each read is a
/// host–device synchronisation on a GPU, so it happens every few steps there, at the price of
/// at most `interval - 1` wasted steps once the last row stops. On the CPU a read costs nothing
/// and a finished batch should stop at once.
pub fn poll_interval(device: Device) -> i64 {
    match device {
        Device::Cpu => 1,
        _ => 8,
    }
}

/// Samples up to `config.max_new_tokens` tokens per row after a prompt pass; see the module docs.
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
    let batch = next_positions.len();
    let max_new = config.max_new_tokens as i64;
    let vocab = logits.size()[1];
    let poll_every = checked_poll_every(config, Some(vocab), device)? as i64;
    let uniforms = upload_uniforms(config, batch, device)?;
    let stop_mask = stop_mask(&config.stop_token_ids, vocab, device)?;
    let mut done = Tensor::f_zeros([batch as i64], (Kind::Bool, device))?;
    let mut positions = Tensor::from_slice(&next_positions).to_device(device);
    let penalty = config.sampling.repetition_penalty;
    let mut seen = match penalty {
        Some(_) => Some(seen_mask(&prompts, vocab, device)?),
        None => None,
    };
    let mut tokens_per_step = Vec::with_capacity(max_new as usize);
    let mut logprobs_per_step = Vec::with_capacity(max_new as usize);

    for step in 0..max_new {
        if let (Some(penalty), Some(seen)) = (penalty, &seen) {
            logits = penalise_seen(&logits, seen, penalty);
        }
        let (tokens, logprobs) = sample(&logits, &config.sampling, &uniforms.get(step));
        if let Some(seen) = seen.as_mut() {
            let _ = seen.scatter_value_(1, &tokens.unsqueeze(1), 1);
        }
        if let Some(stop_mask) = &stop_mask {
            done = done.logical_or(&stop_mask.index_select(0, &tokens));
        }
        let next = tokens.unsqueeze(1);
        tokens_per_step.push(tokens);
        logprobs_per_step.push(logprobs);
        if step + 1 == max_new {
            break;
        }
        if stop_mask.is_some() && (step + 1) % poll_every == 0 && done.all().int64_value(&[]) != 0 {
            break;
        }
        logits = model.decode_step(&next, &positions, &mut cache)?;
        positions = &positions + 1;
    }
    let steps = tokens_per_step.len();
    // One copy each after the loop: `[batch, steps]` row-major.
    let host = |per_step: &[Tensor]| {
        Tensor::stack(per_step, 1)
            .flatten(0, -1)
            .to_device(Device::Cpu)
    };
    let tokens = Vec::<i64>::try_from(host(&tokens_per_step))?;
    let logprobs = Vec::<f32>::try_from(host(&logprobs_per_step))?;
    Ok(cut_at_stop(
        &tokens,
        &logprobs,
        steps,
        &config.stop_token_ids,
    ))
}

/// The read-back interval `config` asks for (or the device's), after checking what a decode
/// loop needs: at least one new token, an interval of at least one step, stop ids inside the
/// vocabulary.
pub(crate) fn checked_poll_every(
    config: &GenerationConfig,
    vocab: Option<i64>,
    device: Device,
) -> Result<usize> {
    if config.max_new_tokens == 0 {
        return Err(ModelError::invalid("max_new_tokens", "must be at least 1"));
    }
    let vocab = vocab.unwrap_or(i64::MAX);
    if let Some(bad) = config
        .stop_token_ids
        .iter()
        .find(|&&id| id < 0 || id >= vocab)
    {
        return Err(ModelError::invalid(
            "stop_token_ids",
            format!("{bad} is outside the vocabulary of {vocab}"),
        ));
    }
    match config.poll_every {
        Some(0) => Err(ModelError::invalid("poll_every", "must be at least 1 step")),
        Some(n) => Ok(n),
        None => Ok(poll_interval(device) as usize),
    }
}

/// `[vocab]` bool, true at the stop ids (`None` without any).
fn stop_mask(stop_token_ids: &[i64], vocab: i64, device: Device) -> Result<Option<Tensor>> {
    if stop_token_ids.is_empty() {
        return Ok(None);
    }
    let mut mask = vec![false; vocab as usize];
    for &id in stop_token_ids {
        mask[id as usize] = true;
    }
    Ok(Some(Tensor::from_slice(&mask).to_device(device)))
}

/// `[max_new_tokens, batch]` uniforms in (0, 1]: row `i` draws one per step from ChaCha8 stream
/// `i` of `config.seed`. Greedy decoding ignores them, so nothing is drawn and every step sees
/// the same zeros.
fn upload_uniforms(config: &GenerationConfig, batch: usize, device: Device) -> Result<Tensor> {
    let steps = config.max_new_tokens;
    if config.sampling.is_greedy() {
        return Ok(Tensor::f_zeros([1, batch as i64], (Kind::Double, device))?
            .expand([steps as i64, batch as i64], false));
    }
    let mut uniforms = vec![0f64; steps * batch];
    for row in 0..batch {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(row as u64);
        for step in 0..steps {
            uniforms[step * batch + row] = 1.0 - rng.random::<f64>();
        }
    }
    Ok(Tensor::from_slice(&uniforms)
        .view([steps as i64, batch as i64])
        .to_device(device))
}

/// `[batch, vocab]` bool: the tokens each row's prompt holds (what a repetition penalty counts
/// as seen before the first step).
fn seen_mask(prompts: &[Vec<i64>], vocab: i64, device: Device) -> Result<Tensor> {
    let mut mask = vec![false; prompts.len() * vocab as usize];
    for (row, prompt) in prompts.iter().enumerate() {
        crate::qwen2::check_token_ids(prompt, vocab, &format!("prompt {row}"))?;
        for &token in prompt {
            mask[row * vocab as usize + token as usize] = true;
        }
    }
    Ok(Tensor::from_slice(&mask)
        .view([prompts.len() as i64, vocab])
        .to_device(device))
}

/// transformers' repetition penalty over a seen-token mask: the same element-wise products as
/// [`crate::sampling::apply_repetition_penalty`] (so the same bits), without a host list.
fn penalise_seen(logits: &Tensor, seen: &Tensor, penalty: f64) -> Tensor {
    let values = logits.to_kind(Kind::Float);
    // tch's `x.where_self(cond, y)` is `where(cond, x, y)`.
    let penalised = (&values * penalty).where_self(&values.lt(0.0), &(&values / penalty));
    penalised.where_self(seen, &values)
}

/// Splits the `[batch, steps]` host copies into sequences, each cut after its first stop token.
fn cut_at_stop(
    tokens: &[i64],
    logprobs: &[f32],
    steps: usize,
    stop_token_ids: &[i64],
) -> Vec<GeneratedSequence> {
    tokens
        .chunks(steps)
        .zip(logprobs.chunks(steps))
        .map(|(row_tokens, row_logprobs)| {
            match row_tokens.iter().position(|t| stop_token_ids.contains(t)) {
                Some(stop) => GeneratedSequence {
                    tokens: row_tokens[..=stop].to_vec(),
                    logprobs: row_logprobs[..=stop].to_vec(),
                    finish_reason: FinishReason::Stop,
                },
                None => GeneratedSequence {
                    tokens: row_tokens.to_vec(),
                    logprobs: row_logprobs.to_vec(),
                    finish_reason: FinishReason::Length,
                },
            }
        })
        .collect()
}
