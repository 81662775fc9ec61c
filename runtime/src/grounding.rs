//! The grounding check: does a vision-language model use its image?
//!
//! A multimodal model can score well above chance on the world's questions from answer priors
//! alone ("there are 2 objects", "no, there is no …"), and RL on top of such a model cannot learn
//! anything about the scene. Two measurements tell a seeing model from a blind one:
//!
//! - **image swap**: every held-out prompt (policy) or preference pair (GRM) is asked twice, with
//!   its own scene and with another scene's image; the share of greedy answers (or verdicts) that
//!   change. A model that ignores its image changes none.
//! - **blind twin**: the same warm start trained and evaluated with every image replaced by a
//!   blank one (the scene's background). What the real model scores beyond its twin is what the
//!   image is worth to it.
//!
//! For a GRM the swap is also read where it must matter: pairs whose oracle preference changes
//! when judged against the other scene (`content_decided_changed`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use grlhf_actors::eval_metric::OracleMetric;
use grlhf_actors::evaluator::{evaluate_prompts, EvalStats};
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::vl_engine::VlEngine;
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::records::PreferenceRecord;
use grlhf_tasks::render::render_blank;
use serde::{Deserialize, Serialize};

use crate::reward_model_eval::{grm_verdicts_with_images, pair_image, PairAccuracy, PairVerdict};
use crate::run::to_rgb;

/// One model's grounding (`report.json`: `grounding.policy`, `grounding.grm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grounding {
    /// Share of held-out greedy answers (policy) or verdicts (GRM: which response wins, or no
    /// parse) that change when each image is swapped for another scene's.
    pub image_swap_changed: f64,
    /// The model's held-out score with its true images: the policy's mean oracle score (0–100),
    /// the GRM's pairwise accuracy (0–1).
    pub average: f64,
    /// What `average` measures: `oracle_score` (0–100) or `pairwise_accuracy` (0–1).
    pub metric: String,
    /// The blind twin's score on the same items with blank images (`None`: no twin trained).
    pub blind_average: Option<f64>,
    /// Policy: the average per task family, and the blind twin's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_family: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blind_per_family: BTreeMap<String, f64>,
    /// Policy: the share of answers that change under the swap, per task family.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub swap_changed_per_family: BTreeMap<String, f64>,
    /// GRM: among pairs whose oracle preference changes when judged against the swapped scene,
    /// the share whose verdict changed (`None` for a policy, or when no pair is such).
    pub content_decided_changed: Option<f64>,
    pub content_decided_pairs: usize,
    /// Prompts or pairs measured.
    pub items: usize,
    /// `image_swap_changed` ≥ the configured minimum.
    pub sees: bool,
}

impl Grounding {
    /// What the image is worth: the score beyond the blind twin's.
    pub fn gain_over_blind(&self) -> Option<f64> {
        self.blind_average.map(|b| self.average - b)
    }

    /// One line for the terminal, e.g. `image swap changes 41% of answers; oracle score 52.3 vs
    /// blind twin 40.1 (+12.2)`.
    pub fn line(&self) -> String {
        let (what, digits) = if self.metric == POLICY_METRIC {
            ("answers", 1)
        } else {
            ("verdicts", 3)
        };
        let mut line = format!(
            "image swap changes {:.0}% of {what}",
            self.image_swap_changed * 100.0
        );
        if let Some(c) = self.content_decided_changed {
            line.push_str(&format!(
                " ({:.0}% where the scene decides the preference)",
                c * 100.0
            ));
        }
        let metric = self.metric.replace('_', " ");
        line.push_str(&format!("; {metric} {:.digits$}", self.average));
        if let (Some(b), Some(g)) = (self.blind_average, self.gain_over_blind()) {
            line.push_str(&format!(" vs blind twin {b:.digits$} ({g:+.digits$})"));
        }
        line
    }
}

/// `metric` of a policy's grounding: the mean oracle score, 0–100.
pub const POLICY_METRIC: &str = "oracle_score";
/// `metric` of a GRM's grounding: pairwise accuracy, 0–1.
pub const GRM_METRIC: &str = "pairwise_accuracy";

/// A blank (background-only) image of `image`'s size: what a blind twin sees.
pub fn blank_like(image: &RgbImage) -> Result<Arc<RgbImage>> {
    to_rgb(&render_blank(image.width, image.height))
}

