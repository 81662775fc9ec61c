//! The supervisor: generators and judges run linked to it, and one that panics or returns an
//! error is started again in its place.
//!
//! On a failure the supervisor (1) starts a new incarnation with the same arguments — a
//! generator waits for the learner's current weights ([`LearnerMsg::Resync`]) before taking a
//! prompt; a judge is rebuilt by its factory — and swaps it in where others address it (the
//! generator's [`ActorSlot`], the [`JudgePool`]); (2) hands the prompts the failed incarnation
//! held (the [`Ledger`] knows) back to the prompt source, which issues them again under the
//! same uid; (3) counts the restart. More than `max_restarts` failures within `window` is a
//! restart storm: the supervisor restarts nothing more and asks the learner to stop the run
//! with that error after a final checkpoint.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;

use crate::activity::ActivityLog;
use crate::generator::{Generator, GeneratorArgs, GeneratorMsg};
use crate::judge::{JudgeActor, JudgeArgs, JudgeBuilder, JudgePool};
use crate::learner::LearnerMsg;
use crate::ledger::Ledger;
use crate::prompt_source::PromptSourceMsg;
use crate::protocol::ScoredSink;

/// The current actor behind a name that survives restarts (weight subscribers and the run's
/// teardown read it).
pub type ActorSlot<M> = Arc<RwLock<ActorRef<M>>>;

/// Builds a judge again (a judge's builder runs once, on its device thread).
pub type JudgeRebuild = Arc<dyn Fn() -> Result<JudgeBuilder, String> + Send + Sync>;

/// How many failures are tolerated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// More failures than this within `window` stop the run.
    pub max_restarts: usize,
    pub window: Duration,
}

/// A judge's parts, to start it again.
#[derive(Clone)]
pub struct JudgeSpec {
    pub name: String,
    pub rebuild: JudgeRebuild,
    pub sink: Arc<dyn ScoredSink>,
    pub activity: ActivityLog,
    pub ledger: Ledger,
}

impl JudgeSpec {
    fn args(&self) -> Result<JudgeArgs, String> {
        Ok(JudgeArgs {
            name: self.name.clone(),
            build: (self.rebuild)()?,
            sink: self.sink.clone(),
            activity: self.activity.clone(),
            ledger: self.ledger.clone(),
        })
    }
}

/// What happened under supervision.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SupervisionReport {
    /// Restarts by actor name.
    pub restarts: BTreeMap<String, u64>,
    /// `name: error` of every failure, in order.
    pub failures: Vec<String>,
    /// Prompts handed back to the source for issuing again.
    pub requeued: u64,
    /// Set when a restart storm stopped the run.
    pub storm: Option<String>,
}

pub enum SupervisorMsg {
    /// Start a generator under supervision; the reply is the slot its current actor is in.
    Generator {
        args: GeneratorArgs,
        reply: RpcReplyPort<Result<ActorSlot<GeneratorMsg>, String>>,
    },
    /// Start judge `index` under supervision (the pool, once given, gets its restarts).
    Judge {
        index: usize,
        spec: JudgeSpec,
        reply: RpcReplyPort<Result<ActorRef<crate::judge::JudgeMsg>, String>>,
    },
    /// The pool judges are routed through (restarted judges are swapped into it).
    Pool(Arc<JudgePool>),
    /// The learner (told to resync a restarted generator, or to stop on a storm).
    Learner(ActorRef<LearnerMsg>),
    /// The run is ending: children that stop or fail from now on are not restarted.
    Draining,
    Report(RpcReplyPort<SupervisionReport>),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for SupervisorMsg {}

pub struct SupervisorArgs {
    pub policy: RestartPolicy,
    pub source: ActorRef<PromptSourceMsg>,
    pub ledger: Ledger,
}

enum Child {
    Generator {
        args: GeneratorArgs,
        slot: ActorSlot<GeneratorMsg>,
    },
    Judge {
        index: usize,
        spec: JudgeSpec,
    },
}

impl Child {
    fn name(&self) -> &str {
        match self {
            Child::Generator { args, .. } => &args.name,
            Child::Judge { spec, .. } => &spec.name,
        }
    }
}

pub struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ActorId, Child>,
    pool: Option<Arc<JudgePool>>,
    learner: Option<ActorRef<LearnerMsg>>,
    recent: VecDeque<Instant>,
    draining: bool,
    report: SupervisionReport,
}

pub struct Supervisor;

