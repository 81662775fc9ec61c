//! Training the score-only baseline: a Bradley–Terry reward model. The loss on a preference pair
//! is −log σ(r(chosen) − r(rejected)); backbone and head train together with AdamW. This is the
//! "score-only RM" that Generative RLHF-V compares its generative reward model against, trained
//! on the same preference pairs.
//!
//! Like [`crate::sft`], an offline stage run on the caller's thread.

use std::sync::Arc;

use grlhf_models::image_processor::RgbImage;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::Kind;

use crate::epoch_sampler::EpochSampler;
use crate::scalar_rm_judge::ScalarRewardModel;
use crate::schedule::LrSchedule;
use crate::vl_engine::EncodedPrompt;

/// One preference pair, ready for the reward model.
#[derive(Debug, Clone)]
pub struct BtPair {
    pub system: String,
    pub user: String,
    pub image: Option<Arc<RgbImage>>,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BtConfig {
    pub steps: u64,
    /// Pairs per step.
    pub batch: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
}

impl Default for BtConfig {
    fn default() -> Self {
        BtConfig {
            steps: 300,
            batch: 16,
            lr: 1e-3,
            warmup_steps: 10,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 0,
        }
    }
}

/// One step's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct BtStats {
    pub step: u64,
    pub loss: f64,
    /// Share of the batch's pairs ranked right before the step.
    pub accuracy: f64,
    pub lr: f64,
}

/// Trains `model` on `pairs`; `on_step` sees every step.
pub fn train_bradley_terry(
    model: &mut ScalarRewardModel,
    pairs: &[BtPair],
    config: &BtConfig,
    mut on_step: impl FnMut(&BtStats),
) -> Result<Vec<BtStats>, String> {
    if pairs.is_empty() {
        return Err("no preference pairs to train the reward model on".to_string());
    }
    if config.batch == 0 || config.steps == 0 {
        return Err("bradley-terry: steps and batch must be positive".to_string());
    }
    // A finished rollout ends with its stop token; score the pairs the same way.
    let encode_response = |i: usize, text: &str| {
        model
            .engine
            .response_tokens(text)
            .map_err(|e| format!("pair {i}: {e}"))
    };
    let mut responses = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        responses.push((
            encode_response(i, &p.chosen)?,
            encode_response(i, &p.rejected)?,
        ));
    }
    let device = model.engine.model.device();
    // The head trains in its own var store, next to the backbone's.
    let head_store = tch::nn::VarStore::new(device);
    let head = head_store
        .root()
        .var_copy("score", &model.score.to_kind(Kind::Float));
    let optimizer_config = tch::nn::AdamW {
        wd: config.weight_decay,
        ..Default::default()
    };
    let mut backbone_opt = optimizer_config
        .build(model.engine.model.var_store(), config.lr)
        .map_err(|e| e.to_string())?;
    let mut head_opt = optimizer_config
        .build(&head_store, config.lr)
        .map_err(|e| e.to_string())?;
    let schedule = LrSchedule {
        lr: config.lr,
        warmup_steps: config.warmup_steps,
        min_lr_ratio: 0.1,
    };
    let mut sampler = EpochSampler::new(pairs.len(), config.seed);
    let mut history = Vec::with_capacity(config.steps as usize);
    for step in 0..config.steps {
        let batch = sampler.next_batch(config.batch);
        let encoded: Vec<EncodedPrompt> = batch
            .iter()
            .map(|&i| {
                model
                    .engine
                    .encode(&pairs[i].system, &pairs[i].user, pairs[i].image.as_deref())
            })
            .collect::<Result<_, _>>()?;
        // Chosen responses first, then rejected: one forward pass for the whole batch.
        let mut items: Vec<(&EncodedPrompt, &[i64])> = Vec::with_capacity(2 * batch.len());
        for (e, &i) in encoded.iter().zip(&batch) {
            items.push((e, responses[i].0.as_slice()));
        }
        for (e, &i) in encoded.iter().zip(&batch) {
            items.push((e, responses[i].1.as_slice()));
        }
        let lr = schedule.at(step, config.steps);
        backbone_opt.set_lr(lr);
        head_opt.set_lr(lr);
        backbone_opt.zero_grad();
        head_opt.zero_grad();
        let last = model.last_hidden(&items)?.to_kind(Kind::Float);
        let scores = model.head(&last, &head);
        let b = batch.len() as i64;
        let margin = scores.narrow(0, 0, b) - scores.narrow(0, b, b);
        let loss = -margin.log_sigmoid().mean(Kind::Float);
        loss.backward();
        backbone_opt.clip_grad_norm(config.grad_clip);
        head_opt.clip_grad_norm(config.grad_clip);
        backbone_opt.step();
        head_opt.step();
        let stats = BtStats {
            step,
            loss: loss.double_value(&[]),
            accuracy: margin
                .gt(0.0)
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]),
            lr,
        };
        if !stats.loss.is_finite() {
            return Err(format!("bradley-terry step {step}: non-finite loss"));
        }
        on_step(&stats);
        history.push(stats);
    }
    model.score = tch::no_grad(|| head.detach().to_kind(model.score.kind()).copy());
    Ok(history)
}
