//! `family_exact_match`: an evaluation metric. 1 when a finished answer equals the prompt's
//! reference answer (case, surrounding space and a final full stop aside), else 0; reported per
//! world family like every metric.
//!
//! ```toml
//! [evaluator]
//! metric = "family_exact_match"
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grlhf_actors::eval_metric::AnswerMetric;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::registry::{MetricContext, NoSettings, Registry};

/// Answers scored so far (for tests).
pub static ANSWERS_SCORED: AtomicU64 = AtomicU64::new(0);

pub struct FamilyExactMatch;

/// The form two answers are compared in.
pub fn normalised(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .join(" ")
        .to_lowercase()
        .trim_end_matches('.')
        .to_string()
}

impl AnswerMetric for FamilyExactMatch {
    fn score(&self, prompt: &PromptSpec, answer: &str, finished: bool) -> Result<f64, String> {
        ANSWERS_SCORED.fetch_add(1, Ordering::Relaxed);
        let reference = prompt
            .reference
            .as_deref()
            .ok_or_else(|| format!("family_exact_match: prompt {} has no reference", prompt.id))?;
        Ok(f64::from(u8::from(
            finished && normalised(answer) == normalised(reference),
        )))
    }
}

pub fn register(registry: &mut Registry) {
    registry.register_metric(
        "family_exact_match",
        "1 when the finished answer equals the reference (per family)",
        |_: NoSettings, _context: MetricContext| {
            Ok(Arc::new(FamilyExactMatch) as Arc<dyn AnswerMetric>)
        },
    );
}
