//! Supervised fine-tuning (the warm start): teacher-forced negative log-likelihood of answers
//! given (system, user, image), with AdamW. The policy warm start imitates the world's
//! `sft_policy` answers; the GRM warm start imitates `sft_grm` judgments (criteria, analysis,
//! `\boxed{s1,s2}`). Each answer is followed by `<|im_end|>`, so the model learns to stop.
//!
//! This is an offline stage run on the caller's thread (the model never leaves it).

use std::sync::Arc;

use grlhf_models::image_processor::RgbImage;
use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::adamw::{AdamW, AdamWConfig};
use crate::epoch_sampler::EpochSampler;
use crate::schedule::LrSchedule;
use crate::vl_engine::{EncodedPrompt, VlEngine};

/// One demonstration.
#[derive(Debug, Clone)]
pub struct SftExample {
    pub system: String,
    pub user: String,
    pub image: Option<Arc<RgbImage>>,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    pub steps: u64,
    /// Examples per step.
    pub batch: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    /// Keep the vision tower's blocks and patch embedding at their initial weights and train
    /// only the merger and the language model. A linear probe found that a random tower's cell
    /// tokens encode colour and shape better than SFT leaves them (docs/world.md).
    pub freeze_vision_tower: bool,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            steps: 200,
            batch: 16,
            lr: 3e-3,
            warmup_steps: 10,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 0,
            freeze_vision_tower: false,
        }
    }
}

/// One step's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct SftStats {
    pub step: u64,
    /// Mean token negative log-likelihood.
    pub loss: f64,
    pub tokens: usize,
    pub lr: f64,
}

/// Trains `engine` on `examples`; `on_step` sees every step (for progress and logs).
pub fn train_sft(
    engine: &mut VlEngine,
    examples: &[SftExample],
    config: &SftConfig,
    mut on_step: impl FnMut(&SftStats),
) -> Result<Vec<SftStats>, String> {
    if examples.is_empty() {
        return Err("no SFT examples".to_string());
    }
    if config.batch == 0 || config.steps == 0 {
        return Err("sft: steps and batch must be positive".to_string());
    }
    // Tokenise every answer once (with the stop token); a bad example is an error that names it.
    let mut answers = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        answers.push(
            engine
                .response_tokens(&e.answer)
                .map_err(|err| format!("example {i}: {err}"))?,
        );
    }
    if config.freeze_vision_tower {
        for (name, mut var) in engine.model.var_store().variables() {
            if name.starts_with("visual.") && !name.starts_with("visual.merger.") {
                let _ = var.requires_grad_(false);
            }
        }
    }
    // grlhf's AdamW: no weight decay on norms, biases and embeddings (tch's decays them all).
    let mut optimizer = AdamW::new(
        engine.model.var_store(),
        AdamWConfig {
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    );
    let schedule = LrSchedule {
        lr: config.lr,
        warmup_steps: config.warmup_steps,
        min_lr_ratio: 0.1,
    };
    let mut sampler = EpochSampler::new(examples.len(), config.seed);
    let mut history = Vec::with_capacity(config.steps as usize);
    for step in 0..config.steps {
        let batch = sampler.next_batch(config.batch);
        let encoded: Vec<EncodedPrompt> = batch
            .iter()
            .map(|&i| {
                engine.encode(
                    &examples[i].system,
                    &examples[i].user,
                    examples[i].image.as_deref(),
                )
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&EncodedPrompt> = encoded.iter().collect();
        let responses: Vec<Vec<i64>> = batch.iter().map(|&i| answers[i].clone()).collect();
        let lr = schedule.at(step, config.steps);
        optimizer.zero_grad();
        let out = engine.logprobs(&refs, &responses, 1.0)?;
        let tokens = out.mask.sum(Kind::Float);
        let loss = -(out.logprobs * &out.mask).sum(Kind::Float) / &tokens;
        loss.backward();
        optimizer.clip_grad_norm(config.grad_clip);
        optimizer.step(lr);
        let stats = SftStats {
            step,
            loss: loss.double_value(&[]),
            tokens: tokens.double_value(&[]) as usize,
            lr,
        };
        if !stats.loss.is_finite() {
            return Err(format!("sft step {step}: non-finite loss"));
        }
        on_step(&stats);
        history.push(stats);
    }
    Ok(history)
}
