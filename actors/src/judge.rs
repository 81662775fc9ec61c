//! Judges: a [`Judge`] turns a group of rollouts into one reward per response; the [`JudgeActor`]
//! runs one on its own device thread and hands scored groups to its sink. Built-ins:
//! [`crate::rule_judge::RuleJudge`] (a reward function of prompt, response and reference) and
//! [`crate::grm_judge::GrmJudge`] (grouped comparison by a generative reward model).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::activity::{ActivityLog, Milestone};
use crate::device_worker::DeviceWorker;
use crate::ledger::{DropReason, Ledger};
use crate::metric_series as series;
use crate::protocol::{GroupSink, JudgeDetails, RolloutGroup, ScoredGroup, ScoredSink};

/// Scores groups; runs on the judge's device thread (so it may own a model).
pub trait Judge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String>;

    /// `Some(why)` after a failed [`Judge::score`] when this judge cannot score any group now:
    /// it runs elsewhere and its worker is gone, frozen or refusing. The judge actor then fails
    /// instead of dropping the group, so its supervisor restarts it and the prompts it held are
    /// issued again. Judges in this process keep the default.
    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// Builds a judge on its device thread.
pub type JudgeBuilder = Box<dyn FnOnce() -> Result<Box<dyn Judge>, String> + Send>;

