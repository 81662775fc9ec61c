//! A worker's side of a remote generator: an actor that owns one rollout engine (on its own
//! device thread, like every model in grlhf) and serves the head's requests over ractor_cluster.
//!
//! The head keeps the generator *actor* — taking prompts, ledger holds, supervision, handing
//! groups to judges — and only the engine moves to the worker
//! ([`crate::remote_engine::RemoteRolloutEngine`] stands in for it on the head). So a remote
//! generator follows exactly the protocol a local one does, and a worker that dies costs what a
//! failed local generator costs: the supervisor restarts the actor and its prompts are issued
//! again.
//!
//! The host joins the process group [`engine_group`]`(generator)`, which ractor_cluster mirrors
//! onto the head. Pings are answered at once, even while a batch runs (the batch is awaited on
//! a task of its own), so the head's heartbeat tells a busy worker from a frozen one. Weights
//! come over the weight data plane ([`crate::WeightClient`]), never over the actor link; a
//! batch names the weights version it needs and waits (bounded) for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grlhf_actors::device_worker::DeviceWorker;
use grlhf_actors::rollout_engine::{GeneratorConfig, RolloutEngine, RolloutEngineBuilder};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use tch::Device;

use crate::error::ClusterError;
use crate::handshake::{Cookie, Handshake, RunIdentity};
use crate::weight_client::{WeightClient, WeightClientConfig};
use crate::wire::{Envelope, HostReply, HostRequest, WirePrompt};

/// The process group the host of `generator`'s engine joins.
pub fn engine_group(generator: &str) -> String {
    format!("grlhf/engine/{generator}")
}

/// The one message an engine host takes: an encoded [`Envelope`] of a [`HostRequest`],
/// answered with an encoded [`Envelope`] of a [`HostReply`].
#[derive(RactorClusterMessage)]
pub enum EngineHostMsg {
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// What an engine host is and serves.
#[derive(Clone)]
pub struct EngineHostArgs {
    /// The head's generator this engine serves (`generator-0`).
    pub generator: String,
    /// This worker's node name.
    pub node: String,
    /// This worker process's incarnation.
    pub incarnation: u64,
    pub identity: RunIdentity,
    pub cookie: Option<Cookie>,
    /// Builds the engine on the host's device thread.
    pub engine: RolloutEngineBuilder,
    /// Where received weights are placed.
    pub device: Device,
    /// How long a batch waits for the weights version it needs.
    pub weights_timeout: Duration,
}

/// The device thread's state: the engine and the weight subscription feeding it.
struct Hosted {
    engine: Box<dyn RolloutEngine>,
    weights: Option<WeightClient>,
    applied: u64,
}

pub struct EngineHostState {
    args: EngineHostArgs,
    worker: Arc<DeviceWorker<Hosted>>,
    busy: Arc<AtomicBool>,
}

pub struct EngineHost;

impl EngineHost {
    fn reply(args: &EngineHostArgs, port: RpcReplyPort<Vec<u8>>, body: HostReply) {
        let (run_id, incarnation) = (&args.identity.run_id, args.incarnation);
        let bytes = Envelope::new(run_id, incarnation, body)
            .encode_within_limit("the reply")
            .unwrap_or_else(|reason| {
                Envelope::new(run_id, incarnation, HostReply::EngineError { reason }).encode()
            });
        // The head may have given up on this call (a timeout); nothing to do then.
        let _ = port.send(bytes);
    }

