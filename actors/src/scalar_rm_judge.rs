//! The score-only reward-model judge (the baseline): a Bradley–Terry reward model — a Qwen2-VL
//! backbone with a linear head on the last token — scores each response on its own.
//!
//! A checkpoint is a Qwen2-VL directory plus `score.safetensors` holding `score.weight`
//! (`[1, hidden]`). The reward is the head's output. A response that did not finish ranks last,
//! as in grouped comparison: it gets one below the group's lowest finished score (the head's
//! scores are unbounded, so a fixed 0 could rank it above finished answers), or
//! `incomplete_reward` when the config sets one.

use std::path::Path;

use grlhf_models::qwen2_vl::MultimodalPrompt;
use grlhf_models::weights::{read_tensors, save_tensors};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::judge::Judge;
use crate::protocol::{JudgeDetails, RolloutGroup};
use crate::vl_engine::{EncodedPrompt, VlEngine};

/// The head's file inside a reward-model directory.
pub const SCORE_FILE: &str = "score.safetensors";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalarRmConfig {
    /// Reward of a response without a stop token; unset = one below the group's lowest
    /// finished score.
    pub incomplete_reward: Option<f32>,
}

/// A Qwen2-VL with a scalar head.
pub struct ScalarRewardModel {
    pub engine: VlEngine,
    /// `[1, hidden]`.
    pub score: Tensor,
}

impl ScalarRewardModel {
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<ScalarRewardModel, String> {
        let engine = VlEngine::load(dir, device, kind)?;
        let path = dir.join(SCORE_FILE);
        let tensors = read_tensors(&path).map_err(|e| e.to_string())?;
        let hidden = engine.model.config().text_config.hidden_size;
        let score = tensors
            .into_iter()
            .find(|(name, _)| name == "score.weight")
            .map(|(_, t)| t)
            .ok_or_else(|| format!("{}: no tensor `score.weight`", path.display()))?;
        if score.size() != [1, hidden] {
            return Err(format!(
                "{}: `score.weight` has shape {:?}, expected [1, {hidden}]",
                path.display(),
                score.size()
            ));
        }
        Ok(ScalarRewardModel {
            engine,
            score: score.to_device(device).to_kind(kind),
        })
    }

    /// Writes a fresh head (N(0, 0.02)) next to an existing Qwen2-VL checkpoint.
    pub fn init_head(dir: &Path, hidden: i64, seed: i64) -> Result<(), String> {
        tch::manual_seed(seed);
        let score = Tensor::randn([1, hidden], (Kind::Float, Device::Cpu)) * 0.02;
        save_tensors(
            &[("score.weight".to_string(), score)],
            &dir.join(SCORE_FILE),
        )
        .map_err(|e| e.to_string())
    }

    /// Writes the backbone (config + safetensors) and the head into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        self.engine.model.save(dir).map_err(|e| e.to_string())?;
        save_tensors(
            &[(
                "score.weight".to_string(),
                self.score.to_device(Device::Cpu).to_kind(Kind::Float),
            )],
            &dir.join(SCORE_FILE),
        )
        .map_err(|e| e.to_string())
    }

    /// The head's input for each (prompt, response) sequence: the last token's final hidden
    /// state, `[batch, hidden]`. Differentiable; callers that only score wrap it in `no_grad`.
    pub fn last_hidden(&self, items: &[(&EncodedPrompt, &[i64])]) -> Result<Tensor, String> {
        let config = self.engine.model.config();
        // A sampled response may contain vision markers (an early policy emits any token). They
        // mean nothing in a response and would be taken for image positions: leave them out.
        let vision_markers = [Some(config.image_token_id), config.vision_start_token_id];
        let prompts: Vec<MultimodalPrompt> = items
            .iter()
            .map(|(encoded, response)| MultimodalPrompt {
                tokens: encoded
                    .prompt
                    .tokens
                    .iter()
                    .copied()
                    .chain(
                        response
                            .iter()
                            .copied()
                            .filter(|t| !vision_markers.contains(&Some(*t))),
                    )
                    .collect(),
                grids: encoded.prompt.grids.clone(),
            })
            .collect();
        let pixels: Vec<Tensor> = items
            .iter()
            .filter_map(|(encoded, _)| encoded.pixel_values.as_ref().map(Tensor::shallow_clone))
            .collect();
        let pixels = (!pixels.is_empty()).then(|| Tensor::cat(&pixels, 0));
        let hidden = self
            .engine
            .model
            .hidden_states(&prompts, pixels.as_ref(), None)
            .map_err(|e| e.to_string())?;
        // Left padding: the last column is every sequence's last token.
        Ok(hidden.select(1, hidden.size()[1] - 1))
    }

    /// The head applied to [`Self::last_hidden`]: `[batch]`.
    pub fn head(&self, last_hidden: &Tensor, score: &Tensor) -> Tensor {
        last_hidden
            .matmul(&score.tr())
            .squeeze_dim(1)
            .to_kind(Kind::Float)
    }

    /// Scores of (prompt, response) sequences for one prompt.
    pub fn scores(
        &self,
        system: &str,
        user: &str,
        image: Option<&grlhf_models::image_processor::RgbImage>,
        responses: &[Vec<i64>],
    ) -> Result<Vec<f32>, String> {
        let encoded = self.engine.encode(system, user, image)?;
        let items: Vec<(&EncodedPrompt, &[i64])> =
            responses.iter().map(|r| (&encoded, r.as_slice())).collect();
        self.score_items(&items)
    }

    /// Scores of (prompt, response) sequences, prompts possibly different.
    pub fn score_items(&self, items: &[(&EncodedPrompt, &[i64])]) -> Result<Vec<f32>, String> {
        tch::no_grad(|| {
            let last = self.last_hidden(items)?;
            let scores = self.head(&last, &self.score);
            Vec::<f32>::try_from(scores.to_device(Device::Cpu)).map_err(|e| e.to_string())
        })
    }
}

pub struct ScalarRmJudge {
    pub model: ScalarRewardModel,
    pub config: ScalarRmConfig,
}

impl Judge for ScalarRmJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        let responses: Vec<Vec<i64>> = group.rollouts.iter().map(|r| r.tokens.clone()).collect();
        let scores = self.model.scores(
            &group.system,
            &group.user,
            group.prompt.image.as_deref(),
            &responses,
        )?;
        let finished_min = scores
            .iter()
            .zip(&group.rollouts)
            .filter(|(_, r)| r.is_complete())
            .map(|(s, _)| *s)
            .fold(f32::INFINITY, f32::min);
        let incomplete = self
            .config
            .incomplete_reward
            .unwrap_or(if finished_min.is_finite() {
                finished_min - 1.0
            } else {
                0.0
            });
        let rewards = scores
            .into_iter()
            .zip(&group.rollouts)
            .map(|(s, r)| if r.is_complete() { s } else { incomplete })
            .collect();
        Ok((
            rewards,
            JudgeDetails {
                judgments: group.rollouts.len(),
                ..JudgeDetails::default()
            },
        ))
    }
}
