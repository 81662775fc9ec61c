//! What each simulated role costs, and the per-step stage times and ideal bounds that follow.
//!
//! Costs are linear in the work: a generation call costs a fixed part plus a part per generated
//! token (summed over the call's responses); judging a group costs a fixed part plus a part per
//! compared pair (n(n−1)/2 pairs for a grouped comparison); a learner step costs a fixed part
//! plus a part per trained token, and publishing weights a part per subscriber. A cost model is
//! written by hand (`[bench.simulate]`) or fitted to a real run (`grlhf bench` writes
//! `profile.json`).

use serde::{Deserialize, Serialize};

/// Seconds per unit of work, per role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostModel {
    /// Tokens in every simulated response.
    pub response_tokens: usize,
    /// Seconds per generation call (one batch of `generator.batch_prompts` prompts × n).
    pub generate_s_per_call: f64,
    /// Seconds per generated token (all responses of a call together).
    pub generate_s_per_token: f64,
    /// Seconds per judged group.
    pub judge_s_per_group: f64,
    /// Seconds per compared pair of responses.
    pub judge_s_per_pair: f64,
    /// Seconds per learner step.
    pub learn_s_per_step: f64,
    /// Seconds per trained token.
    pub learn_s_per_token: f64,
    /// Seconds to publish weights to one subscriber (on the learner's side).
    pub sync_s_per_subscriber: f64,
    /// Bytes a weight publication reports (the simulated model's size).
    pub weight_bytes: u64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            response_tokens: 64,
            generate_s_per_call: 0.0,
            generate_s_per_token: 1e-4,
            judge_s_per_group: 0.0,
            judge_s_per_pair: 1e-3,
            learn_s_per_step: 0.0,
            learn_s_per_token: 1e-4,
            sync_s_per_subscriber: 0.0,
            weight_bytes: 0,
        }
    }
}

/// The shape of a learner step that the stage times depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    /// Groups per learner step (B).
    pub batch_groups: usize,
    /// Responses per group (n).
    pub group_size: usize,
    /// Prompts per generation call.
    pub batch_prompts: usize,
    pub generators: usize,
    pub judges: usize,
    /// Receivers of every weight version (the generators).
    pub subscribers: usize,
    /// η (0 in sync mode): at most (η + 1)·B groups are admitted and not yet trained.
    pub max_staleness: u64,
}

/// Seconds per learner step, per stage, with each stage's work spread over its instances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub generate_s: f64,
    pub judge_s: f64,
    /// Training plus weight publication (both hold the learner).
    pub learn_s: f64,
    /// The staleness window: at most (η + 1)·B groups are in flight, and each stays in flight
    /// at least one generation call + one judging + one learner step, so (Little's law) a step
    /// takes at least that time / (η + 1).
    pub window_s: f64,
}

impl StageTimes {
    /// Lockstep: every stage waits for the one before it.
    pub fn lockstep_step_s(&self) -> f64 {
        self.generate_s + self.judge_s + self.learn_s
    }

    /// Perfect overlap: the slowest stage sets the pace, unless the staleness window is
    /// slower still.
    pub fn overlap_step_s(&self) -> f64 {
        self.stages_overlap_step_s().max(self.window_s)
    }

    /// The slowest stage alone: perfect overlap with a staleness window wide enough.
    pub fn stages_overlap_step_s(&self) -> f64 {
        self.generate_s.max(self.judge_s).max(self.learn_s)
    }

    /// What sets the pace under perfect overlap.
    pub fn bottleneck(&self) -> &'static str {
        let m = self.overlap_step_s();
        if m == self.learn_s {
            "learner"
        } else if m == self.generate_s {
            "generator"
        } else if m == self.judge_s {
            "judge"
        } else {
            "staleness window"
        }
    }
}

impl CostModel {
    pub fn pairs(group_size: usize) -> usize {
        group_size * group_size.saturating_sub(1) / 2
    }

    /// Seconds for one generation call of `prompts` prompts, `n` responses each.
    pub fn generate_s(&self, prompts: usize, n: usize) -> f64 {
        self.generate_s_per_call
            + self.generate_s_per_token * (prompts * n * self.response_tokens) as f64
    }

    /// Seconds to judge one group of `n`.
    pub fn judge_s(&self, n: usize) -> f64 {
        self.judge_s_per_group + self.judge_s_per_pair * Self::pairs(n) as f64
    }

    /// Seconds for a learner step over `tokens` trained tokens.
    pub fn learn_s(&self, tokens: usize) -> f64 {
        self.learn_s_per_step + self.learn_s_per_token * tokens as f64
    }

    /// Seconds to publish one version to `subscribers`.
    pub fn sync_s(&self, subscribers: usize) -> f64 {
        self.sync_s_per_subscriber * subscribers as f64
    }

    /// The analytic per-step stage times of `shape` (generation calls are full: the batch's
    /// prompts in calls of `batch_prompts`).
    pub fn stage_times(&self, shape: &StepShape) -> StageTimes {
        let b = shape.batch_groups;
        let n = shape.group_size;
        let calls = b.div_ceil(shape.batch_prompts.max(1));
        let generate = calls as f64 * self.generate_s_per_call
            + self.generate_s_per_token * (b * n * self.response_tokens) as f64;
        let learn = self.learn_s(b * n * self.response_tokens) + self.sync_s(shape.subscribers);
        let in_flight = self.generate_s(shape.batch_prompts.min(b), n) + self.judge_s(n) + learn;
        StageTimes {
            generate_s: generate / shape.generators.max(1) as f64,
            judge_s: b as f64 * self.judge_s(n) / shape.judges.max(1) as f64,
            learn_s: learn,
            window_s: in_flight / (shape.max_staleness + 1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_times_and_bounds_are_the_analytic_ones() {
        let cost = CostModel {
            response_tokens: 10,
            generate_s_per_call: 0.5,
            generate_s_per_token: 0.01,
            judge_s_per_group: 0.1,
            judge_s_per_pair: 0.02,
            learn_s_per_step: 1.0,
            learn_s_per_token: 0.001,
            sync_s_per_subscriber: 0.05,
            weight_bytes: 0,
        };
        let shape = StepShape {
            batch_groups: 8,
            group_size: 4,
            batch_prompts: 3,
            generators: 2,
            judges: 4,
            subscribers: 2,
            max_staleness: 1,
        };
        let t = cost.stage_times(&shape);
        // 3 calls × 0.5 + 8·4·10 tokens × 0.01 = 4.7 s over 2 generators.
        assert!((t.generate_s - 2.35).abs() < 1e-12);
        // 8 groups × (0.1 + 6 pairs × 0.02) = 1.76 s over 4 judges.
        assert!((t.judge_s - 0.44).abs() < 1e-12);
        // 1 + 320 × 0.001 + 2 × 0.05.
        assert!((t.learn_s - 1.42).abs() < 1e-12);
        // In flight at least: a call of 3 prompts (0.5 + 120 tokens × 0.01) + one group's
        // judging (0.22) + a step (1.42) = 3.34 s, over η + 1 = 2.
        assert!((t.window_s - 1.67).abs() < 1e-12);
        assert!((t.lockstep_step_s() - 4.21).abs() < 1e-12);
        assert_eq!(t.overlap_step_s(), t.generate_s);
        assert_eq!(t.bottleneck(), "generator");
        let narrow = cost.stage_times(&StepShape {
            generators: 8,
            max_staleness: 0,
            ..shape
        });
        assert!((narrow.window_s - 3.34).abs() < 1e-12);
        assert_eq!(narrow.bottleneck(), "staleness window");
    }
}
