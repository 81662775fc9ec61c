//! The generative-reward-model judge: grouped comparison.
//!
//! For a group of n responses it asks the GRM about every ordered pair (n(n−1) judgments, or
//! n(n−1)/2 with unordered pairs), all in one generation batch, parses each `\boxed{s1,s2}`,
//! and aggregates the score matrix into rewards (see [`crate::grouped_comparison`]).
//! Incomplete responses (no stop token) get 0 and are left out of the comparisons.
//! `single_comparison` is the paper's ablation: each response compared once, with one random
//! other response.

use grlhf_models::generation::GenerationConfig;
use grlhf_models::sampling::SamplingParams;
use grlhf_tasks::grm_format::{grm_user_message, GRM_SYSTEM_PROMPT};
use grlhf_tasks::score_parser::parse_scores;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::grouped_comparison::{aggregate, pairs, Aggregation, PairOrder};
use crate::judge::Judge;
use crate::protocol::{JudgeDetails, RolloutGroup};
use crate::vl_engine::VlEngine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrmJudgeConfig {
    pub pair_order: PairOrder,
    pub aggregation: Aggregation,
    /// Compare each response with one random other instead of the whole group.
    pub single_comparison: bool,
    pub max_new_tokens: usize,
    /// 0 = greedy judgments.
    pub temperature: f64,
    pub seed: u64,
}

impl Default for GrmJudgeConfig {
    fn default() -> Self {
        GrmJudgeConfig {
            pair_order: PairOrder::Ordered,
            aggregation: Aggregation::Mean,
            single_comparison: false,
            max_new_tokens: 64,
            temperature: 0.0,
            seed: 0,
        }
    }
}

pub struct GrmJudge {
    pub engine: VlEngine,
    pub config: GrmJudgeConfig,
    rng: ChaCha8Rng,
}

impl GrmJudge {
    pub fn new(engine: VlEngine, config: GrmJudgeConfig) -> GrmJudge {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        GrmJudge {
            engine,
            config,
            rng,
        }
    }

    fn comparisons(&mut self, included: &[bool]) -> Vec<(usize, usize)> {
        let n = included.len();
        if !self.config.single_comparison {
            return pairs(n, self.config.pair_order, included);
        }
        let members: Vec<usize> = (0..n).filter(|&i| included[i]).collect();
        members
            .iter()
            .filter_map(|&i| {
                let others: Vec<usize> = members.iter().copied().filter(|&j| j != i).collect();
                others.choose(&mut self.rng).map(|&j| (i, j))
            })
            .collect()
    }
}

impl Judge for GrmJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        let n = group.rollouts.len();
        let included: Vec<bool> = group.rollouts.iter().map(|r| r.is_complete()).collect();
        let comparisons = self.comparisons(&included);
        let mut details = JudgeDetails::default();
        // Sum and count of the scores response i received against j, over both A/B orders.
        let mut sums = vec![vec![0.0f32; n]; n];
        let mut counts = vec![vec![0u32; n]; n];
        if !comparisons.is_empty() {
            let image = group.prompt.image.as_deref();
            let encoded = comparisons
                .iter()
                .map(|&(i, j)| {
                    let user = grm_user_message(
                        &group.prompt.question,
                        &group.rollouts[i].text,
                        &group.rollouts[j].text,
                    );
                    self.engine.encode(GRM_SYSTEM_PROMPT, &user, image)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch: Vec<_> = encoded.iter().collect();
            let sampling = if self.config.temperature > 0.0 {
                SamplingParams {
                    temperature: self.config.temperature,
                    top_k: None,
                    top_p: None,
                    repetition_penalty: None,
                }
            } else {
                SamplingParams::greedy()
            };
            let generation = GenerationConfig {
                max_new_tokens: self.config.max_new_tokens,
                sampling,
                stop_token_ids: self.engine.stop_ids.clone(),
                seed: self.config.seed ^ group.prompt.uid,
                poll_every: None,
                cuda_graphs: false,
            };
            let outputs = self.engine.generate(&batch, &generation)?;
            for (&(i, j), output) in comparisons.iter().zip(&outputs) {
                details.judgments += 1;
                match parse_scores(&self.engine.decode(&output.tokens)) {
                    Ok((si, sj)) => {
                        sums[i][j] += si as f32;
                        counts[i][j] += 1;
                        sums[j][i] += sj as f32;
                        counts[j][i] += 1;
                    }
                    Err(_) => details.parse_failures += 1,
                }
            }
        }
        let scores: Vec<Vec<Option<f32>>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (counts[i][j] > 0).then(|| sums[i][j] / counts[i][j] as f32))
                    .collect()
            })
            .collect();
        let rewards = aggregate(&scores, &included, self.config.aggregation);
        details.pairwise = Some(scores);
        Ok((rewards, details))
    }
}
