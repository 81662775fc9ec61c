//! The score-only reward-model judge (the baseline): a Bradley–Terry reward model — a Qwen2-VL
//! backbone with a linear head on the last token — scores each response on its own.
//!
//! A checkpoint is a Qwen2-VL directory plus `score.safetensors` holding `score.weight`
//! (`[1, hidden]`). The reward is the head's output; a response that did not finish gets
//! `incomplete_reward` (default 0, as in grouped comparison).

use std::path::Path;

use grlhf_models::qwen2_vl::MultimodalPrompt;
use grlhf_models::weights::{read_tensors, save_tensors};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::judge::Judge;
use crate::protocol::{JudgeDetails, RolloutGroup};
use crate::vl_engine::VlEngine;

/// The head's file inside a reward-model directory.
pub const SCORE_FILE: &str = "score.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalarRmConfig {
    /// Reward of a response without a stop token.
    pub incomplete_reward: f32,
}

impl Default for ScalarRmConfig {
    fn default() -> Self {
        ScalarRmConfig {
            incomplete_reward: 0.0,
        }
    }
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

    /// Scores of (prompt, response) sequences: the head applied to each last hidden state.
    pub fn scores(
        &self,
        system: &str,
        user: &str,
        image: Option<&grlhf_models::image_processor::RgbImage>,
        responses: &[Vec<i64>],
    ) -> Result<Vec<f32>, String> {
        let encoded = self.engine.encode(system, user, image)?;
        let prompts: Vec<MultimodalPrompt> = responses
            .iter()
            .map(|r| MultimodalPrompt {
                tokens: encoded.prompt.tokens.iter().chain(r).copied().collect(),
                grids: encoded.prompt.grids.clone(),
            })
            .collect();
        let pixels = encoded.pixel_values.as_ref().map(|p| {
            Tensor::cat(
                &(0..responses.len())
                    .map(|_| p.shallow_clone())
                    .collect::<Vec<_>>(),
                0,
            )
        });
        tch::no_grad(|| {
            let hidden = self
                .engine
                .model
                .hidden_states(&prompts, pixels.as_ref(), None)
                .map_err(|e| e.to_string())?;
            // Left padding: the last column is every sequence's last token.
            let last = hidden.select(1, hidden.size()[1] - 1);
            let scores = last
                .matmul(&self.score.tr())
                .squeeze_dim(1)
                .to_kind(Kind::Float);
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
        let rewards = scores
            .into_iter()
            .zip(&group.rollouts)
            .map(|(s, r)| {
                if r.is_complete() {
                    s
                } else {
                    self.config.incomplete_reward
                }
            })
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
