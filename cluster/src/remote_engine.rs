//! The head's side of a remote generator: a [`RolloutEngine`] whose batches run on a worker's
//! [`crate::role_host::RoleHost`].
//!
//! The generator actor on the head drives it exactly as it drives a local engine, on its device
//! thread, so nothing of the generator's protocol changes. Weights, the link and the outcomes
//! are the [`RemoteModel`]'s; the rollout workflow (single turn, or a user's multi-turn kind)
//! runs here, and each of its calls — a first turn, a continuation, an environment turn's
//! tokens — goes to the worker. Whatever keeps the worker from serving fails the generator
//! ([`ActorError::Unreachable`]): its supervisor restarts it and its prompts are issued again.

use std::path::Path;
use std::sync::Arc;

use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::Rollout;
use grlhf_actors::rollout_engine::{
    Conversation, GeneratedGroup, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use tch::Tensor;

use crate::error::ClusterError;
use crate::remote_model::{unreachable, RemoteModel, RemoteModelSpec};
use crate::wire::{HostReply, HostRequest, WireConversation, WirePrompt};

/// A builder of remote engines for a generator's plan.
pub fn remote_rollout_engine(spec: RemoteModelSpec) -> RolloutEngineBuilder {
    let spec = Arc::new(spec);
    Arc::new(move |start_from: Option<&Path>| {
        RemoteModel::new(spec.clone(), start_from)
            .map(|model| Box::new(RemoteRolloutEngine { model }) as Box<dyn RolloutEngine>)
            .map_err(|e| ActorError::Engine(e.to_string()))
    })
}

pub struct RemoteRolloutEngine {
    model: RemoteModel,
}

impl RolloutEngine for RemoteRolloutEngine {
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        let prompts = prompts
            .iter()
            .map(WirePrompt::from_spec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ActorError::Engine(e.to_string()))?;
        let expected = prompts.len();
        let (weights_version, weights_digest) = self.model.needed();
        let request = HostRequest::Generate {
            prompts,
            n: n as u32,
            config: config.clone(),
            seed,
            weights_version,
            weights_digest,
        };
        match self.model.work(request, expected as u64)? {
            HostReply::Generated { groups, .. } if groups.len() == expected => Ok(groups),
            HostReply::Generated { groups, .. } => {
                Err(self.model.wrong_count("groups", groups.len(), expected))
            }
            other => Err(unreachable(self.model.link().unexpected(other))),
        }
    }

    fn continue_conversations(
        &mut self,
        conversations: &[Conversation],
        config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<Rollout>, ActorError> {
        let conversations = conversations
            .iter()
            .map(|c| {
                Ok(WireConversation {
                    prompt: WirePrompt::from_spec(&c.prompt)?,
                    so_far: c.so_far.clone(),
                })
            })
            .collect::<Result<Vec<_>, ClusterError>>()
            .map_err(|e| ActorError::Engine(e.to_string()))?;
        let expected = conversations.len();
        let (weights_version, weights_digest) = self.model.needed();
        let request = HostRequest::Continue {
            conversations,
            config: config.clone(),
            seed,
            weights_version,
            weights_digest,
        };
        match self.model.work(request, 0)? {
            HostReply::Continued { rollouts, .. } if rollouts.len() == expected => Ok(rollouts),
            HostReply::Continued { rollouts, .. } => {
                Err(self
                    .model
                    .wrong_count("continuations", rollouts.len(), expected))
            }
            other => Err(unreachable(self.model.link().unexpected(other))),
        }
    }

    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        // Asked between the turns of a batch, so the host is attached already.
        let link = self.model.link();
        let Some(host) = self.model.host() else {
            return Err(ActorError::Unreachable(format!(
                "{}: an environment turn asked before the first batch reached the worker",
                link.peer()
            )));
        };
        let request = HostRequest::UserTurn {
            text: text.to_string(),
            close_turn,
        };
        let reply = link.runtime.block_on(link.call_watched(host, request));
        match reply {
            Ok(HostReply::Tokens { tokens }) => Ok(tokens),
            Ok(HostReply::EngineError { reason }) => {
                Err(ActorError::Engine(format!("{}: {reason}", link.peer())))
            }
            Err(e @ ClusterError::Malformed { .. }) => Err(ActorError::Engine(e.to_string())),
            Ok(other) => Err(unreachable(link.unexpected(other))),
            Err(e) => Err(unreachable(e)),
        }
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        self.model.publish(tensors)
    }
}