/// Blank images of the sizes of `images`.
pub fn blank_images(images: &[Arc<RgbImage>]) -> Result<Vec<Arc<RgbImage>>> {
    images.iter().map(|i| blank_like(i)).collect()
}

/// `prompts` with every image replaced by a blank one of the same size (the same image tokens).
pub fn blank_prompts(prompts: &[PromptSpec]) -> Result<Vec<PromptSpec>> {
    prompts
        .iter()
        .map(|p| {
            Ok(PromptSpec {
                image: match &p.image {
                    Some(image) => Some(blank_like(image)?),
                    None => None,
                },
                ..p.clone()
            })
        })
        .collect()
}

/// The index whose image item `i` gets in the swap: the next item with a different image.
fn swap_partner<T>(items: &[T], i: usize, same: impl Fn(&T, &T) -> bool) -> usize {
    (1..items.len())
        .map(|k| (i + k) % items.len())
        .find(|&j| !same(&items[i], &items[j]))
        .unwrap_or(i)
}

/// `prompts` with each image swapped for another prompt's (a different scene).
pub fn swapped_prompts(prompts: &[PromptSpec]) -> Vec<PromptSpec> {
    (0..prompts.len())
        .map(|i| {
            let j = swap_partner(prompts, i, |a, b| a.image == b.image);
            PromptSpec {
                image: prompts[j].image.clone(),
                ..prompts[i].clone()
            }
        })
        .collect()
}

/// Share of positions where `a` and `b` differ.
fn changed_share<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    (0..n).filter(|&i| a[i] != b[i]).count() as f64 / n as f64
}

fn family_of(p: &PromptSpec) -> String {
    p.world
        .as_ref()
        .map(|w| w.task.family().name().to_string())
        .unwrap_or_else(|| "all".to_string())
}

/// Settings of a grounding measurement.
#[derive(Debug, Clone, Copy)]
pub struct GroundingSettings {
    pub max_new_tokens: usize,
    /// A model whose `image_swap_changed` is below this is blind.
    pub min_swap_changed: f64,
}

/// The policy's grounding on held-out world prompts; `blind_twin`, when given, is evaluated on
/// the same prompts with blank images.
pub fn policy_grounding(
    engine: &VlEngine,
    blind_twin: Option<&VlEngine>,
    prompts: &[PromptSpec],
    settings: GroundingSettings,
) -> Result<Grounding> {
    let eval = |engine: &VlEngine, prompts: &[PromptSpec]| -> Result<EvalStats> {
        evaluate_prompts(
            engine,
            prompts,
            &OracleMetric,
            settings.max_new_tokens,
            16,
            0,
        )
        .map_err(|e| anyhow!(e))
    };
    let seen = eval(engine, prompts)?;
    let swapped = eval(engine, &swapped_prompts(prompts))?;
    let mut swap_per_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        let entry = swap_per_family.entry(family_of(p)).or_default();
        entry.0 += usize::from(seen.answers[i] != swapped.answers[i]);
        entry.1 += 1;
    }
    let blind = match blind_twin {
        Some(twin) => Some(eval(twin, &blank_prompts(prompts)?)?),
        None => None,
    };
    let percent =
        |m: &BTreeMap<String, f64>| m.iter().map(|(k, v)| (k.clone(), v * 100.0)).collect();
    let image_swap_changed = changed_share(&seen.answers, &swapped.answers);
    Ok(Grounding {
        image_swap_changed,
        average: seen.mean * 100.0,
        metric: POLICY_METRIC.to_string(),
        blind_average: blind.as_ref().map(|b| b.mean * 100.0),
        per_family: percent(&seen.per_family),
        blind_per_family: blind
            .as_ref()
            .map(|b| percent(&b.per_family))
            .unwrap_or_default(),
        swap_changed_per_family: swap_per_family
            .into_iter()
            .map(|(k, (changed, n))| (k, changed as f64 / n as f64))
            .collect(),
        content_decided_changed: None,
        content_decided_pairs: 0,
        items: prompts.len(),
        sees: image_swap_changed >= settings.min_swap_changed,
    })
}