    async fn attach(
        state: &EngineHostState,
        identity: RunIdentity,
        generator: String,
        weights: std::net::SocketAddr,
    ) -> HostReply {
        let args = &state.args;
        if generator != args.generator {
            return HostReply::Refused {
                reason: format!("this host serves {}, not {generator}", args.generator),
            };
        }
        if let Some((field, ours, theirs)) = args.identity.mismatch(&identity) {
            return HostReply::Refused {
                reason: format!(
                    "`{field}` differs (worker {} has {ours}, the head {theirs}): start every node with the same grlhf build and config",
                    args.node
                ),
            };
        }
        let mut config = WeightClientConfig::new(
            weights,
            Handshake::new(args.identity.clone(), args.cookie.clone()),
            format!("weights:{}/{}", args.node, args.generator),
        );
        config.incarnation = args.incarnation;
        config.device = args.device;
        let connected = state
            .worker
            .run(move |hosted: &mut Hosted| {
                // A new subscription replaces the old one: its versions count from the start.
                hosted.weights = None;
                hosted.weights = Some(WeightClient::connect(config)?);
                hosted.applied = 0;
                Ok::<(), ClusterError>(())
            })
            .await;
        match connected {
            Ok(Ok(())) => HostReply::Attached {
                node: args.node.clone(),
            },
            Ok(Err(e)) => HostReply::Failed {
                reason: e.to_string(),
            },
            Err(e) => HostReply::Failed {
                reason: e.to_string(),
            },
        }
    }
}

impl Hosted {
    /// Applies weights until at least version `need` is in (waiting up to `timeout`).
    fn catch_up(&mut self, need: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.applied < need {
            let Some(client) = &self.weights else {
                return Err(format!(
                    "weights version {need} asked for, but no weight server is attached"
                ));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match client.recv_timeout(left) {
                Some(Ok(received)) => {
                    let version = received.version;
                    self.engine
                        .apply_weights(&received.tensors)
                        .map_err(|e| format!("applying weights version {version}: {e}"))?;
                    self.applied = version;
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => {
                    return Err(format!(
                        "weights version {need} did not arrive within {timeout:?} (have {})",
                        self.applied
                    ))
                }
            }
        }
        Ok(())
    }

    fn generate(
        &mut self,
        prompts: Vec<WirePrompt>,
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
        need: u64,
        timeout: Duration,
    ) -> HostReply {
        let started = Instant::now();
        if let Err(reason) = self.catch_up(need, timeout) {
            return HostReply::Failed { reason };
        }
        let weights_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let specs = match prompts
            .into_iter()
            .map(|p| p.into_spec("the head"))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(specs) => specs,
            Err(e) => {
                return HostReply::Failed {
                    reason: e.to_string(),
                }
            }
        };
        match self.engine.generate(&specs, n, config, seed) {
            Ok(groups) => HostReply::Generated {
                groups,
                weights_s,
                generate_s: started.elapsed().as_secs_f64(),
            },
            Err(e) => HostReply::EngineError {
                reason: e.to_string(),
            },
        }
    }
}

impl Actor for EngineHost {
    type Msg = EngineHostMsg;
    type State = EngineHostState;
    type Arguments = EngineHostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let build = args.engine.clone();
        let worker = DeviceWorker::spawn(&format!("host-{}", args.generator), move || {
            build(None).map(|engine| Hosted {
                engine,
                weights: None,
                applied: 0,
            })
        })?;
        ractor::pg::join(engine_group(&args.generator), vec![myself.get_cell()]);
        Ok(EngineHostState {
            args,
            worker: Arc::new(worker),
            busy: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let EngineHostMsg::Call(bytes, port) = message;
        let args = &state.args;
        let request =
            match Envelope::<HostRequest>::decode(&bytes, &args.identity.run_id, "the head") {
                Ok(envelope) => envelope.body,
                Err(e) => {
                    Self::reply(
                        args,
                        port,
                        HostReply::Refused {
                            reason: e.to_string(),
                        },
                    );
                    return Ok(());
                }
            };
        match request {
            HostRequest::Ping => {
                let busy = state.busy.load(Ordering::Relaxed);
                Self::reply(
                    args,
                    port,
                    HostReply::Pong {
                        node: args.node.clone(),
                        busy,
                    },
                );
            }
            HostRequest::Attach {
                identity,
                generator,
                weights,
            } => {
                let reply = Self::attach(state, identity, generator, weights).await;
                Self::reply(&state.args, port, reply);
            }
            HostRequest::Generate {
                prompts,
                n,
                config,
                seed,
                weights_version,
            } => {
                // On a task of its own, so pings are answered while the batch runs.
                let (worker, busy, args) =
                    (state.worker.clone(), state.busy.clone(), state.args.clone());
                let timeout = args.weights_timeout;
                busy.store(true, Ordering::Relaxed);
                tokio::spawn(async move {
                    let result = worker
                        .run(move |hosted: &mut Hosted| {
                            hosted.generate(
                                prompts,
                                n as usize,
                                &config,
                                seed,
                                weights_version,
                                timeout,
                            )
                        })
                        .await;
                    busy.store(false, Ordering::Relaxed);
                    let reply = result.unwrap_or_else(|e| HostReply::Failed {
                        reason: e.to_string(),
                    });
                    Self::reply(&args, port, reply);
                });
            }
        }
        Ok(())
    }
}
