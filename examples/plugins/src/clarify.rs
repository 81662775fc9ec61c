//! `clarify`: a multi-turn rollout workflow. The policy answers the prompt; when its first turn
//! is a clarifying question (it ends with `?`, or every first turn with `ask = "always"`), the
//! environment answers in a second user turn, and the policy answers again. The judge scores the
//! final answer; the learner trains the policy's tokens of both turns and none of the
//! environment's.
//!
//! ```toml
//! [workflow]
//! kind = "clarify"
//! ask = "question_mark"   # or "always"
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::Rollout;
use grlhf_actors::registry::{Registry, WorkflowContext};
use grlhf_actors::rollout_engine::{Conversation, GeneratedGroup, GeneratorConfig, RolloutEngine};
use grlhf_actors::rollout_workflow::RolloutWorkflow;
use grlhf_tasks::task::Task;
use serde::Deserialize;

/// When a first turn counts as a clarifying question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// A finished first turn that ends with `?`.
    #[default]
    QuestionMark,
    /// Every first turn, finished or cut off at `max_new_tokens` (the environment then closes
    /// the turn): tests, and policies trained to ask.
    Always,
}

/// The workflow's settings (its `[workflow]` table, minus `kind`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClarifySettings {
    #[serde(default)]
    pub ask: Ask,
}

/// Second turns sampled so far (for tests and reports).
pub static SECOND_TURNS: AtomicU64 = AtomicU64::new(0);

pub struct Clarify {
    pub settings: ClarifySettings,
}

/// What the environment says when asked: which object a per-cell question means, or the
/// request again in other words.
pub fn environment_reply(prompt: &PromptSpec) -> String {
    match prompt.world.as_ref().map(|w| &w.task) {
        Some(Task::Attribute { cell, .. } | Task::Safety { cell }) => {
            format!("the object at the {}.", cell.name())
        }
        _ => prompt.question.clone(),
    }
}

impl Clarify {
    fn asks(&self, first: &Rollout) -> bool {
        match self.settings.ask {
            Ask::Always => true,
            Ask::QuestionMark => first.is_complete() && first.text.trim_end().ends_with('?'),
        }
    }
}

impl RolloutWorkflow for Clarify {
    fn run(
        &self,
        engine: &mut dyn RolloutEngine,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        let mut groups = engine.generate(prompts, n, config, seed)?;
        // Every trajectory that asked goes on, all in one batch.
        let mut asked = Vec::new();
        let mut conversations = Vec::new();
        for (p, (_, rollouts)) in groups.iter().enumerate() {
            for (r, first) in rollouts.iter().enumerate() {
                if self.asks(first) {
                    let reply = environment_reply(&prompts[p]);
                    let environment = engine.user_turn_tokens(&reply, !first.is_complete())?;
                    let mut so_far = first.tokens.clone();
                    so_far.extend_from_slice(&environment);
                    conversations.push(Conversation {
                        prompt: prompts[p].clone(),
                        so_far,
                    });
                    asked.push((p, r, environment));
                }
            }
        }
        if conversations.is_empty() {
            return Ok(groups);
        }
        // A seed of its own, still a function of the batch's alone.
        let seconds = engine.continue_conversations(&conversations, config, seed ^ 0x0C1A_21F7)?;
        SECOND_TURNS.fetch_add(seconds.len() as u64, Ordering::Relaxed);
        for ((p, r, environment), second) in asked.into_iter().zip(seconds) {
            let first = groups[p].1[r].clone();
            groups[p].1[r] = first.then(&environment, second);
        }
        Ok(groups)
    }
}

pub fn register(registry: &mut Registry) {
    registry.register_workflow(
        "clarify",
        "multi-turn: the policy may ask one clarifying question, the environment answers, the policy answers",
        |settings: ClarifySettings, _context: WorkflowContext| {
            Ok(Arc::new(Clarify { settings }) as Arc<dyn RolloutWorkflow>)
        },
    );
}
