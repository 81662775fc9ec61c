//! The head's side of a remote generator: a [`RolloutEngine`] whose batches run on a worker's
//! [`crate::engine_host::EngineHost`].
//!
//! The generator actor on the head drives it exactly as it drives a local engine, on its device
//! thread, so nothing of the generator's protocol changes. What this engine adds:
//! - **finding the host**: the first batch waits (bounded) for a member of the generator's
//!   process group, pings every member and keeps the newest incarnation; an older one than
//!   this generator already used is never attached (a frozen process that woke up);
//! - **weights**: [`RolloutEngine::apply_weights`] publishes on a weight server of this engine
//!   (encoded once, sent by its own thread: the generator never waits on the network) and the
//!   next batch names that version, which the host applies first;
//! - **deadlines**: every call has one, and while a batch runs the host is pinged every
//!   `heartbeat_every`; `heartbeat_misses` unanswered pings in a row fail the batch, and with it
//!   the generator, whose supervisor then restarts it and issues its prompts again. A killed
//!   worker fails the call at once (ractor_cluster closes the session); a frozen one is caught by
//!   the heartbeat.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::rollout_engine::{
    GeneratedGroup, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use tch::Tensor;

use crate::engine_host::{engine_group, EngineHostMsg};
use crate::error::ClusterError;
use crate::handshake::{Cookie, Handshake, RunIdentity};
use crate::incarnations::Incarnations;
use crate::remote_stats::{BatchTiming, RemoteStats};
use crate::weight_server::{WeightServer, WeightServerConfig};
use crate::weight_stream::{EncodedWeights, DEFAULT_CHUNK_BYTES};
use crate::wire::{Envelope, HostReply, HostRequest, WirePrompt};

/// Deadlines of a remote engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteTimeouts {
    /// How long the builder waits for the worker's host to appear (a worker starting, or
    /// rejoining after a restart).
    pub attach: Duration,
    /// The longest one batch may take.
    pub batch: Duration,
    pub heartbeat_every: Duration,
    pub heartbeat_misses: u32,
}

impl Default for RemoteTimeouts {
    fn default() -> Self {
        RemoteTimeouts {
            attach: Duration::from_secs(60),
            batch: Duration::from_secs(1800),
            heartbeat_every: Duration::from_secs(2),
            heartbeat_misses: 3,
        }
    }
}

/// Everything a remote engine needs, shared by the engines its generator builds over a run
/// (one per restart).
pub struct RemoteEngineSpec {
    pub generator: String,
    pub node: String,
    pub identity: RunIdentity,
    /// The head's incarnation.
    pub incarnation: u64,
    pub cookie: Option<Cookie>,
    /// The address workers reach the head on; this engine's weight server listens there.
    pub weights_ip: IpAddr,
    pub timeouts: RemoteTimeouts,
    /// The head's tokio runtime (the engine lives on a plain device thread).
    pub runtime: tokio::runtime::Handle,
    /// The newest incarnation of the host each node ran, across restarts.
    pub hosts_seen: Incarnations,
    /// Where this generator's batch timings and weight traffic are added up.
    pub stats: RemoteStats,
}

/// A builder of remote engines for a generator's plan.
pub fn remote_rollout_engine(spec: RemoteEngineSpec) -> RolloutEngineBuilder {
    let spec = Arc::new(spec);
    Arc::new(move |start_from: Option<&Path>| {
        RemoteRolloutEngine::attach(spec.clone(), start_from)
            .map(|engine| Box::new(engine) as Box<dyn RolloutEngine>)
            .map_err(|e| ActorError::Engine(e.to_string()))
    })
}

pub struct RemoteRolloutEngine {
    spec: Arc<RemoteEngineSpec>,
    /// Found and attached at the first batch, not when built: building runs while the
    /// generator actor starts, and waiting for a worker there would hold up the head.
    host: Option<ActorRef<EngineHostMsg>>,
    weights: WeightServer,
    published: u64,
    /// Tells this engine's figures from those of the generator's earlier engines.
    instance: u64,
}