impl Supervisor {
    /// Starts `child` linked to the supervisor and records it.
    async fn start(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
    ) -> Result<(), String> {
        match child {
            Child::Generator { args, slot } => {
                let (actor, _) =
                    Actor::spawn_linked(None, Generator, args.clone(), myself.get_cell())
                        .await
                        .map_err(|e| format!("starting {}: {e}", args.name))?;
                *slot.write().unwrap() = actor.clone();
                state
                    .children
                    .insert(actor.get_id(), Child::Generator { args, slot });
            }
            Child::Judge { index, spec } => {
                let (actor, _) =
                    Actor::spawn_linked(None, JudgeActor, spec.args()?, myself.get_cell())
                        .await
                        .map_err(|e| format!("starting {}: {e}", spec.name))?;
                if let Some(pool) = &state.pool {
                    pool.replace(index, actor.clone());
                }
                state
                    .children
                    .insert(actor.get_id(), Child::Judge { index, spec });
            }
        }
        Ok(())
    }

    fn stop_run(state: &mut SupervisorState, reason: String) {
        tracing::error!("supervisor: {reason}");
        state.draining = true;
        state.report.storm = Some(reason.clone());
        if let Some(learner) = &state.learner {
            let _ = learner.cast(LearnerMsg::Abort(reason));
        }
    }

    async fn failed(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        id: ActorId,
        error: String,
    ) {
        let Some(child) = state.children.remove(&id) else {
            return;
        };
        let name = child.name().to_string();
        tracing::warn!("supervisor: {name} failed: {error}");
        state.report.failures.push(format!("{name}: {error}"));
        if state.draining {
            return;
        }
        let now = Instant::now();
        state.recent.push_back(now);
        while state
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > state.args.policy.window)
        {
            state.recent.pop_front();
        }
        if state.recent.len() > state.args.policy.max_restarts {
            let reason = format!(
                "restart storm: {} actor failures within {:.0} s (supervision.max_restarts = {}); last: {name}: {error}",
                state.recent.len(),
                state.args.policy.window.as_secs_f64(),
                state.args.policy.max_restarts
            );
            Self::stop_run(state, reason);
            return;
        }
        let restarted = match child {
            Child::Generator { mut args, slot } => {
                // The resync brings the current weights; the checkpoint a resumed run started
                // from may have been pruned since.
                args.start_from = None;
                args.await_weights = true;
                let started = Self::start(myself, state, Child::Generator { args, slot }).await;
                if started.is_ok() {
                    if let Some(learner) = &state.learner {
                        let _ = learner.cast(LearnerMsg::Resync(name.clone()));
                    }
                }
                started
            }
            judge => Self::start(myself, state, judge).await,
        };
        match restarted {
            Ok(()) => {
                *state.report.restarts.entry(name.clone()).or_default() += 1;
                metrics::counter!(
                    crate::metric_series::ACTOR_RESTARTS,
                    &crate::metric_series::actor_labels(&name)
                )
                .increment(1);
            }
            Err(e) => Self::stop_run(state, format!("could not restart {name}: {e}")),
        }
        // Only now, with the replacement in place, hand back what the failed one held.
        let uids = state.args.ledger.release_held_by(id);
        if !uids.is_empty() {
            state.report.requeued += uids.len() as u64;
            let _ = state.args.source.cast(PromptSourceMsg::Requeue(uids));
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            args,
            children: HashMap::new(),
            pool: None,
            learner: None,
            recent: VecDeque::new(),
            draining: false,
            report: SupervisionReport::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Generator { args, reply } => {
                let (actor, _) =
                    match Actor::spawn_linked(None, Generator, args.clone(), myself.get_cell())
                        .await
                    {
                        Ok(spawned) => spawned,
                        Err(e) => {
                            let _ = reply.send(Err(format!("starting {}: {e}", args.name)));
                            return Ok(());
                        }
                    };
                let slot = Arc::new(RwLock::new(actor.clone()));
                state.children.insert(
                    actor.get_id(),
                    Child::Generator {
                        args,
                        slot: slot.clone(),
                    },
                );
                let _ = reply.send(Ok(slot));
            }
            SupervisorMsg::Judge { index, spec, reply } => {
                let name = spec.name.clone();
                let started = match spec.args() {
                    Ok(args) => Actor::spawn_linked(None, JudgeActor, args, myself.get_cell())
                        .await
                        .map_err(|e| format!("starting {name}: {e}")),
                    Err(e) => Err(e),
                };
                match started {
                    Ok((actor, _)) => {
                        state
                            .children
                            .insert(actor.get_id(), Child::Judge { index, spec });
                        let _ = reply.send(Ok(actor));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SupervisorMsg::Pool(pool) => state.pool = Some(pool),
            SupervisorMsg::Learner(learner) => state.learner = Some(learner),
            SupervisorMsg::Draining => state.draining = true,
            SupervisorMsg::Report(reply) => {
                let _ = reply.send(state.report.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                Self::failed(&myself, state, cell.get_id(), error.to_string()).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
