//! Rollout workflows: how a generator turns a batch of prompts into groups of trajectories.
//!
//! The generator actor owns the protocol (taking prompts, ledger holds, weights between batches,
//! handing groups on); its [`RolloutEngine`] owns the model; a workflow sits between them and
//! decides what a trajectory is. The built-in [`SingleTurn`] samples n responses per prompt in
//! one call. A multi-turn workflow calls the engine several times — sample a turn, let an
//! environment reply ([`RolloutEngine::user_turn_tokens`]), continue
//! ([`RolloutEngine::continue_conversations`]) — and joins the turns with [`Rollout::then`],
//! which marks the environment's tokens so the learner trains only the policy's. Like AReaL's
//! `RolloutWorkflow`, a workflow is registered by kind ([`crate::registry`]) and chosen in the
//! run config (`[workflow] kind = …`).
//!
//! A workflow runs on the generator's device thread with the engine borrowed, so it may be
//! stateful per call but must be `Send + Sync` to be shared by every generator. Whatever it
//! returns is one sample group per prompt: staleness, the ledger and checkpoints treat a
//! multi-turn trajectory exactly like a single response.

use crate::error::ActorError;
use crate::prompt_source::PromptSpec;
use crate::rollout_engine::{GeneratedGroup, GeneratorConfig, RolloutEngine};

#[cfg(doc)]
use crate::protocol::Rollout;

/// Produces one group of `n` trajectories per prompt.
pub trait RolloutWorkflow: Send + Sync {
    /// The groups for `prompts`, in order: each prompt's rendered token ids (as the learner will
    /// re-encode them) and its `n` trajectories. All randomness comes from `seed`, so a prompt
    /// issued again after a restart is rolled out exactly as before.
    fn run(
        &self,
        engine: &mut dyn RolloutEngine,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError>;
}

/// The default: one policy turn per trajectory, n sampled per prompt in one batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleTurn;

impl RolloutWorkflow for SingleTurn {
    fn run(
        &self,
        engine: &mut dyn RolloutEngine,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        engine.generate(prompts, n, config, seed)
    }
}