/// Numbers the engines of a process, for [`RemoteStats`].
static ENGINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RemoteRolloutEngine {
    fn peer(&self) -> String {
        format!("node {} ({})", self.spec.node, self.spec.generator)
    }

    /// Starts this engine's weight server and publishes `start_from` (a resume's weights
    /// file) as version 1; the host is attached at the first batch.
    fn attach(
        spec: Arc<RemoteEngineSpec>,
        start_from: Option<&Path>,
    ) -> Result<RemoteRolloutEngine, ClusterError> {
        let weights = WeightServer::bind(WeightServerConfig::new(
            SocketAddr::new(spec.weights_ip, 0),
            Handshake::new(spec.identity.clone(), spec.cookie.clone()),
        ))?;
        let mut published = 0;
        if let Some(path) = start_from {
            let bytes = std::fs::read(path).map_err(ClusterError::io(format!(
                "reading {} to send to node {}",
                path.display(),
                spec.node
            )))?;
            weights.publish_encoded(EncodedWeights::from_bytes(1, bytes, DEFAULT_CHUNK_BYTES));
            published = 1;
        }
        Ok(RemoteRolloutEngine {
            spec,
            host: None,
            weights,
            published,
            instance: ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The attached host: found (waiting for the worker to join, bounded) and told where the
    /// weights are, the first time.
    async fn host(&mut self) -> Result<ActorRef<EngineHostMsg>, ClusterError> {
        if let Some(host) = &self.host {
            return Ok(host.clone());
        }
        let spec = &self.spec;
        let host = find_host(spec).await?;
        let request = HostRequest::Attach {
            identity: spec.identity.clone(),
            generator: spec.generator.clone(),
            weights: self.weights.local_addr(),
        };
        let peer = self.peer();
        match call(spec, &host, request, spec.timeouts.attach, &peer).await? {
            HostReply::Attached { .. } => {}
            other => return Err(unexpected(&peer, other)),
        }
        tracing::info!(generator = %spec.generator, node = %spec.node, "remote engine attached");
        spec.stats.attached(&spec.generator, &spec.node);
        self.host = Some(host.clone());
        Ok(host)
    }

    /// Runs `request` while pinging the host every `heartbeat_every`. The host is declared
    /// dead when nothing was heard from it for `heartbeat_misses × heartbeat_every`, measured
    /// from its last answer, so a freeze is caught at most that long after it began.
    async fn call_watched(&mut self, request: HostRequest) -> Result<HostReply, ClusterError> {
        let host = self.host().await?;
        let spec = self.spec.clone();
        let peer = self.peer();
        let batch = call(&spec, &host, request, spec.timeouts.batch, &peer);
        tokio::pin!(batch);
        let every = spec.timeouts.heartbeat_every;
        let silence = every * spec.timeouts.heartbeat_misses;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (heard, mut answers) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let mut pinging = false;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                reply = &mut batch => return reply,
                _ = ticks.tick(), if !pinging => {
                    // On a task of its own: an unanswered ping must not hold up the batch's
                    // reply or the deadline.
                    pinging = true;
                    let (spec, host, peer, heard) = (spec.clone(), host.clone(), peer.clone(), heard.clone());
                    tokio::spawn(async move {
                        let answered = call(&spec, &host, HostRequest::Ping, silence, &peer).await.is_ok();
                        let _ = heard.send(answered);
                    });
                }
                Some(answered) = answers.recv() => {
                    pinging = false;
                    if answered {
                        last_heard = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(last_heard + silence) => {
                    return Err(ClusterError::Remote {
                        peer: peer.clone(),
                        message: format!(
                            "no heartbeat answered for {silence:?} (heartbeat_misses = {} × every {every:?}): the worker is frozen or unreachable",
                            spec.timeouts.heartbeat_misses
                        ),
                    });
                }
            }
        }
    }
}

/// Waits for the generator's host to join its process group; of several (a restarted worker
/// next to a frozen old one), the newest incarnation that answers a ping.
async fn find_host(spec: &RemoteEngineSpec) -> Result<ActorRef<EngineHostMsg>, ClusterError> {
    let group = engine_group(&spec.generator);
    let deadline = tokio::time::Instant::now() + spec.timeouts.attach;
    let peer = format!("node {} ({})", spec.node, spec.generator);
    loop {
        let mut newest: Option<(u64, ActorRef<EngineHostMsg>)> = None;
        for member in ractor::pg::get_members(&group) {
            let host: ActorRef<EngineHostMsg> = member.into();
            let ping = call_raw(
                spec,
                &host,
                HostRequest::Ping,
                spec.timeouts.heartbeat_every,
                &peer,
            );
            if let Ok((incarnation, HostReply::Pong { node, .. })) = ping.await {
                if node == spec.node && newest.as_ref().is_none_or(|(i, _)| incarnation > *i) {
                    newest = Some((incarnation, host));
                }
            }
        }
        if let Some((incarnation, host)) = newest {
            match spec.hosts_seen.admit(&spec.node, incarnation) {
                Ok(()) => return Ok(host),
                Err(seen) => tracing::warn!(
                    %peer, incarnation, seen,
                    "ignoring a stale engine host (a newer incarnation was already used)"
                ),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Remote {
                peer,
                message: format!(
                    "no engine host joined within {:?}: start `grlhf run CONFIG --join HEAD:PORT --node {}`",
                    spec.timeouts.attach, spec.node
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request and its decoded reply, with the replier's incarnation.
async fn call_raw(
    spec: &RemoteEngineSpec,
    host: &ActorRef<EngineHostMsg>,
    request: HostRequest,
    timeout: Duration,
    peer: &str,
) -> Result<(u64, HostReply), ClusterError> {
    let lost = |message: String| ClusterError::Remote {
        peer: peer.to_string(),
        message,
    };
    let bytes = Envelope::new(&spec.identity.run_id, spec.incarnation, request)
        .encode_within_limit("the request")
        .map_err(|message| ClusterError::TooLargeToSend {
            peer: peer.to_string(),
            message,
        })?;
    match host
        .call(|port| EngineHostMsg::Call(bytes, port), Some(timeout))
        .await
    {
        Ok(CallResult::Success(reply)) => {
            let envelope = Envelope::<HostReply>::decode(&reply, &spec.identity.run_id, peer)?;
            Ok((envelope.incarnation, envelope.body))
        }
        Ok(CallResult::Timeout) => Err(lost(format!("no answer within {timeout:?}"))),
        Ok(CallResult::SenderError) => Err(lost(
            "the worker's session closed mid-call (the worker died or left)".into(),
        )),
        Err(e) => Err(lost(format!("the worker is unreachable: {e}"))),
    }
}

async fn call(
    spec: &RemoteEngineSpec,
    host: &ActorRef<EngineHostMsg>,
    request: HostRequest,
    timeout: Duration,
    peer: &str,
) -> Result<HostReply, ClusterError> {
    match call_raw(spec, host, request, timeout, peer).await?.1 {
        HostReply::Refused { reason } => Err(ClusterError::Refused {
            peer: peer.to_string(),
            reason,
        }),
        HostReply::Failed { reason } => Err(ClusterError::Remote {
            peer: peer.to_string(),
            message: reason,
        }),
        reply => Ok(reply),
    }
}

fn unexpected(peer: &str, reply: HostReply) -> ClusterError {
    ClusterError::Malformed {
        peer: peer.to_string(),
        message: format!("unexpected reply {reply:?}"),
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
        };
        let runtime = self.spec.runtime.clone();
        let started = std::time::Instant::now();
        let reply = runtime.block_on(self.call_watched(request));
        let call_s = started.elapsed().as_secs_f64();
        let spec = &self.spec;
        spec.stats.weights(
            &spec.generator,
            &spec.node,
            self.instance,
            &self.weights.subscribers(),
        );
        // Whatever keeps the worker from serving fails the generator (its prompts are issued
        // again); only the engine's own failure on these prompts drops them, as locally.
        let unreachable = |e: ClusterError| ActorError::Unreachable(e.to_string());
        match reply {
            Ok(HostReply::Generated {
                groups,
                weights_s,
                generate_s,
            }) if groups.len() == expected => {
                let timing = BatchTiming {
                    groups: expected as u64,
                    call_s,
                    worker_weights_s: weights_s,
                    worker_generate_s: generate_s,
                };
                spec.stats.batch(&spec.generator, &spec.node, timing);
                Ok(groups)
            }
            Ok(HostReply::EngineError { reason }) => {
                Err(ActorError::Engine(format!("{}: {reason}", self.peer())))
            }
            // The batch, not the worker: dropped with its reason, as a local engine's error.
            Err(e @ ClusterError::TooLargeToSend { .. }) => Err(ActorError::Engine(e.to_string())),
            Ok(other) => Err(unreachable(unexpected(&self.peer(), other))),
            Err(e) => {
                // The next batch looks for the host again (a restarted worker).
                self.host = None;
                Err(unreachable(e))
            }
        }
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        let version = self.published + 1;
        self.weights
            .publish(version, tensors)
            .map_err(|e| ActorError::Engine(format!("{}: publishing weights: {e}", self.peer())))?;
        self.published = version;
        Ok(())
    }
}
