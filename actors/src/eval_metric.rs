//! Evaluation metrics: how the held-out evaluator scores a greedy answer. Built in: the embedded
//! world's oracle (`oracle`) and word F1 with the reference (`reference_overlap`); a user's crate
//! registers its own kind ([`crate::registry`]) and a run chooses it with
//! `[evaluator] metric = …`. Whatever the metric, the evaluator also keeps its reward-hacking
//! watch (self-praise, words beyond need, safe requests refused) on world prompts.

use crate::prompt_source::PromptSpec;
use crate::rule_judge::overlap_f1;

/// Scores one answer.
pub trait AnswerMetric: Send + Sync {
    /// The score of `answer` to `prompt`, 0 to 1 by convention; `finished`: the answer ended
    /// with a stop token. An error (the metric cannot score this prompt) fails the evaluation.
    fn score(&self, prompt: &PromptSpec, answer: &str, finished: bool) -> Result<f64, String>;

    /// The group the prompt's score is reported under (`per_family`): the world task's family,
    /// else `all`.
    fn family(&self, prompt: &PromptSpec) -> String {
        prompt
            .world
            .as_ref()
            .map(|w| w.task.family().name().to_string())
            .unwrap_or_else(|| "all".to_string())
    }
}

/// The world's oracle score / 10; an unfinished answer scores 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct OracleMetric;

impl AnswerMetric for OracleMetric {
    fn score(&self, prompt: &PromptSpec, answer: &str, finished: bool) -> Result<f64, String> {
        let world = prompt
            .world
            .as_ref()
            .ok_or("the oracle metric needs embedded-world prompts")?;
        Ok(if finished {
            grlhf_tasks::oracle::score(&world.scene, &world.task, answer).total / 10.0
        } else {
            0.0
        })
    }
}

/// Word F1 with the prompt's reference answer (0 without one).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceOverlapMetric;

impl AnswerMetric for ReferenceOverlapMetric {
    fn score(&self, prompt: &PromptSpec, answer: &str, _finished: bool) -> Result<f64, String> {
        Ok(overlap_f1(answer, prompt.reference.as_deref().unwrap_or("")) as f64)
    }
}
