//! The engine a generator drives: the one interface between the generator actor's protocol
//! (taking prompts, holding them in the ledger, applying weights between batches, handing groups
//! on) and whatever produces responses. [`VlEngine`] is the real one; the simulated engine
//! ([`crate::simulated::generator::SimRolloutEngine`]) spends a cost model's time instead, so
//! benchmarks exercise exactly the protocol real runs do. Like text-generation-inference's
//! `Backend` or AReaL's `InferenceEngine`, the actor knows nothing of models.
//!
//! An engine lives on its generator's device thread ([`crate::device_worker`]), so it need not
//! be `Send`; its builder is, and runs there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use grlhf_models::chat_template::{IM_END, IM_START};
use grlhf_models::generation::{FinishReason, GenerationConfig};
use grlhf_models::sampling::SamplingParams;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::ActorError;
use crate::prompt_source::PromptSpec;
use crate::protocol::Rollout;
use crate::vl_engine::VlEngine;

/// Sampling settings of a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Prompts per generation batch (each sampled `group_size` times).
    pub batch_prompts: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    /// Continuous batching: at most this many samples decode at once, and a finished one hands
    /// its row to the next waiting sample (`grlhf_models::slot_decoding`). `None`: all
    /// `batch_prompts × group_size` samples of a call decode as one plain batch.
    pub slots: Option<usize>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            batch_prompts: 2,
            max_new_tokens: 16,
            temperature: 1.0,
            top_p: None,
            top_k: None,
            slots: None,
        }
    }
}

impl GeneratorConfig {
    /// The sampling loop's settings for one generation call. No repetition penalty: behaviour
    /// log-probs must be the ones the learner recomputes.
    pub fn generation(&self, stop_token_ids: Vec<i64>, seed: u64) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: None,
            },
            stop_token_ids,
            seed,
            poll_every: None,
            cuda_graphs: false,
        }
    }
}

/// The prompt's token ids and its n rollouts, as a generation batch returns them.
pub type GeneratedGroup = (Vec<i64>, Vec<Rollout>);

/// Produces rollouts and takes weight updates.
pub trait RolloutEngine {
    /// Samples `n` responses to each prompt, with randomness drawn from `seed` alone.
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError>;

    /// Copies a weight update into the engine's parameters (names must match).
    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError>;

    /// Samples one continuation of each conversation — its prompt, then the trajectory so far
    /// (policy and environment tokens) — with randomness drawn from `seed` alone: a later turn
    /// of a multi-turn rollout. Engines that cannot continue refuse.
    fn continue_conversations(
        &mut self,
        conversations: &[Conversation],
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<Rollout>, ActorError> {
        let _ = (conversations, config, seed);
        Err(ActorError::Engine(
            "this rollout engine cannot continue conversations (multi-turn workflows need it)"
                .into(),
        ))
    }

    /// What an environment's reply looks like to the model: a user turn with `text`, then the
    /// opening of the assistant's next turn, in the engine's chat template, as token ids.
    /// `close_turn`: the policy's turn did not end with the stop token (it ran out of tokens),
    /// so the reply first closes it.
    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        let _ = (text, close_turn);
        Err(ActorError::Engine(
            "this rollout engine has no chat template for environment turns".into(),
        ))
    }
}

/// A conversation to continue: its prompt, and the tokens after the prompt so far.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub prompt: PromptSpec,
    pub so_far: Vec<i64>,
}

/// Builds a generator's engine on its device thread, over the weights file given (a resume).
/// Shared, because a supervisor builds the engine again when it restarts the generator.
pub type RolloutEngineBuilder =
    Arc<dyn Fn(Option<&Path>) -> Result<Box<dyn RolloutEngine>, ActorError> + Send + Sync>;

/// The real engine: a Qwen2-VL policy loaded from `model_dir` onto `device`.
pub fn vl_rollout_engine(model_dir: PathBuf, device: Device, kind: Kind) -> RolloutEngineBuilder {
    Arc::new(move |weights| {
        let engine = VlEngine::load_with(&model_dir, device, kind, weights)?;
        Ok(Box::new(engine) as Box<dyn RolloutEngine>)
    })
}

impl RolloutEngine for VlEngine {
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        let encoded = prompts
            .iter()
            .map(|s| self.encode(&s.system, &s.user, s.image.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch: Vec<_> = encoded
            .iter()
            .flat_map(|e| std::iter::repeat_n(e, n))
            .collect();
        let generation = config.generation(self.stop_ids.clone(), seed);
        // Sample j of prompt i is row i·n + j either way, so both draw the same randomness.
        let sequences = match config.slots {
            Some(slots) => self.generate_in_slots(&encoded, n, slots, &generation)?,
            None => VlEngine::generate(self, &batch, &generation)?,
        };
        Ok(encoded
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let rollouts = sequences[i * n..(i + 1) * n]
                    .iter()
                    .map(|s| Rollout {
                        text: self.decode(&s.tokens),
                        tokens: s.tokens.clone(),
                        logprobs: s.logprobs.clone(),
                        finish_reason: s.finish_reason,
                        policy_mask: None,
                    })
                    .collect();
                (e.prompt.tokens.clone(), rollouts)
            })
            .collect())
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        crate::weight_sync::apply(self.model.var_store(), tensors)
    }

    fn continue_conversations(
        &mut self,
        conversations: &[Conversation],
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<Rollout>, ActorError> {
        // A trajectory holding the image placeholder id (an untrained policy samples it) cannot
        // be fed back: as input the id means "an image goes here". Such a conversation ends,
        // unfinished, with an empty turn.
        let image_token = self.model.config().image_token_id;
        let continuable: Vec<usize> = (0..conversations.len())
            .filter(|&i| !conversations[i].so_far.contains(&image_token))
            .collect();
        let encoded = continuable
            .iter()
            .map(|&i| {
                let c = &conversations[i];
                let mut e =
                    self.encode(&c.prompt.system, &c.prompt.user, c.prompt.image.as_deref())?;
                e.prompt.tokens.extend_from_slice(&c.so_far);
                Ok(e)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let batch: Vec<_> = encoded.iter().collect();
        let generation = config.generation(self.stop_ids.clone(), seed);
        let sequences = if batch.is_empty() {
            Vec::new()
        } else {
            VlEngine::generate(self, &batch, &generation)?
        };
        let mut out: Vec<Rollout> = (0..conversations.len())
            .map(|_| Rollout {
                tokens: vec![],
                logprobs: vec![],
                finish_reason: FinishReason::Length,
                text: String::new(),
                policy_mask: None,
            })
            .collect();
        for (i, s) in continuable.into_iter().zip(sequences) {
            out[i] = Rollout {
                text: self.decode(&s.tokens),
                tokens: s.tokens,
                logprobs: s.logprobs,
                finish_reason: s.finish_reason,
                policy_mask: None,
            };
        }
        Ok(out)
    }

    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        // The template closes every message with `<|im_end|>\n`; a finished policy turn ended
        // with its `<|im_end|>`, so the environment's tokens start at that newline.
        let close = if close_turn { IM_END } else { "" };
        let rendered = format!("{close}\n{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n");
        Ok(self
            .tokenizer
            .encode(&rendered, false)
            .map_err(|e| e.to_string())?)
    }
}
