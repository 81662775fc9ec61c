//! Judges: a [`Judge`] turns a group of rollouts into one reward per response; the [`JudgeActor`]
//! runs one on its own device thread and hands scored groups to its sink. Built-ins:
//! [`crate::rule_judge::RuleJudge`] (a reward function of prompt, response and reference) and
//! [`crate::grm_judge::GrmJudge`] (grouped comparison by a generative reward model).

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::activity::{ActivityLog, Milestone};
use crate::device_worker::DeviceWorker;
use crate::ledger::Ledger;
use crate::protocol::{GroupSink, JudgeDetails, RolloutGroup, ScoredGroup, ScoredSink};

/// Scores groups; runs on the judge's device thread (so it may own a model).
pub trait Judge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String>;
}

/// Builds a judge on its device thread.
pub type JudgeBuilder = Box<dyn FnOnce() -> Result<Box<dyn Judge>, String> + Send>;

pub enum JudgeMsg {
    Group(RolloutGroup),
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
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let JudgeMsg::Group(group) = message;
        let start = state.activity.now();
        let started = Instant::now();
        let (group, result) = state
            .worker
            .run(move |judge: &mut Box<dyn Judge>| {
                let result = judge.score(&group);
                (group, result)
            })
            .await?;
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
                metrics::counter!("grlhf_judge_parse_failures")
                    .increment(details.parse_failures as u64);
                state.activity.add("judgments", details.judgments as u64);
                state
                    .activity
                    .add("parse_failures", details.parse_failures as u64);
                state.activity.mark(uid, Milestone::Judged);
                if let Err(e) = state.sink.send_scored(ScoredGroup {
                    group,
                    rewards,
                    details,
                }) {
                    tracing::warn!("judge {}: sink refused a group: {e}", state.name);
                    state.ledger.dropped(uid, "sink_closed");
                }
            }
            Ok((rewards, _)) => {
                tracing::error!(
                    "judge {}: {} rewards for {} responses (or a non-finite one)",
                    state.name,
                    rewards.len(),
                    group.rollouts.len()
                );
                state.ledger.dropped(uid, "judge_error");
            }
            Err(e) => {
                tracing::error!("judge {}: {e}", state.name);
                state.ledger.dropped(uid, "judge_error");
            }
        }
        Ok(())
    }
}

/// Generators hand groups to judges through this (round-robin over a pool).
pub struct JudgePool {
    judges: Vec<ActorRef<JudgeMsg>>,
    next: std::sync::atomic::AtomicUsize,
}

impl JudgePool {
    pub fn new(judges: Vec<ActorRef<JudgeMsg>>) -> JudgePool {
        JudgePool {
            judges,
            next: Default::default(),
        }
    }
}

impl GroupSink for JudgePool {
    fn send_group(&self, group: RolloutGroup) -> Result<(), String> {
        if self.judges.is_empty() {
            return Err("no judges".to_string());
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.judges.len();
        self.judges[i]
            .cast(JudgeMsg::Group(group))
            .map_err(|e| e.to_string())
    }
}
