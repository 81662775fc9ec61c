//! Measuring reward models on held-out data, the way the paper's Table 1 does:
//!
//! - **pairwise accuracy**: on each preference pair the reward model ranks the two responses;
//!   it is right when the human-preferred one (the oracle's label) gets the strictly higher score.
//!   A GRM judgment that does not parse counts as wrong. Every verdict is kept
//!   ([`PairVerdict`], saved as JSONL by the pipeline) so accuracies can be recomputed from them.
//! - **correlation with the oracle**: groups of candidate answers to held-out prompts are scored
//!   by each reward model — the score-only RM alone per answer, a GRM either once per answer
//!   against one random other (no grouped comparison) or against every other answer (grouped) —
//!   and the Pearson correlation of those rewards with the oracle's scores is reported.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use grlhf_actors::grm_judge::{GrmJudge, GrmJudgeConfig};
use grlhf_actors::judge::Judge;
use grlhf_actors::protocol::{PromptItem, Rollout, RolloutGroup};
use grlhf_actors::scalar_rm_judge::{ScalarRewardModel, ScalarRmConfig, ScalarRmJudge};
use grlhf_actors::vl_engine::{EncodedPrompt, VlEngine};
use grlhf_models::generation::{FinishReason, GenerationConfig};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::candidates::candidates;
use grlhf_tasks::grm_format::{grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT};
use grlhf_tasks::records::PreferenceRecord;
use grlhf_tasks::render::render;
use grlhf_tasks::score_parser::parse_scores;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::run::{to_rgb, world_eval_records};

/// One reward model's verdict on one held-out pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairVerdict {
    /// The reward model (`score_only_rm`, `grm`, `grm_sft`, `grm_rl`).
    pub model: String,
    /// The split (`pairs_test`, `pairs_ood_combo`, …).
    pub split: String,
    pub pair: usize,
    /// 1 or 2: the label.
    pub preferred: u8,
    /// The two scores; `None` when a GRM judgment did not parse.
    pub score_1: Option<f64>,
    pub score_2: Option<f64>,
    /// The GRM's judgment text (empty for the score-only RM).
    pub judgment: String,
}

impl PairVerdict {
    pub fn correct(&self) -> bool {
        match (self.score_1, self.score_2) {
            (Some(a), Some(b)) => (self.preferred == 1 && a > b) || (self.preferred == 2 && b > a),
            _ => false,
        }
    }
}

/// Accuracy over a set of verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PairAccuracy {
    pub pairs: usize,
    /// Share of verdicts with both scores (GRM: the judgment parsed).
    pub parsed: f64,
    pub accuracy: f64,
}

impl PairAccuracy {
    pub fn of(verdicts: &[PairVerdict]) -> PairAccuracy {
        let n = verdicts.len().max(1) as f64;
        PairAccuracy {
            pairs: verdicts.len(),
            parsed: verdicts
                .iter()
                .filter(|v| v.score_1.is_some() && v.score_2.is_some())
                .count() as f64
                / n,
            accuracy: verdicts.iter().filter(|v| v.correct()).count() as f64 / n,
        }
    }
}

/// The image of a pair: its world scene rendered, or its file.
pub fn pair_image(p: &PreferenceRecord) -> Result<Arc<RgbImage>> {
    match &p.world {
        Some(w) => to_rgb(&render(&w.scene)),
        None => Ok(Arc::new(RgbImage::open(&p.image)?)),
    }
}

/// Greedy GRM judgments of `pairs`.
pub fn grm_verdicts(
    engine: &VlEngine,
    model: &str,
    split: &str,
    pairs: &[PreferenceRecord],
    max_new_tokens: usize,
) -> Result<Vec<PairVerdict>> {
    let images: Vec<Arc<RgbImage>> = pairs.iter().map(pair_image).collect::<Result<_>>()?;
    grm_verdicts_with_images(engine, model, split, pairs, &images, max_new_tokens)
}

