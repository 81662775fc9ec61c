//! A cost model fitted to a real run, so the simulator can replay that run's topology (or a
//! larger one) without models: per-token generation and training costs, per-group judging, and
//! weight publication per subscriber, each from the run's own busy spans.
//!
//! Fixed per-call and per-step parts are folded into the per-token ones (a run of one shape
//! cannot separate them); the fit therefore predicts runs of the same response length and batch
//! shape best.

use grlhf_actors::activity::Milestone;
use grlhf_actors::simulated::CostModel;

use crate::run::RunOutcome;
use crate::run_config::RunConfig;

/// The cost model of `outcome` (a real run of `config`).
pub fn fit_cost_model(config: &RunConfig, outcome: &RunOutcome) -> CostModel {
    let spans = outcome.activity.spans();
    let events = outcome.activity.events();
    let busy = |role: &str, kind: &str| -> f64 {
        spans
            .iter()
            .filter(|s| s.actor.split('-').next() == Some(role) && &*s.kind == kind)
            .map(|s| s.end - s.start)
            .sum()
    };
    let count = |m: Milestone| events.iter().filter(|e| e.milestone == m).count().max(1);
    let s = &outcome.summary;
    let samples = s.generated_samples.max(1) as f64;
    let response_tokens = (s.generated_tokens as f64 / samples).round().max(1.0) as usize;
    let trained_tokens: usize = outcome.steps.iter().map(|s| s.response_tokens).sum();
    let steps = outcome.steps.len().max(1) as f64;
    let subscribers = config.generator.count.max(1) as f64;
    // A generator's weight application holds it like generation does: charge it per token.
    let generate = busy("generator", "generate") + busy("generator", "sync");
    CostModel {
        response_tokens,
        generate_s_per_call: 0.0,
        generate_s_per_token: generate / s.generated_tokens.max(1) as f64,
        judge_s_per_group: busy("judge", "judge") / count(Milestone::Judged) as f64,
        judge_s_per_pair: 0.0,
        learn_s_per_step: 0.0,
        learn_s_per_token: busy("learner", "train") / trained_tokens.max(1) as f64,
        sync_s_per_subscriber: busy("learner", "sync") / steps / subscribers,
        weight_bytes: outcome.steps.last().map_or(0, |s| s.sync_bytes) / subscribers as u64,
    }
}
