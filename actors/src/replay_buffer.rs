//! The replay buffer: scored groups tagged with the policy version that produced them.
//!
//! It never hands the learner a group more than η (`max_staleness`) versions older than the
//! learner: when the learner at version v asks for a batch, groups with version < v − η are
//! dropped (counted, and closed in the ledger as `stale`). Batches are the B groups of the oldest
//! policy versions, sampled without replacement. A request that cannot be served yet waits for
//! groups to arrive.
//!
//! With the `wait` policy the buffer also holds a request while a prompt that could come back
//! at the oldest trainable version (admitted at or before v − η) is still in flight, so a slow
//! generator's group is trained in this step instead of going stale in the next.

use std::collections::VecDeque;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::ledger::{DropReason, Ledger};
use crate::protocol::{
    JudgeDetails, PromptItem, Rollout, RolloutGroup, ScoredGroup, ScoredSink, Version,
};

/// A scored group as saved: the prompt by uid (the source knows its place in the prompt set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedGroup {
    pub uid: u64,
    pub system: String,
    pub user: String,
    pub prompt_tokens: Vec<i64>,
    pub rollouts: Vec<Rollout>,
    pub policy_version: Version,
    pub generator: String,
    pub generate_ms: f64,
    pub temperature: f64,
    pub rewards: Vec<f32>,
}

impl From<&ScoredGroup> for SavedGroup {
    fn from(g: &ScoredGroup) -> SavedGroup {
        SavedGroup {
            uid: g.group.prompt.uid,
            system: g.group.system.clone(),
            user: g.group.user.clone(),
            prompt_tokens: g.group.prompt_tokens.clone(),
            rollouts: g.group.rollouts.clone(),
            policy_version: g.group.policy_version,
            generator: g.group.generator.clone(),
            generate_ms: g.group.generate_ms,
            temperature: g.group.temperature,
            rewards: g.rewards.clone(),
        }
    }
}

impl SavedGroup {
    /// The group again, around its prompt.
    pub fn into_scored(self, prompt: std::sync::Arc<PromptItem>) -> ScoredGroup {
        ScoredGroup {
            group: RolloutGroup {
                prompt,
                system: self.system,
                user: self.user,
                prompt_tokens: self.prompt_tokens,
                rollouts: self.rollouts,
                policy_version: self.policy_version,
                generator: self.generator,
                generate_ms: self.generate_ms,
                temperature: self.temperature,
            },
            rewards: self.rewards,
            details: JudgeDetails::default(),
        }
    }
}

pub enum BufferMsg {
    Scored(Box<ScoredGroup>),
    /// The learner at `version` asks for `batch_groups` groups.
    Sample {
        version: Version,
        reply: RpcReplyPort<Vec<ScoredGroup>>,
    },
    Stats(RpcReplyPort<BufferStats>),
    /// Copies of the buffered groups, for a checkpoint.
    Snapshot(RpcReplyPort<Vec<SavedGroup>>),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for BufferMsg {}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BufferStats {
    pub buffered: usize,
    pub received: u64,
    pub served: u64,
    pub dropped_stale: u64,
    pub max_staleness_served: u64,
}

/// What happens to groups that would exceed the staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Serve what is there; drop (and count) groups that went stale.
    #[default]
    Drop,
    /// Hold a batch until at-risk prompts in flight have arrived, then serve oldest first.
    Wait,
}

pub struct BufferArgs {
    pub batch_groups: usize,
    pub max_staleness: u64,
    pub stale_policy: StalePolicy,
    pub ledger: Ledger,
    /// Groups restored from a checkpoint.
    pub restore: Vec<ScoredGroup>,
}

pub struct BufferState {
    args: BufferArgs,
    groups: VecDeque<ScoredGroup>,
    learner_version: Version,
    waiting: Option<RpcReplyPort<Vec<ScoredGroup>>>,
    stats: BufferStats,
}

impl BufferState {
    fn is_stale(&self, group: &ScoredGroup) -> bool {
        group.group.policy_version + self.args.max_staleness < self.learner_version
    }

    fn purge_stale(&mut self) {
        let before = self.groups.len();
        let (keep, stale): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.groups).into_iter().partition(|g| {
                g.group.policy_version + self.args.max_staleness >= self.learner_version
            });
        self.groups = keep;
        for g in stale {
            self.args
                .ledger
                .dropped(g.group.prompt.uid, DropReason::Stale);
        }
        let dropped = before - self.groups.len();
        self.stats.dropped_stale += dropped as u64;
    }

    /// Wait policy: a prompt admitted at or before v − η is still on its way.
    fn at_risk_in_flight(&self) -> bool {
        if self.args.stale_policy != StalePolicy::Wait
            || self.learner_version < self.args.max_staleness
        {
            return false;
        }
        let limit = self.learner_version - self.args.max_staleness;
        let buffered: std::collections::HashSet<u64> =
            self.groups.iter().map(|g| g.group.prompt.uid).collect();
        self.args
            .ledger
            .in_flight()
            .iter()
            .any(|&(uid, admitted_at)| admitted_at <= limit && !buffered.contains(&uid))
    }

    fn try_serve(&mut self) {
        if self.groups.len() < self.args.batch_groups
            || self.waiting.is_none()
            || self.at_risk_in_flight()
        {
            return;
        }
        let Some(reply) = self.waiting.take() else {
            return;
        };
        // Oldest policy versions first (stable: arrival order within a version).
        self.groups
            .make_contiguous()
            .sort_by_key(|g| g.group.policy_version);
        let batch: Vec<ScoredGroup> = self.groups.drain(..self.args.batch_groups).collect();
        for g in &batch {
            let staleness = self.learner_version - g.group.policy_version.min(self.learner_version);
            self.stats.max_staleness_served = self.stats.max_staleness_served.max(staleness);
        }
        self.stats.served += batch.len() as u64;
        if reply.send(batch).is_err() {
            // The learner is gone: its batch stays in flight in the ledger.
            tracing::warn!("replay buffer: the learner left before its batch");
        }
    }
}

pub struct ReplayBuffer;

impl Actor for ReplayBuffer {
    type Msg = BufferMsg;
    type State = BufferState;
    type Arguments = BufferArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut args = args;
        let groups = std::mem::take(&mut args.restore).into();
        Ok(BufferState {
            args,
            groups,
            learner_version: 0,
            waiting: None,
            stats: BufferStats::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BufferMsg::Scored(group) => {
                let group = *group;
                state.stats.received += 1;
                if state.is_stale(&group) {
                    state.stats.dropped_stale += 1;
                    state
                        .args
                        .ledger
                        .dropped(group.group.prompt.uid, DropReason::Stale);
                } else {
                    state.groups.push_back(group);
                }
                state.try_serve();
            }
            BufferMsg::Sample { version, reply } => {
                state.learner_version = state.learner_version.max(version);
                state.purge_stale();
                state.waiting = Some(reply);
                state.try_serve();
            }
            BufferMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.buffered = state.groups.len();
                let _ = reply.send(stats);
            }
            BufferMsg::Snapshot(reply) => {
                let _ = reply.send(state.groups.iter().map(SavedGroup::from).collect());
            }
        }
        // After every arrival, purge and serve: the groups scored and waiting for the learner.
        metrics::gauge!(crate::metric_series::QUEUE_DEPTH, "stage" => "buffer")
            .set(state.groups.len() as f64);
        Ok(())
    }
}

impl ScoredSink for ActorRef<BufferMsg> {
    fn send_scored(&self, group: ScoredGroup) -> Result<(), String> {
        self.cast(BufferMsg::Scored(Box::new(group)))
            .map_err(|e| e.to_string())
    }
}
