//! What a generation request asks for ([`GenerationConfig`]) and what it returns
//! ([`GeneratedSequence`] with its [`FinishReason`]), shared by [`crate::generation`] and the
//! sampling loop in [`crate::decode_loop`].

use serde::{Deserialize, Serialize};

use crate::sampling::SamplingParams;

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
    /// Steps between the host's reads of which sequences have finished: each read waits for
    /// the device, and a sequence that stops between reads costs up to `poll_every - 1` wasted
    /// steps. `None`: [`crate::decode_loop::poll_interval`] of the device (1 on the CPU, 8 on a
    /// GPU). Results do not depend on it.
    #[serde(default)]
    pub poll_every: Option<usize>,
    /// Continuous batching only (`grlhf_models::slot_decoding`): record the decode step as a
    /// CUDA graph after one eager step and replay it (`grlhf_models::cuda_graph`). Needs a
    /// CUDA device and a build with the graph shim. Experimental: not yet run on a GPU.
    #[serde(default)]
    pub cuda_graphs: bool,
}

impl GenerationConfig {
    pub fn greedy(max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            stop_token_ids: Vec::new(),
            seed: 0,
            poll_every: None,
            cuda_graphs: false,
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
