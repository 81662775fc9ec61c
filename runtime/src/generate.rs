//! `grlhf generate`: sample continuations of one prompt (with images, for Qwen2-VL /
//! Qwen2.5-VL checkpoints) from a checkpoint.

use std::path::PathBuf;

use anyhow::{bail, Result};
use grlhf_models::chat_template::{ChatMessage, ChatTemplate, ContentPart, Role};
use grlhf_models::generation_config::GenerationDefaults;
use grlhf_models::tokenizer::Tokenizer;
use grlhf_models::{GeneratedSequence, GenerationConfig, SamplingParams};
use serde::Serialize;
use tch::{Device, Kind};

use crate::loaded_model::LoadedModel;

/// The prompt, as ids or as text for the model's tokenizer.
#[derive(Debug, Clone)]
pub enum PromptInput {
    Tokens(Vec<i64>),
    /// `chat`: wrapped as a user turn (images first) in the checkpoint's chat template, after a
    /// system turn with `system` when given.
    Text {
        text: String,
        chat: bool,
        system: Option<String>,
    },
}

/// Everything `grlhf generate` needs.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub model_dir: PathBuf,
    pub prompt: PromptInput,
    /// Images for a vision-language checkpoint, one per image placeholder, in order.
    pub images: Vec<PathBuf>,
    pub num_samples: usize,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// `None`: the config's eos ids plus `<|im_end|>` when the tokenizer has it.
    pub stop_token_ids: Option<Vec<i64>>,
    pub seed: u64,
    pub device: Device,
    pub kind: Kind,
}

/// One sample, with its text when a tokenizer is available.
#[derive(Debug, Serialize)]
pub struct Sample {
    #[serde(flatten)]
    pub sequence: GeneratedSequence,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GenerateOutput {
    pub prompt_tokens: Vec<i64>,
    pub stop_token_ids: Vec<i64>,
    pub samples: Vec<Sample>,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

pub fn run(request: &GenerateRequest) -> Result<GenerateOutput> {
    let dir = &request.model_dir;
    if request.num_samples == 0 {
        bail!("--num-samples must be at least 1");
    }
    let model = LoadedModel::load(dir, request.device, request.kind)?;
    let tokenizer = dir
        .join("tokenizer.json")
        .exists()
        .then(|| Tokenizer::from_file(dir))
        .transpose()?;
    let prompt_tokens = match &request.prompt {
        PromptInput::Tokens(ids) => ids.clone(),
        PromptInput::Text { text, chat, system } => {
            let Some(tokenizer) = &tokenizer else {
                bail!(
                    "--prompt needs {}; pass --tokens instead",
                    dir.join("tokenizer.json").display()
                );
            };
            let text = if *chat {
                // Images come first in the user turn: `[{"type": "image"}, ..., {"type":
                // "text"}]` content, as Qwen2-VL's processor documents it.
                // Text alone stays a string: text-only templates (Qwen2.5's) concatenate it.
                let user = if request.images.is_empty() {
                    ChatMessage::new(Role::User, text.clone())
                } else {
                    let mut parts = vec![ContentPart::Image; request.images.len()];
                    parts.push(ContentPart::Text { text: text.clone() });
                    ChatMessage::with_parts(Role::User, parts)
                };
                let mut messages = Vec::new();
                if let Some(system) = system {
                    messages.push(ChatMessage::new(Role::System, system.clone()));
                }
                messages.push(user);
                ChatTemplate::for_dir(dir)?.render(&messages, true)?
            } else {
                text.clone()
            };
            tokenizer.encode(&text, false)?
        }
    };
    let stop_token_ids = match &request.stop_token_ids {
        Some(ids) => ids.clone(),
        None => {
            // The config's eos ids, generation_config.json's, and the chat turn's end.
            let mut ids = model.eos_token_ids();
            let defaults = GenerationDefaults::from_dir(dir)?.unwrap_or_default();
            for id in defaults.eos_token_ids() {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            if let Some(id) = tokenizer.as_ref().and_then(|t| t.token_to_id("<|im_end|>")) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
    };
    let config = GenerationConfig {
        max_new_tokens: request.max_new_tokens,
        sampling: request.sampling.clone(),
        stop_token_ids: stop_token_ids.clone(),
        seed: request.seed,
        poll_every: None,
        cuda_graphs: false,
    };
    let start = std::time::Instant::now();
    let (prompt_tokens, sequences) = model.generate(
        &prompt_tokens,
        &request.images,
        request.num_samples,
        &config,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let generated: usize = sequences.iter().map(|s| s.tokens.len()).sum();
    let samples = sequences
        .into_iter()
        .map(|sequence| -> Result<Sample> {
            let text = tokenizer
                .as_ref()
                .map(|t| t.decode(&sequence.tokens, false))
                .transpose()?;
            Ok(Sample { sequence, text })
        })
        .collect::<Result<_>>()?;
    Ok(GenerateOutput {
        prompt_tokens,
        stop_token_ids,
        samples,
        seconds,
        tokens_per_second: generated as f64 / seconds.max(1e-9),
    })
}

impl GenerateOutput {
    /// Human-readable form.
    pub fn render(&self) -> String {
        let mut out = format!(
            "prompt: {} tokens; stop tokens {:?}\n",
            self.prompt_tokens.len(),
            self.stop_token_ids
        );
        for (i, s) in self.samples.iter().enumerate() {
            let finish = match s.sequence.finish_reason {
                grlhf_models::FinishReason::Stop => "stop",
                grlhf_models::FinishReason::Length => "length",
            };
            let mean_logprob = s.sequence.logprobs.iter().map(|&l| l as f64).sum::<f64>()
                / s.sequence.logprobs.len().max(1) as f64;
            out.push_str(&format!(
                "sample {i}: {} tokens, finish={finish}, mean logprob {mean_logprob:.3}\n  tokens: {:?}\n",
                s.sequence.tokens.len(),
                s.sequence.tokens
            ));
            if let Some(text) = &s.text {
                out.push_str(&format!("  text: {text:?}\n"));
            }
        }
        out.push_str(&format!(
            "{:.3} s, {:.1} tokens/s",
            self.seconds, self.tokens_per_second
        ));
        out
    }
}