/// Which response a verdict prefers: 1, 2, 0 for a tie, `None` when it did not parse.
fn winner(v: &PairVerdict) -> Option<u8> {
    match (v.score_1, v.score_2) {
        (Some(a), Some(b)) if a > b => Some(1),
        (Some(a), Some(b)) if b > a => Some(2),
        (Some(_), Some(_)) => Some(0),
        _ => None,
    }
}

/// The oracle's preference between a pair's responses judged against `scene`: 1, 2 or 0 (tie);
/// `None` when the question does not apply to that scene (it names a cell or object the scene
/// lacks), so the oracle has no answer to compare with.
fn oracle_winner(p: &PreferenceRecord, scene: &grlhf_tasks::scene::Scene) -> Option<u8> {
    let w = p.world.as_ref()?;
    w.task.validate(scene).ok()?;
    let s1 = grlhf_tasks::oracle::score(scene, &w.task, &p.response_1).total;
    let s2 = grlhf_tasks::oracle::score(scene, &w.task, &p.response_2).total;
    Some(if s1 > s2 {
        1
    } else if s2 > s1 {
        2
    } else {
        0
    })
}

/// The GRM's grounding on held-out world pairs; `blind_twin`, when given, judges the same pairs
/// with blank images.
pub fn grm_grounding(
    engine: &VlEngine,
    blind_twin: Option<&VlEngine>,
    pairs: &[PreferenceRecord],
    settings: GroundingSettings,
) -> Result<Grounding> {
    let images: Vec<Arc<RgbImage>> = pairs.iter().map(pair_image).collect::<Result<_>>()?;
    let partner: Vec<usize> = (0..pairs.len())
        .map(|i| swap_partner(&images, i, |a, b| a == b))
        .collect();
    let swapped_images: Vec<Arc<RgbImage>> = partner.iter().map(|&j| images[j].clone()).collect();
    let judge = |engine: &VlEngine, images: &[Arc<RgbImage>]| {
        grm_verdicts_with_images(engine, "grm", "", pairs, images, settings.max_new_tokens)
    };
    let seen = judge(engine, &images)?;
    let swapped = judge(engine, &swapped_images)?;
    let seen_winners: Vec<Option<u8>> = seen.iter().map(winner).collect();
    let swapped_winners: Vec<Option<u8>> = swapped.iter().map(winner).collect();
    // Pairs whose preference the scene decides: the oracle's order changes with the image.
    let mut decided = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let other = pairs[partner[i]].world.as_ref().map(|w| &w.scene);
        if let (Some(own), Some(other)) = (p.world.as_ref().map(|w| &w.scene), other) {
            // Only pairs the oracle can judge against both scenes, whose order the scene flips.
            if let (Some(a), Some(b)) = (oracle_winner(p, own), oracle_winner(p, other)) {
                if a != b {
                    decided.push(i);
                }
            }
        }
    }
    let decided_changed = decided
        .iter()
        .filter(|&&i| seen_winners[i] != swapped_winners[i])
        .count();
    let blind = match blind_twin {
        Some(twin) => Some(PairAccuracy::of(&judge(twin, &blank_images(&images)?)?).accuracy),
        None => None,
    };
    let image_swap_changed = changed_share(&seen_winners, &swapped_winners);
    Ok(Grounding {
        image_swap_changed,
        average: PairAccuracy::of(&seen).accuracy,
        metric: GRM_METRIC.to_string(),
        blind_average: blind,
        content_decided_changed: (!decided.is_empty())
            .then(|| decided_changed as f64 / decided.len() as f64),
        content_decided_pairs: decided.len(),
        items: pairs.len(),
        sees: image_swap_changed >= settings.min_swap_changed,
        ..Grounding::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_partner_skips_items_with_the_same_image() {
        let items = [1, 1, 2, 3];
        assert_eq!(swap_partner(&items, 0, |a, b| a == b), 2);
        assert_eq!(swap_partner(&items, 1, |a, b| a == b), 2);
        assert_eq!(swap_partner(&items, 3, |a, b| a == b), 0);
        // Nothing else to swap with: the item keeps its own image (and cannot count as changed).
        assert_eq!(swap_partner(&[7, 7], 0, |a, b| a == b), 0);
    }

    #[test]
    fn changed_share_counts_differing_positions() {
        assert_eq!(
            changed_share(&["a", "b", "c", "d"], &["a", "x", "c", "y"]),
            0.5
        );
        assert_eq!(changed_share::<u8>(&[], &[]), 0.0);
    }
}
