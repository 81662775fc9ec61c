//! Rule judges: rewards computed from (prompt, response, reference) without a model.
//!
//! - `grm_preference` — stage 1 of the method: the response is a GRM judgment of a preference
//!   pair and the reference is the preferred side ("1" or "2"); reward 1 if the box gives the
//!   preferred response the strictly higher score, else 0 (also on any parse failure or an
//!   unfinished response).
//! - `oracle` — the embedded world's oracle score / 10 (for infrastructure tests and
//!   evaluation; the pipeline's policy stage uses the GRM, never this).
//! - `reference_overlap` — word-level F1 against the reference answer, of the text as generated
//!   (a dense signal: it is what lets a model trained from scratch improve within a minute, so
//!   the runtime's tests and smoke configs use it).
//!
//! Under `grm_preference` and `oracle`, unfinished responses (no stop token) get 0.

use std::collections::HashMap;

use grlhf_tasks::score_parser::parse_scores;
use serde::{Deserialize, Serialize};

use crate::judge::Judge;
use crate::protocol::{JudgeDetails, PromptItem, Rollout, RolloutGroup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    GrmPreference,
    Oracle,
    ReferenceOverlap,
}

pub struct RuleJudge {
    pub rule: Rule,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Word-level F1 of `response` against `reference` (multiset overlap).
pub fn overlap_f1(response: &str, reference: &str) -> f32 {
    let (r, g) = (words(response), words(reference));
    if r.is_empty() || g.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for w in &g {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in &r {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f32 / r.len() as f32;
    let rc = common as f32 / g.len() as f32;
    2.0 * p * rc / (p + rc)
}

impl RuleJudge {
    fn reward(
        &self,
        prompt: &PromptItem,
        rollout: &Rollout,
        details: &mut JudgeDetails,
    ) -> Result<f32, String> {
        if !rollout.is_complete() && self.rule != Rule::ReferenceOverlap {
            return Ok(0.0);
        }
        match self.rule {
            Rule::GrmPreference => {
                details.judgments += 1;
                let preferred = prompt
                    .reference
                    .as_deref()
                    .ok_or("grm_preference needs a reference (1 or 2)")?;
                match parse_scores(&rollout.text) {
                    Ok((s1, s2)) => Ok(match preferred.trim() {
                        "1" => (s1 > s2) as u8 as f32,
                        "2" => (s2 > s1) as u8 as f32,
                        other => {
                            return Err(format!("grm_preference reference `{other}` is not 1 or 2"))
                        }
                    }),
                    Err(_) => {
                        details.parse_failures += 1;
                        Ok(0.0)
                    }
                }
            }
            Rule::Oracle => {
                let world = prompt
                    .world
                    .as_ref()
                    .ok_or("the oracle rule needs embedded-world prompts")?;
                Ok(
                    grlhf_tasks::oracle::score(&world.scene, &world.task, &rollout.text).total
                        as f32
                        / 10.0,
                )
            }
            Rule::ReferenceOverlap => {
                let reference = prompt
                    .reference
                    .as_deref()
                    .ok_or("reference_overlap needs a reference")?;
                Ok(overlap_f1(&rollout.text, reference))
            }
        }
    }
}

impl Judge for RuleJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        let mut details = JudgeDetails::default();
        let rewards = group
            .rollouts
            .iter()
            .map(|r| self.reward(&group.prompt, r, &mut details))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rewards, details))
    }
}
