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

use grlhf_models::generation::GenerationConfig;
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
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            batch_prompts: 2,
            max_new_tokens: 16,
            temperature: 1.0,
            top_p: None,
            top_k: None,
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
        let generation = GenerationConfig {
            max_new_tokens: config.max_new_tokens,
            sampling: SamplingParams {
                temperature: config.temperature,
                top_k: config.top_k,
                top_p: config.top_p,
            },
            stop_token_ids: self.stop_ids.clone(),
            seed,
        };
        let sequences = VlEngine::generate(self, &batch, &generation)?;
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
                    })
                    .collect();
                (e.prompt.tokens.clone(), rollouts)
            })
            .collect())
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        crate::weight_sync::apply(self.model.var_store(), tensors)
    }
}
