//! A worker's side of a remote role: an actor that owns one generator's rollout engine, one
//! judge or the evaluator's engine (on its own device thread, like every model in grlhf) and
//! serves the head's requests over ractor_cluster.
//!
//! The head keeps the role's *actor* — for a generator: taking prompts, ledger holds, handing
//! groups on; for a judge: its place in the judge pool, handing scored groups on — and only
//! the engine or the judge moves to the worker ([`crate::remote_engine::RemoteRolloutEngine`]
//! and [`crate::remote_judge::RemoteJudge`] stand in for them on the head). So a remote role
//! follows exactly the protocol a local one does, and a worker that dies costs what a failed
//! local actor costs: the supervisor restarts the actor and its prompts are issued again.
//!
//! The host joins the process group [`role_group`]`(role)`, which ractor_cluster mirrors onto
//! the head. Pings are answered at once, even while a request or an attach runs (each is
//! awaited on a task of its own), so the head's heartbeat tells a busy worker from a frozen one. An
//! engine's weights come over the weight data plane ([`crate::WeightClient`]), never over the
//! actor link; a batch names the weights version it needs and waits (bounded) for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grlhf_actors::device_worker::{block_in_place_if_possible, DeviceWorker};
use grlhf_actors::error::ActorError;
use grlhf_actors::eval_engine::{EvalEngine, EvalEngineBuilder};
use grlhf_actors::judge::Judge;
use grlhf_actors::rollout_engine::{
    Conversation, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use grlhf_actors::supervisor::JudgeRebuild;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use tch::Device;

use crate::bucket_broadcast::Collectives;
use crate::collective_receiver::{CollectiveReceiver, CollectiveSeqs};
use crate::error::ClusterError;
use crate::handshake::{Cookie, Handshake, RunIdentity};
use crate::weight_buckets::BucketLayout;
use crate::weight_client::{WeightClient, WeightClientConfig};
use crate::wire::{Envelope, HostReply, HostRequest, ScoreRequest, WireConversation, WirePrompt};

/// The process group the host of `role` (`generator-0`, `judge-0-1`) joins.
pub fn role_group(role: &str) -> String {
    format!("grlhf/role/{role}")
}

/// The one message a role host takes: an encoded [`Envelope`] of a [`HostRequest`], answered
/// with an encoded [`Envelope`] of a [`HostReply`].
#[derive(RactorClusterMessage)]
pub enum RoleHostMsg {
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// What a host runs.
#[derive(Clone)]
pub enum HostedRole {
    /// A generator's engine, built on the host's device thread.
    Engine(RolloutEngineBuilder),
    /// A judge, built on the host's device thread.
    Judge(JudgeRebuild),
    /// The evaluator's engine (its policy replica, prompts and metric).
    Evaluator(EvalEngineBuilder),
}

/// What a role host is and serves.
#[derive(Clone)]
pub struct RoleHostArgs {
    /// The head's role this host serves (`generator-0`, `judge-0-1`).
    pub role: String,
    /// This worker's node name.
    pub node: String,
    /// This worker process's incarnation.
    pub incarnation: u64,
    pub identity: RunIdentity,
    pub cookie: Option<Cookie>,
    pub hosted: HostedRole,
    /// Where received weights are placed.
    pub device: Device,
    /// The head's address as this worker joined it: weight streams are dialled there, at the
    /// port the head names.
    pub head_ip: std::net::IpAddr,
    /// How long a batch waits for the weights version it needs (and each bucket of a
    /// broadcast version).
    pub weights_timeout: Duration,
    /// What can receive broadcast weights here (NCCL where the device is a GPU); `None`: the
    /// weight stream only.
    pub collectives: Option<Arc<dyn Collectives>>,
}

/// When a request's work began, after its weights took `weights_s`.
#[derive(Clone, Copy)]
struct Timing {
    weights_s: f64,
    started: Instant,
}

impl Timing {
    fn work_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The device thread's state: the model, and (engines, evaluators) the weight stream feeding
/// it and the version applied last.
struct Hosted {
    model: Model,
    weights: Option<WeightClient>,
    applied: u64,
    /// Broadcast weights (an engine whose head chose a collective).
    collective: CollectiveReceiver,
}

enum Model {
    Engine(Box<dyn RolloutEngine>),
    Evaluator(Box<dyn EvalEngine>),
    Judge(Box<dyn Judge>),
}

impl Model {
    fn apply_weights(&mut self, tensors: &[(String, tch::Tensor)]) -> Result<(), String> {
        match self {
            Model::Engine(engine) => engine.apply_weights(tensors).map_err(|e| e.to_string()),
            Model::Evaluator(engine) => engine.apply_weights(tensors).map_err(|e| e.to_string()),
            Model::Judge(_) => Err("a judge takes no weights".into()),
        }
    }
}

pub struct RoleHostState {
    args: RoleHostArgs,
    worker: Arc<DeviceWorker<Hosted>>,
    busy: Arc<AtomicBool>,
    /// The head's collective requests seen and abandoned: a join or broadcast waiting on the
    /// device thread stops when the head gives up on it.
    collective_seqs: Arc<CollectiveSeqs>,
}

pub struct RoleHost;

fn reply(args: &RoleHostArgs, port: RpcReplyPort<Vec<u8>>, body: HostReply) {
    let (run_id, incarnation) = (&args.identity.run_id, args.incarnation);
    let encode = |body: &HostReply| {
        Envelope::new(run_id, incarnation, body)
            .encode_within_limit("the reply", body.how_to_shrink())
    };
    let bytes = match (encode(&body), body) {
        (Ok(bytes), _) => Ok(bytes),
        // An evaluation too large to send goes without its answer texts (the scores stay).
        (
            Err(_),
            HostReply::Evaluated {
                mut stats,
                weights_s,
                eval_s,
            },
        ) => {
            stats.answers.clear();
            encode(&HostReply::Evaluated {
                stats,
                weights_s,
                eval_s,
            })
        }
        (Err(reason), _) => Err(reason),
    };
    let bytes = bytes.unwrap_or_else(|reason| {
        Envelope::new(run_id, incarnation, HostReply::EngineError { reason }).encode()
    });
    // The head may have given up on this call (a timeout); nothing to do then.
    let _ = port.send(bytes);
}

/// A request whose payload this host cannot use (a prompt's image that does not decode): the
/// payload's fault, not the worker's, so the head drops it as it would a local engine's error.
fn payload_error(e: impl ToString) -> HostReply {
    HostReply::EngineError {
        reason: e.to_string(),
    }
}

fn failed(e: impl ToString) -> HostReply {
    HostReply::Failed {
        reason: e.to_string(),
    }
}

impl RoleHost {
    /// Checks the head's identity and (an engine) subscribes to its weight stream. Run on a
    /// task of its own: the subscription is made on the device thread, which may still be
    /// finishing a batch the head gave up on, and pings must be answered meanwhile.
    async fn attach(
        args: RoleHostArgs,
        worker: Arc<DeviceWorker<Hosted>>,
        identity: RunIdentity,
        role: String,
        weights: Option<SocketAddr>,
    ) -> HostReply {
        let args = &args;
        if role != args.role {
            return HostReply::Refused {
                reason: format!("this host serves {}, not {role}", args.role),
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
        let Some(weights) = weights else {
            return HostReply::Attached {
                node: args.node.clone(),
            };
        };
        // The head's address as this worker reached it, with the stream's port: the head may
        // listen on an unspecified address (0.0.0.0), which is no address to dial.
        let weights = SocketAddr::new(args.head_ip, weights.port());
        let mut config = WeightClientConfig::new(
            weights,
            Handshake::new(args.identity.clone(), args.cookie.clone()),
            format!("weights:{}/{}", args.node, args.role),
        );
        config.incarnation = args.incarnation;
        config.device = args.device;
        let connected = worker
            .run(move |hosted: &mut Hosted| {
                if let Model::Judge(_) = hosted.model {
                    return Err(ClusterError::Malformed {
                        peer: "the head".into(),
                        message: "weights offered to a judge".into(),
                    });
                }
                // A new subscription replaces the old one: its versions count from 1.
                hosted.weights = None;
                hosted.weights = Some(WeightClient::connect(config)?);
                hosted.applied = 0;
                Ok(())
            })
            .await;
        match connected {
            Ok(Ok(())) => HostReply::Attached {
                node: args.node.clone(),
            },
            Ok(Err(e)) => failed(e),
            Err(e) => failed(e),
        }
    }

    /// Runs `work` on the device thread on a task of its own (pings are answered meanwhile)
    /// and replies with what it returns.
    fn spawn_work(
        state: &RoleHostState,
        port: RpcReplyPort<Vec<u8>>,
        work: impl FnOnce(&mut Hosted) -> HostReply + Send + 'static,
    ) {
        let (worker, busy, args) = (state.worker.clone(), state.busy.clone(), state.args.clone());
        busy.store(true, Ordering::Relaxed);
        tokio::spawn(async move {
            let result = worker.run(work).await;
            busy.store(false, Ordering::Relaxed);
            reply(&args, port, result.unwrap_or_else(failed));
        });
    }
}

impl RoleHost {
    /// What carries broadcast weights to this host, or why nothing can: only an engine or an
    /// evaluator takes weights, and the transport must support the host's device.
    fn collective_info(args: &RoleHostArgs) -> Result<String, String> {
        let Some(collectives) = &args.collectives else {
            return Err(format!("worker {} has no collective transport", args.node));
        };
        if let HostedRole::Judge(_) = args.hosted {
            return Err("a judge takes no weights".into());
        }
        collectives.supports(args.device)?;
        Ok(format!("{} on {:?}", collectives.about(), args.device))
    }
}

impl Hosted {
    /// Receives a broadcast version and applies it.
    fn receive_weights(
        &mut self,
        version: u64,
        layout: &BucketLayout,
        (device, per_bucket): (Device, Duration),
        gave_up: &dyn Fn() -> Option<String>,
    ) -> HostReply {
        let received = self
            .collective
            .receive(layout, (device, per_bucket), gave_up);
        let (tensors, seconds) = match received {
            Ok(received) => received,
            Err(reason) => return HostReply::CollectiveFailed { reason },
        };
        if let Err(e) = self.model.apply_weights(&tensors) {
            return HostReply::CollectiveFailed {
                reason: format!("applying broadcast weights version {version}: {e}"),
            };
        }
        self.applied = version;
        HostReply::WeightsApplied { version, seconds }
    }

    /// Applies weights version `need` (waiting up to `timeout`), once its digest is the one the
    /// head named; older versions still on the stream are skipped (each is a whole snapshot).
    fn catch_up(
        &mut self,
        (need, digest): (u64, Option<&str>),
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.applied < need {
            let Some(client) = &self.weights else {
                return Err(format!(
                    "weights version {need} asked for, but no weight server is attached"
                ));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match client.recv_timeout(left) {
                Some(Ok(received)) if received.version < need => {}
                Some(Ok(received)) => {
                    let version = received.version;
                    if let Some(named) = digest.filter(|d| *d != received.digest) {
                        return Err(format!(
                            "weights version {version} arrived with digest {}, the head named {named}: not applied",
                            received.digest
                        ));
                    }
                    self.model
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

    /// Catches the model up to the weights a request names, then runs `work` on it, with the
    /// time the weights took and when the work began, for the reply to carry.
    fn with_weights(
        &mut self,
        (need, digest, timeout): (u64, Option<String>, Duration),
        work: impl FnOnce(&mut Model, Timing) -> Result<HostReply, String>,
    ) -> HostReply {
        let started = Instant::now();
        if let Err(reason) = self.catch_up((need, digest.as_deref()), timeout) {
            return HostReply::Failed { reason };
        }
        let timing = Timing {
            weights_s: started.elapsed().as_secs_f64(),
            started: Instant::now(),
        };
        work(&mut self.model, timing).unwrap_or_else(|reason| HostReply::Failed { reason })
    }

    fn generate(
        &mut self,
        prompts: Vec<WirePrompt>,
        n: usize,
        config: &GeneratorConfig,
        seed: u64,
        need: (u64, Option<String>, Duration),
    ) -> HostReply {
        self.with_weights(need, |model, t| {
            let Model::Engine(engine) = model else {
                return Err("a generation batch sent to a host that is no generator".into());
            };
            let specs = match prompts
                .into_iter()
                .map(|p| p.into_spec("the head"))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(specs) => specs,
                Err(e) => return Ok(payload_error(e)),
            };
            Ok(match engine.generate(&specs, n, config, seed) {
                Ok(groups) => HostReply::Generated {
                    groups,
                    weights_s: t.weights_s,
                    generate_s: t.work_s(),
                },
                Err(e) => HostReply::EngineError {
                    reason: e.to_string(),
                },
            })
        })
    }

    fn continue_conversations(
        &mut self,
        conversations: Vec<WireConversation>,
        config: &GeneratorConfig,
        seed: u64,
        need: (u64, Option<String>, Duration),
    ) -> HostReply {
        self.with_weights(need, |model, t| {
            let Model::Engine(engine) = model else {
                return Err("conversations sent to a host that is no generator".into());
            };
            let conversations = conversations
                .into_iter()
                .map(|c| {
                    Ok(Conversation {
                        prompt: c.prompt.into_spec("the head")?,
                        so_far: c.so_far,
                    })
                })
                .collect::<Result<Vec<_>, ClusterError>>();
            // A payload this worker cannot use is the batch's failure, not the worker's.
            let conversations = match conversations {
                Ok(conversations) => conversations,
                Err(e) => return Ok(payload_error(e)),
            };
            Ok(
                match engine.continue_conversations(&conversations, config, seed) {
                    Ok(rollouts) => HostReply::Continued {
                        rollouts,
                        weights_s: t.weights_s,
                        generate_s: t.work_s(),
                    },
                    Err(e) => HostReply::EngineError {
                        reason: e.to_string(),
                    },
                },
            )
        })
    }

    fn user_turn(&mut self, text: &str, close_turn: bool) -> HostReply {
        let Model::Engine(engine) = &self.model else {
            return failed("a user turn asked of a host that is no generator");
        };
        match engine.user_turn_tokens(text, close_turn) {
            Ok(tokens) => HostReply::Tokens { tokens },
            Err(e) => HostReply::EngineError {
                reason: e.to_string(),
            },
        }
    }

    fn evaluate(&mut self, version: u64, need: (u64, Option<String>, Duration)) -> HostReply {
        self.with_weights(need, |model, t| {
            let Model::Evaluator(engine) = model else {
                return Err("an evaluation asked of a host that is no evaluator".into());
            };
            Ok(match engine.evaluate(version) {
                Ok(stats) => HostReply::Evaluated {
                    stats: Box::new(stats),
                    weights_s: t.weights_s,
                    eval_s: t.work_s(),
                },
                Err(e) => HostReply::EngineError {
                    reason: e.to_string(),
                },
            })
        })
    }

    fn score(&mut self, request: ScoreRequest) -> HostReply {
        let Model::Judge(judge) = &mut self.model else {
            return failed("a group to score sent to a host that is no judge");
        };
        let group = match request.group.into_group("the head") {
            Ok(group) => group,
            Err(e) => return payload_error(e),
        };
        let started = Instant::now();
        match judge.score(&group) {
            // A non-finite reward has no JSON form; said here, as the local judge actor says it.
            Ok((rewards, _)) if rewards.iter().any(|r| !r.is_finite()) => HostReply::EngineError {
                reason: format!("a non-finite reward among {rewards:?}"),
            },
            Ok((rewards, details)) => HostReply::Scored {
                rewards,
                details,
                judge_s: started.elapsed().as_secs_f64(),
            },
            Err(reason) => HostReply::EngineError { reason },
        }
    }
}

impl Actor for RoleHost {
    type Msg = RoleHostMsg;
    type State = RoleHostState;
    type Arguments = RoleHostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let hosted = args.hosted.clone();
        // Loading a model takes a while: off this runtime worker, so sessions, pings and the
        // other hosts loading beside this one go on.
        let name = format!("host-{}", args.role);
        let worker = block_in_place_if_possible(|| {
            DeviceWorker::spawn(&name, move || {
                let model = match hosted {
                    HostedRole::Engine(build) => Model::Engine(build(None)?),
                    HostedRole::Evaluator(build) => Model::Evaluator(build(None)?),
                    HostedRole::Judge(rebuild) => Model::Judge(rebuild()?()?),
                };
                Ok::<_, ActorError>(Hosted {
                    model,
                    weights: None,
                    applied: 0,
                    collective: CollectiveReceiver::default(),
                })
            })
        })?;
        ractor::pg::join(role_group(&args.role), vec![myself.get_cell()]);
        Ok(RoleHostState {
            args,
            worker: Arc::new(worker),
            busy: Arc::new(AtomicBool::new(false)),
            collective_seqs: Arc::new(CollectiveSeqs::default()),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RoleHostMsg::Call(bytes, port) = message;
        let args = &state.args;
        let request =
            match Envelope::<HostRequest>::decode(&bytes, &args.identity.run_id, "the head") {
                Ok(envelope) => envelope.body,
                Err(e) => {
                    let reason = e.to_string();
                    reply(args, port, HostReply::Refused { reason });
                    return Ok(());
                }
            };
        match request {
            HostRequest::Ping => {
                let busy = state.busy.load(Ordering::Relaxed);
                let node = args.node.clone();
                reply(args, port, HostReply::Pong { node, busy });
            }
            HostRequest::Attach {
                identity,
                role,
                weights,
            } => {
                let (args, worker) = (state.args.clone(), state.worker.clone());
                tokio::spawn(async move {
                    let answer = Self::attach(args.clone(), worker, identity, role, weights).await;
                    reply(&args, port, answer);
                });
            }
            HostRequest::Generate {
                prompts,
                n,
                config,
                seed,
                weights_version,
                weights_digest,
            } => {
                let need = (weights_version, weights_digest, args.weights_timeout);
                Self::spawn_work(state, port, move |hosted| {
                    hosted.generate(prompts, n as usize, &config, seed, need)
                });
            }
            HostRequest::Continue {
                conversations,
                config,
                seed,
                weights_version,
                weights_digest,
            } => {
                let need = (weights_version, weights_digest, args.weights_timeout);
                Self::spawn_work(state, port, move |hosted| {
                    hosted.continue_conversations(conversations, &config, seed, need)
                });
            }
            HostRequest::Evaluate {
                version,
                weights_version,
                weights_digest,
            } => {
                let need = (weights_version, weights_digest, args.weights_timeout);
                Self::spawn_work(state, port, move |hosted| hosted.evaluate(version, need));
            }
            HostRequest::UserTurn { text, close_turn } => {
                Self::spawn_work(state, port, move |hosted| {
                    hosted.user_turn(&text, close_turn)
                });
            }
            HostRequest::Score(request) => {
                Self::spawn_work(state, port, move |hosted| hosted.score(*request));
            }
            HostRequest::CollectiveInfo => {
                let available = Self::collective_info(args);
                reply(args, port, HostReply::CollectiveInfo { available });
            }
            HostRequest::JoinCollective {
                id,
                nranks,
                rank,
                deadline_s,
                seq,
            } => {
                let Some(collectives) = args.collectives.clone() else {
                    let reason = format!("worker {} has no collective transport", args.node);
                    reply(args, port, HostReply::CollectiveFailed { reason });
                    return Ok(());
                };
                let device = args.device;
                let deadline =
                    Duration::try_from_secs_f64(deadline_s).unwrap_or(args.weights_timeout);
                state.collective_seqs.arrived(seq);
                let gave_up = state.collective_seqs.given_up(seq);
                Self::spawn_work(state, port, move |hosted| {
                    let ranks = (id.as_str(), nranks as i32, rank as i32);
                    let joined =
                        hosted
                            .collective
                            .join(&collectives, ranks, device, deadline, &gave_up);
                    match joined {
                        Ok(()) => HostReply::Joined,
                        Err(reason) => HostReply::CollectiveFailed { reason },
                    }
                });
            }
            HostRequest::ReceiveWeights {
                version,
                layout,
                seq,
            } => {
                let (device, per_bucket) = (args.device, args.weights_timeout);
                state.collective_seqs.arrived(seq);
                let gave_up = state.collective_seqs.given_up(seq);
                Self::spawn_work(state, port, move |hosted| {
                    hosted.receive_weights(version, &layout, (device, per_bucket), &gave_up)
                });
            }
            HostRequest::AbandonCollective { seq } => {
                state.collective_seqs.abandon(seq);
                reply(args, port, HostReply::Abandoned);
            }
        }
        Ok(())
    }
}
