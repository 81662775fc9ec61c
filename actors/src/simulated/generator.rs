//! A rollout engine that holds no model: it spends the cost model's generation time on the
//! generator's device thread and returns n token-sized rollouts per prompt. The real
//! [`crate::generator::Generator`] drives it, so simulated generators take, hold and hand on
//! prompts, and apply weights, exactly as real ones do.

use std::time::{Duration, Instant};

use grlhf_models::generation::FinishReason;
use tch::Tensor;

use crate::error::ActorError;
use crate::prompt_source::PromptSpec;
use crate::protocol::Rollout;
use crate::rollout_engine::{Conversation, GeneratedGroup, GeneratorConfig, RolloutEngine};
use crate::simulated::CostModel;

/// n rollouts of `tokens` tokens each, sized like real ones (ids, log-probs and text).
pub fn simulated_rollouts(n: usize, tokens: usize, seed: u64) -> Vec<Rollout> {
    (0..n)
        .map(|i| Rollout {
            tokens: (0..tokens as i64).map(|t| (t + i as i64) % 1000).collect(),
            logprobs: vec![-1.0; tokens],
            finish_reason: FinishReason::Stop,
            text: format!("{seed}-{i} ") + &"tok ".repeat(tokens),
            policy_mask: None,
        })
        .collect()
}

/// Sleeps until `seconds` after `from` (a deadline, so time spent around the wait is not added).
/// Simulated engines run on their own device threads, so an OS sleep is exact to well under a
/// millisecond, where tokio's timer would round up to whole milliseconds.
pub fn spend(from: Instant, seconds: f64) {
    if seconds > 0.0 {
        let deadline = from + Duration::from_secs_f64(seconds);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Generation that costs what the cost model says.
pub struct SimRolloutEngine {
    pub cost: CostModel,
}

impl RolloutEngine for SimRolloutEngine {
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        _config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        let started = Instant::now();
        let groups = (0..prompts.len() as u64)
            .map(|k| {
                let rollouts = simulated_rollouts(n, self.cost.response_tokens, seed + k);
                (vec![0; 32], rollouts)
            })
            .collect();
        spend(started, self.cost.generate_s(prompts.len(), n));
        Ok(groups)
    }

    /// Simulated updates carry no tensors: the copy's cost was spent on the learner's side.
    fn apply_weights(&mut self, _tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        Ok(())
    }

    /// A later turn costs what a first one does per generated token: one call, and the cost
    /// model's response length for each conversation.
    fn continue_conversations(
        &mut self,
        conversations: &[Conversation],
        _config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<Rollout>, ActorError> {
        let started = Instant::now();
        let rollouts = (0..conversations.len() as u64)
            .flat_map(|k| simulated_rollouts(1, self.cost.response_tokens, seed + k))
            .collect();
        spend(started, self.cost.generate_s(conversations.len(), 1));
        Ok(rollouts)
    }

    /// An environment turn of a fixed size (its tokens cost nothing to generate).
    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        let words = text.split_whitespace().count().max(1) + 6 + usize::from(close_turn);
        Ok((0..words as i64).collect())
    }
}