pub enum JudgeMsg {
    Group(RolloutGroup),
    /// A group routed by a [`JudgePool`]: the slot counts it against this judge until the
    /// message is done with (dropped), judged or not.
    Queued(RolloutGroup, QueueSlot),
    /// Fail on purpose (fault injection): the judge panics on its next group, losing that group
    /// and its queue, as a crashing judge would.
    Fault,
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for JudgeMsg {}

/// One group queued at a judge; dropping it takes the group off the judge's count.
#[derive(Debug)]
pub struct QueueSlot {
    count: Arc<AtomicUsize>,
    /// The group in the judge stage's queue-depth gauge, for as long as the slot lives.
    _depth: series::StageDepth,
}

impl QueueSlot {
    fn take(count: &Arc<AtomicUsize>) -> QueueSlot {
        count.fetch_add(1, Ordering::AcqRel);
        QueueSlot {
            count: count.clone(),
            _depth: series::StageDepth::enter("judge", 1),
        }
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct JudgeArgs {
    pub name: String,
    pub build: JudgeBuilder,
    pub sink: Arc<dyn ScoredSink>,
    pub activity: ActivityLog,
    pub ledger: Ledger,
}

pub struct JudgeState {
    name: String,
    worker: DeviceWorker<Box<dyn Judge>>,
    sink: Arc<dyn ScoredSink>,
    activity: ActivityLog,
    ledger: Ledger,
    /// An injected fault is pending.
    fault: bool,
}

pub struct JudgeActor;

impl Actor for JudgeActor {
    type Msg = JudgeMsg;
    type State = JudgeState;
    type Arguments = JudgeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let worker = DeviceWorker::spawn(&args.name, args.build)?;
        Ok(JudgeState {
            name: args.name,
            worker,
            sink: args.sink,
            activity: args.activity,
            ledger: args.ledger,
            fault: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The slot, if any, is held until this message is handled.
        let (group, _slot) = match message {
            JudgeMsg::Group(group) => (group, None),
            JudgeMsg::Queued(group, slot) => (group, Some(slot)),
            JudgeMsg::Fault => {
                state.fault = true;
                return Ok(());
            }
        };
        if state.fault {
            panic!("injected fault: judge {} fails", state.name);
        }
        let start = state.activity.now();
        let started = Instant::now();
        let (group, result, unreachable) = state
            .worker
            .run(move |judge: &mut Box<dyn Judge>| {
                let result = judge.score(&group);
                let unreachable = result.as_ref().err().and_then(|_| judge.unreachable());
                (group, result, unreachable)
            })
            .await?;
        if let Some(why) = unreachable {
            // Failing hands the group's prompt back to be issued again (the supervisor releases
            // what this judge held); dropping it would lose it for this run.
            return Err(why.into());
        }
        state
            .activity
            .record(&state.name, "judge", start, state.activity.now());
        let uid = group.prompt.uid;
        match result {
            Ok((rewards, mut details))
                if rewards.len() == group.rollouts.len()
                    && rewards.iter().all(|r| r.is_finite()) =>
            {
                details.judge = state.name.clone();
                details.judge_ms = started.elapsed().as_secs_f64() * 1e3;
                metrics::counter!(series::JUDGE_PARSE_FAILURES)
                    .increment(details.parse_failures as u64);
                metrics::counter!(series::JUDGMENTS).increment(details.judgments as u64);
                state.activity.add("judgments", details.judgments as u64);
                state
                    .activity
                    .add("parse_failures", details.parse_failures as u64);
                state.activity.mark(uid, Milestone::Judged);
                // Past the judge: a later failure of this judge must not re-issue the prompt.
                state.ledger.unhold(uid);
                if let Err(e) = state.sink.send_scored(ScoredGroup {
                    group,
                    rewards,
                    details,
                }) {
                    tracing::warn!("judge {}: sink refused a group: {e}", state.name);
                    state.ledger.dropped(uid, DropReason::SinkClosed);
                }
            }
            Ok((rewards, _)) => {
                tracing::error!(
                    "judge {}: {} rewards for {} responses (or a non-finite one)",
                    state.name,
                    rewards.len(),
                    group.rollouts.len()
                );
                state.ledger.dropped(uid, DropReason::JudgeError);
            }
            Err(e) => {
                tracing::error!("judge {}: {e}", state.name);
                state.ledger.dropped(uid, DropReason::JudgeError);
            }
        }
        Ok(())
    }
}

/// Generators hand groups to judges through this: each group goes to the judge with the fewest
/// groups queued or in progress (ties rotate), so a judge held up by a long group (GRM judging
/// time grows with the responses' lengths) does not collect a queue while others idle, as it
/// would under round-robin.
///
/// A supervisor swaps a restarted judge in with [`JudgePool::replace`]; a group whose judge is
/// gone is routed to the next one. With a ledger, the pool records which judge holds each group.
pub struct JudgePool {
    judges: Vec<(RwLock<ActorRef<JudgeMsg>>, Arc<AtomicUsize>)>,
    next: AtomicUsize,
    ledger: Option<Ledger>,
}

impl JudgePool {
    pub fn new(judges: Vec<ActorRef<JudgeMsg>>) -> JudgePool {
        JudgePool {
            judges: judges
                .into_iter()
                .map(|j| (RwLock::new(j), Arc::new(AtomicUsize::new(0))))
                .collect(),
            next: AtomicUsize::new(0),
            ledger: None,
        }
    }

    /// Records in `ledger` which judge holds each routed group (for restarts).
    pub fn with_ledger(mut self, ledger: Ledger) -> JudgePool {
        self.ledger = Some(ledger);
        self
    }

    /// Groups queued or in progress at each judge.
    pub fn loads(&self) -> Vec<usize> {
        self.judges
            .iter()
            .map(|(_, l)| l.load(Ordering::Acquire))
            .collect()
    }

    /// The judges' current actors.
    pub fn judges(&self) -> Vec<ActorRef<JudgeMsg>> {
        self.judges
            .iter()
            .map(|(j, _)| j.read().unwrap().clone())
            .collect()
    }

    /// Puts a restarted judge in place of judge `index`.
    pub fn replace(&self, index: usize, judge: ActorRef<JudgeMsg>) {
        *self.judges[index].0.write().unwrap() = judge;
    }

    /// Judges by load, least first, scanning from a rotating start so ties spread.
    ///
    /// The loads are read once, into a snapshot, and the snapshot is sorted: other threads
    /// change the counters while we route, and a sort whose keys move under it has no total
    /// order (std's sort panics on that).
    pub fn by_load(&self) -> Vec<usize> {
        let n = self.judges.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let loads = self.loads();
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        // Stable: among equal loads the rotation decides.
        order.sort_by_key(|&i| loads[i]);
        order
    }
}

impl GroupSink for JudgePool {
    fn send_group(&self, group: RolloutGroup) -> Result<(), String> {
        if self.judges.is_empty() {
            return Err("no judges".to_string());
        }
        let mut group = group;
        let mut last_error = String::new();
        for index in self.by_load() {
            let (judge, load) = &self.judges[index];
            let judge = judge.read().unwrap().clone();
            if let Some(ledger) = &self.ledger {
                ledger.hold(group.prompt.uid, judge.get_id());
            }
            let slot = QueueSlot::take(load);
            match judge.cast(JudgeMsg::Queued(group, slot)) {
                Ok(()) => return Ok(()),
                Err(ractor::MessagingErr::SendErr(JudgeMsg::Queued(back, _))) => {
                    last_error = format!("judge {} is gone", judge.get_id());
                    group = back;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("no judge took the group ({last_error})"))
    }
}
