//! The topology builder: one way to place, run and take down the actors of a run, for real and
//! simulated engines alike (and, next, for roles placed elsewhere).
//!
//! A run goes through five named phases:
//!
//! 1. **restore** ([`Restored::from_checkpoint`]): what a resumed run starts from;
//! 2. **spawn** ([`Topology::spawn`]): the prompt source, replay buffer, supervisor, post-judge
//!    stages, judges (behind a [`JudgePool`] that records holds in the ledger), generators (under
//!    the supervisor, so a failed one is restarted and its prompts issued again), the evaluator
//!    and the learner, wired by weight subscriptions;
//! 3. **drive** ([`Topology::drive_steps`]): learner steps as they come, until the last one,
//!    Ctrl-C, or a stall;
//! 4. **drain** ([`Topology::drain`]): collect evaluations, admit nothing more, stop generators
//!    and judges (what they hold stays in flight), take the supervisor's and the buffer's
//!    reports;
//! 5. **summarise** ([`Finished::summary`]): `summary.json`'s numbers.
//!
//! What differs between a real and a simulated run is only the [`TopologyPlan`]: which engine
//! each role gets. The protocol, supervision, ledger holds and dropped-prompt replacement are
//! the same code.

pub mod config_plan;
mod drain;
mod drive;
pub mod node_load;
pub mod plan;
mod restore;
mod spawn;
pub mod step_history;
pub mod summary;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use grlhf_actors::activity::ActivityLog;
use grlhf_actors::evaluator::{EvalStats, EvaluatorMsg};
use grlhf_actors::generator::GeneratorMsg;
use grlhf_actors::judge::JudgePool;
use grlhf_actors::learner::{LearnerMsg, LearnerOutcome, StepStats};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::PromptSourceMsg;
use grlhf_actors::replay_buffer::BufferMsg;
use grlhf_actors::supervisor::{ActorSlot, SupervisorMsg};
use ractor::ActorRef;
use tokio::task::JoinHandle;

pub use config_plan::{config_plan, evaluator_engine, judges_on, Devices, RealRun, RemoteRoles};
pub use drain::Finished;
pub use drive::{Driven, StepObserver};
pub use plan::{
    EvaluatorPlan, GeneratorPlan, JudgePlan, LearnerPlan, Placement, StagePlan, TopologyPlan,
};
pub use restore::{Restored, Resume};
pub use step_history::StepHistory;
pub use summary::{Reliability, RunOutcome, Summary};

/// A spawned run: every actor's address, the channels the learner and evaluator report on, and
/// what the run started from.
pub struct Topology {
    activity: ActivityLog,
    ledger: Ledger,
    source: (ActorRef<PromptSourceMsg>, JoinHandle<()>),
    buffer: (ActorRef<BufferMsg>, JoinHandle<()>),
    supervisor: (ActorRef<SupervisorMsg>, JoinHandle<()>),
    pool: Arc<JudgePool>,
    generators: Vec<ActorSlot<GeneratorMsg>>,
    learner: (ActorRef<LearnerMsg>, JoinHandle<()>),
    evaluator: Option<(ActorRef<EvaluatorMsg>, JoinHandle<()>)>,
    /// Evaluations expected: the start, then every `every`-th version and the last.
    evaluations_expected: usize,
    stats: flume::Receiver<StepStats>,
    evals: flume::Receiver<EvalStats>,
    /// Evaluations that arrived while driving (already told to the observer).
    evals_seen: Vec<EvalStats>,
    /// Evaluations the evaluator skipped (a remote one's worker was unreachable).
    evals_skipped: usize,
    outcome: Arc<Mutex<LearnerOutcome>>,
    killer: Option<JoinHandle<()>>,
    stop_killing: Arc<AtomicBool>,
    kills: crate::faults::KillCounts,
    start_version: u64,
    trained_at_start: u64,
    patience: std::time::Duration,
    /// Steps so far, the restored ones included.
    steps: StepHistory,
    reliability: Reliability,
}

impl Topology {
    /// The run's activity log (spans, counters, milestones).
    pub fn activity(&self) -> &ActivityLog {
        &self.activity
    }

    /// The judge pool (fault injection and tests reach judges through it).
    pub fn pool(&self) -> &Arc<JudgePool> {
        &self.pool
    }

    /// The steps recorded so far, restored ones included.
    pub fn steps(&self) -> &StepHistory {
        &self.steps
    }
}