/// Greedy GRM judgments of `pairs`, each shown `images[i]` (the grounding check swaps or blanks
/// them).
pub fn grm_verdicts_with_images(
    engine: &VlEngine,
    model: &str,
    split: &str,
    pairs: &[PreferenceRecord],
    images: &[Arc<RgbImage>],
    max_new_tokens: usize,
) -> Result<Vec<PairVerdict>> {
    if images.len() != pairs.len() {
        return Err(anyhow!("{} images for {} pairs", images.len(), pairs.len()));
    }
    let config = GenerationConfig {
        stop_token_ids: engine.stop_ids.clone(),
        ..GenerationConfig::greedy(max_new_tokens)
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (c, (chunk, chunk_images)) in pairs.chunks(16).zip(images.chunks(16)).enumerate() {
        let mut encoded = Vec::new();
        for (p, image) in chunk.iter().zip(chunk_images) {
            let user = grm_user_message(&p.question, &p.response_1, &p.response_2);
            encoded.push(
                engine
                    .encode(GRM_SYSTEM_PROMPT, &user, Some(image.as_ref()))
                    .map_err(|e| anyhow!(e))?,
            );
        }
        let refs: Vec<_> = encoded.iter().collect();
        let outputs = engine.generate(&refs, &config).map_err(|e| anyhow!(e))?;
        for (k, (p, o)) in chunk.iter().zip(outputs).enumerate() {
            let judgment = engine.decode(&o.tokens);
            let parsed = parse_scores(&judgment).ok();
            out.push(PairVerdict {
                model: model.to_string(),
                split: split.to_string(),
                pair: c * 16 + k,
                preferred: p.preferred,
                score_1: parsed.map(|s| s.0 as f64),
                score_2: parsed.map(|s| s.1 as f64),
                judgment,
            });
        }
    }
    Ok(out)
}

fn response_tokens(engine: &VlEngine, text: &str) -> Result<Vec<i64>> {
    engine.response_tokens(text).map_err(|e| anyhow!(e))
}

/// Score-only reward model scores of `pairs`.
pub fn scalar_verdicts(
    rm: &ScalarRewardModel,
    model: &str,
    split: &str,
    pairs: &[PreferenceRecord],
) -> Result<Vec<PairVerdict>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (c, chunk) in pairs.chunks(8).enumerate() {
        let mut encoded: Vec<EncodedPrompt> = Vec::new();
        let mut responses = Vec::new();
        for p in chunk {
            encoded.push(
                rm.engine
                    .encode(
                        grlhf_tasks::grm_format::POLICY_SYSTEM_PROMPT,
                        &policy_user_message(&p.question),
                        Some(pair_image(p)?.as_ref()),
                    )
                    .map_err(|e| anyhow!(e))?,
            );
            responses.push((
                response_tokens(&rm.engine, &p.response_1)?,
                response_tokens(&rm.engine, &p.response_2)?,
            ));
        }
        let mut items: Vec<(&EncodedPrompt, &[i64])> = Vec::new();
        for (e, r) in encoded.iter().zip(&responses) {
            items.push((e, r.0.as_slice()));
            items.push((e, r.1.as_slice()));
        }
        let scores = rm.score_items(&items).map_err(|e| anyhow!(e))?;
        for (k, p) in chunk.iter().enumerate() {
            out.push(PairVerdict {
                model: model.to_string(),
                split: split.to_string(),
                pair: c * 8 + k,
                preferred: p.preferred,
                score_1: Some(scores[2 * k] as f64),
                score_2: Some(scores[2 * k + 1] as f64),
                judgment: String::new(),
            });
        }
    }
    Ok(out)
}

