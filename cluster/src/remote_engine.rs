//! The head's side of a remote generator: a [`RolloutEngine`] whose batches run on a worker's
//! [`crate::role_host::RoleHost`].
//!
//! The generator actor on the head drives it exactly as it drives a local engine, on its device
//! thread, so nothing of the generator's protocol changes. What this engine adds:
//! - **weights**: [`RolloutEngine::apply_weights`] publishes on a weight server of this engine
//!   (encoded once, sent by its own thread: the generator never waits on the network) and the
//!   next batch names that version, which the host applies first;
//! - **the link** ([`crate::remote_call`]): the host is found and attached at the first batch
//!   (not when built: building runs while the generator actor starts, and waiting for a worker
//!   there would hold up the head), and every batch runs under a deadline and a heartbeat.
//!   Whatever keeps the worker from serving fails the generator ([`ActorError::Unreachable`]):
//!   its supervisor restarts it and its prompts are issued again.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::Rollout;
use grlhf_actors::rollout_engine::{
    Conversation, GeneratedGroup, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use ractor::ActorRef;
use tch::Tensor;

use crate::error::ClusterError;
use crate::handshake::Handshake;
use crate::remote_call::RemoteRole;
use crate::remote_stats::{CallTiming, RemoteStats};
use crate::role_host::RoleHostMsg;
use crate::weight_server::{WeightServer, WeightServerConfig};
use crate::weight_stream::{EncodedWeights, DEFAULT_CHUNK_BYTES};
use crate::wire::{HostReply, HostRequest, WireConversation, WirePrompt};

/// Everything a remote engine needs, shared by the engines its generator builds over a run
/// (one per restart).
pub struct RemoteEngineSpec {
    pub link: Arc<RemoteRole>,
    /// The address workers reach the head on; each engine's weight server listens there.
    pub weights_ip: IpAddr,
    /// Where this generator's batch timings and weight traffic are added up.
    pub stats: RemoteStats,
}

/// A builder of remote engines for a generator's plan.
pub fn remote_rollout_engine(spec: RemoteEngineSpec) -> RolloutEngineBuilder {
    let spec = Arc::new(spec);
    Arc::new(move |start_from: Option<&Path>| {
        RemoteRolloutEngine::new(spec.clone(), start_from)
            .map(|engine| Box::new(engine) as Box<dyn RolloutEngine>)
            .map_err(|e| ActorError::Engine(e.to_string()))
    })
}

pub struct RemoteRolloutEngine {
    spec: Arc<RemoteEngineSpec>,
    link: Arc<RemoteRole>,
    host: Option<ActorRef<RoleHostMsg>>,
    weights: WeightServer,
    published: u64,
    /// The digest of the version published last (`None`: nothing published).
    digest: Option<String>,
    /// Tells this engine's figures from those of the generator's earlier engines.
    instance: u64,
}

/// Numbers the engines of a process, for [`RemoteStats`].
static ENGINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RemoteRolloutEngine {
    /// Starts this engine's weight server and publishes `start_from` (a resume's weights
    /// file) as version 1; the host is attached at the first batch.
    fn new(
        spec: Arc<RemoteEngineSpec>,
        start_from: Option<&Path>,
    ) -> Result<RemoteRolloutEngine, ClusterError> {
        let link = &spec.link;
        let weights = WeightServer::bind(WeightServerConfig::new(
            SocketAddr::new(spec.weights_ip, 0),
            Handshake::new(link.identity.clone(), link.cookie.clone()),
        ))?;
        let (mut published, mut digest) = (0, None);
        if let Some(path) = start_from {
            let bytes = std::fs::read(path).map_err(ClusterError::io(format!(
                "reading {} to send to node {}",
                path.display(),
                link.node
            )))?;
            let encoded = EncodedWeights::from_bytes(1, bytes, DEFAULT_CHUNK_BYTES);
            digest = Some(weights.publish_encoded(encoded).digest);
            published = 1;
        }
        Ok(RemoteRolloutEngine {
            link: link.clone(),
            spec,
            host: None,
            weights,
            published,
            digest,
            instance: ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The request's reply from the attached host (attaching first if need be).
    async fn request(&mut self, request: HostRequest) -> Result<HostReply, ClusterError> {
        let host = match &self.host {
            Some(host) => host.clone(),
            None => {
                let host = self.link.attach(Some(self.weights.local_addr())).await?;
                self.spec.stats.attached(&self.link.role, &self.link.node);
                self.host = Some(host.clone());
                host
            }
        };
        self.link.call_watched(&host, request).await
    }
}

impl RemoteRolloutEngine {
    /// Sends a work request for `groups` groups and classifies the outcome: the worker's reply
    /// (timed into the stats), the engine's own failure on these prompts (dropped, as a local
    /// engine's would be), an oversize batch (dropped with its reason), or the worker unable
    /// to serve ([`ActorError::Unreachable`]: the generator fails, its prompts are issued again).
    fn work(&mut self, request: HostRequest, groups: u64) -> Result<HostReply, ActorError> {
        let runtime = self.link.runtime.clone();
        let started = std::time::Instant::now();
        let reply = runtime.block_on(self.request(request));
        let call_s = started.elapsed().as_secs_f64();
        let (stats, link) = (&self.spec.stats, &self.link);
        let subscribers = self.weights.subscribers();
        stats.weights(&link.role, &link.node, self.instance, &subscribers);
        match reply {
            Ok(
                reply @ (HostReply::Generated {
                    weights_s,
                    generate_s,
                    ..
                }
                | HostReply::Continued {
                    weights_s,
                    generate_s,
                    ..
                }),
            ) => {
                let timing = CallTiming {
                    groups,
                    call_s,
                    worker_weights_s: weights_s,
                    worker_compute_s: generate_s,
                };
                stats.call(&link.role, &link.node, timing);
                Ok(reply)
            }
            Ok(HostReply::EngineError { reason }) => {
                Err(ActorError::Engine(format!("{}: {reason}", link.peer())))
            }
            // The batch, not the worker: too large to send, or a reply that does not decode (a
            // non-finite number has no JSON form).
            Err(e @ (ClusterError::TooLargeToSend { .. } | ClusterError::Malformed { .. })) => {
                Err(ActorError::Engine(e.to_string()))
            }
            Ok(other) => Err(self.unreachable(link.unexpected(other))),
            Err(e) => {
                // The next request looks for the host again (a restarted worker).
                self.host = None;
                Err(self.unreachable(e))
            }
        }
    }

    fn unreachable(&self, e: ClusterError) -> ActorError {
        ActorError::Unreachable(e.to_string())
    }

    fn wrong_count(&self, what: &str, got: usize, expected: usize) -> ActorError {
        let peer = self.link.peer();
        ActorError::Unreachable(format!("{peer}: {got} {what} for {expected}"))
    }
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
        let request = HostRequest::Generate {
            prompts,
            n: n as u32,
            config: config.clone(),
            seed,
            weights_version: self.published,
            weights_digest: self.digest.clone(),
        };
        match self.work(request, expected as u64)? {
            HostReply::Generated { groups, .. } if groups.len() == expected => Ok(groups),
            HostReply::Generated { groups, .. } => {
                Err(self.wrong_count("groups", groups.len(), expected))
            }
            other => Err(self.unreachable(self.link.unexpected(other))),
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
        let request = HostRequest::Continue {
            conversations,
            config: config.clone(),
            seed,
            weights_version: self.published,
            weights_digest: self.digest.clone(),
        };
        match self.work(request, 0)? {
            HostReply::Continued { rollouts, .. } if rollouts.len() == expected => Ok(rollouts),
            HostReply::Continued { rollouts, .. } => {
                Err(self.wrong_count("continuations", rollouts.len(), expected))
            }
            other => Err(self.unreachable(self.link.unexpected(other))),
        }
    }

    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        // Asked between the turns of a batch, so the host is attached already.
        let Some(host) = &self.host else {
            return Err(ActorError::Unreachable(format!(
                "{}: an environment turn asked before the first batch reached the worker",
                self.link.peer()
            )));
        };
        let request = HostRequest::UserTurn {
            text: text.to_string(),
            close_turn,
        };
        let link = &self.link;
        let reply = link.runtime.block_on(link.call_watched(host, request));
        match reply {
            Ok(HostReply::Tokens { tokens }) => Ok(tokens),
            Ok(HostReply::EngineError { reason }) => {
                Err(ActorError::Engine(format!("{}: {reason}", link.peer())))
            }
            Err(e @ ClusterError::Malformed { .. }) => Err(ActorError::Engine(e.to_string())),
            Ok(other) => Err(self.unreachable(link.unexpected(other))),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        let version = self.published + 1;
        let stats = self.weights.publish(version, tensors).map_err(|e| {
            ActorError::Engine(format!("{}: publishing weights: {e}", self.link.peer()))
        })?;
        self.published = version;
        self.digest = Some(stats.digest);
        Ok(())
    }
}