/// Pearson correlation; `None` when either side is constant or there are fewer than 2 points.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return None;
    }
    let mx = xs[..n].iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (xs[i] - mx, ys[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Held-out groups of candidate answers with their oracle scores.
pub struct CandidateGroup {
    pub prompt: Arc<PromptItem>,
    pub user: String,
    pub answers: Vec<String>,
    pub oracle: Vec<f64>,
}

/// `count` groups of up to `n` distinct candidate answers to the world's evaluation prompts.
pub fn candidate_groups(seed: u64, count: usize, n: usize) -> Result<Vec<CandidateGroup>> {
    let per_family = count.div_ceil(7).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC0FFEE);
    let mut groups = Vec::new();
    for (i, record) in world_eval_records(seed, per_family)?
        .into_iter()
        .take(count)
        .enumerate()
    {
        let world = record.world.clone().expect("world records");
        let mut pool = candidates(&world.scene, &world.task, &mut rng);
        pool.shuffle(&mut rng);
        pool.truncate(n);
        if pool.len() < 2 {
            continue;
        }
        let oracle = pool
            .iter()
            .map(|c| grlhf_tasks::oracle::score(&world.scene, &world.task, &c.text).total)
            .collect();
        groups.push(CandidateGroup {
            prompt: Arc::new(PromptItem {
                uid: i as u64,
                id: record.id.clone(),
                question: record.question.clone(),
                image: Some(to_rgb(&render(&world.scene))?),
                reference: record.reference.clone(),
                world: Some(Arc::new(world)),
                admitted_at: 0,
            }),
            user: policy_user_message(&record.question),
            answers: pool.into_iter().map(|c| c.text).collect(),
            oracle,
        });
    }
    Ok(groups)
}

fn rollout_group(engine: &VlEngine, group: &CandidateGroup) -> Result<RolloutGroup> {
    let rollouts = group
        .answers
        .iter()
        .map(|text| {
            Ok(Rollout {
                tokens: response_tokens(engine, text)?,
                logprobs: vec![],
                finish_reason: FinishReason::Stop,
                text: text.clone(),
                policy_mask: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RolloutGroup {
        prompt: group.prompt.clone(),
        system: grlhf_tasks::grm_format::POLICY_SYSTEM_PROMPT.to_string(),
        user: group.user.clone(),
        prompt_tokens: vec![],
        rollouts,
        policy_version: 0,
        generator: "candidates".into(),
        generate_ms: 0.0,
        temperature: 1.0,
    })
}

fn rollout_groups(engine: &VlEngine, groups: &[CandidateGroup]) -> Result<Vec<RolloutGroup>> {
    groups.iter().map(|g| rollout_group(engine, g)).collect()
}

/// Pearson correlation of a judge's rewards with the oracle over all groups' answers.
fn correlate(
    judge: &mut dyn Judge,
    rollouts: &[RolloutGroup],
    groups: &[CandidateGroup],
) -> Result<Option<f64>> {
    let (mut rewards, mut oracle) = (Vec::new(), Vec::new());
    for (group, g) in rollouts.iter().zip(groups) {
        let (r, _) = judge.score(group).map_err(|e| anyhow!(e))?;
        rewards.extend(r.into_iter().map(f64::from));
        oracle.extend(&g.oracle);
    }
    Ok(pearson(&rewards, &oracle))
}

/// Correlations of one GRM: without grouped comparison (each answer against one random other)
/// and with it (against every other answer, both A/B orders).
pub fn grm_correlations(
    engine: VlEngine,
    groups: &[CandidateGroup],
    max_new_tokens: usize,
    seed: u64,
) -> Result<BTreeMap<String, Option<f64>>> {
    let rollouts = rollout_groups(&engine, groups)?;
    let grouped = GrmJudgeConfig {
        max_new_tokens,
        seed,
        ..GrmJudgeConfig::default()
    };
    let mut judge = GrmJudge::new(
        engine,
        GrmJudgeConfig {
            single_comparison: true,
            ..grouped.clone()
        },
    );
    let mut out = BTreeMap::new();
    out.insert(
        "single".to_string(),
        correlate(&mut judge, &rollouts, groups)?,
    );
    judge.config = grouped;
    out.insert(
        "grouped".to_string(),
        correlate(&mut judge, &rollouts, groups)?,
    );
    Ok(out)
}

/// Correlation of the score-only RM (each answer scored alone).
pub fn scalar_correlation(rm: ScalarRewardModel, groups: &[CandidateGroup]) -> Result<Option<f64>> {
    let rollouts = rollout_groups(&rm.engine, groups)?;
    let mut judge = ScalarRmJudge {
        model: rm,
        config: ScalarRmConfig::default(),
    };
    correlate(&mut judge, &rollouts, groups)
}
