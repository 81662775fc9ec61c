//! A learner that holds no model: it samples batches from the real replay buffer, spends the
//! cost model's training and publication time, closes the batch's prompts in the ledger and
//! publishes versions to its subscribers and the prompt source in the order the real
//! [`crate::learner::Learner`] does (weights first, then the version).

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::activity::{ActivityLog, Milestone};
use crate::learner::{LearnerMsg, StepStats, WeightSubscriber};
use crate::ledger::Ledger;
use crate::prompt_source::PromptSourceMsg;
use crate::protocol::{ScoredGroup, Version, WeightUpdate};
use crate::replay_buffer::BufferMsg;
use crate::simulated::generator::spend;
use crate::simulated::CostModel;

pub struct SimLearnerArgs {
    pub name: String,
    pub cost: CostModel,
    pub total_steps: u64,
    pub buffer: ActorRef<BufferMsg>,
    pub source: ActorRef<PromptSourceMsg>,
    pub subscribers: Vec<WeightSubscriber>,
    pub ledger: Ledger,
    pub activity: ActivityLog,
    pub stats: flume::Sender<StepStats>,
}

pub struct SimLearnerState {
    args: SimLearnerArgs,
    version: Version,
}

pub struct SimLearner;

impl Actor for SimLearner {
    type Msg = LearnerMsg;
    type State = SimLearnerState;
    type Arguments = SimLearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(LearnerMsg::Step)?;
        Ok(SimLearnerState { args, version: 0 })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let LearnerMsg::Finish = message {
            state.args.total_steps = state.version;
            myself.stop(Some("finished early".to_string()));
            return Ok(());
        }
        let step = state.version;
        if step >= state.args.total_steps {
            return Ok(());
        }
        let batch: Vec<ScoredGroup> = ractor::call!(state.args.buffer, |reply| {
            BufferMsg::Sample {
                version: step,
                reply,
            }
        })?;
        let activity = state.args.activity.clone();
        let started = Instant::now();
        let start = activity.now();
        let mut stats = StepStats {
            step,
            groups: batch.len(),
            ..Default::default()
        };
        let (mut reward_sum, mut rewards) = (0.0, 0usize);
        for scored in &batch {
            let staleness = step.saturating_sub(scored.group.policy_version);
            stats.max_staleness = stats.max_staleness.max(staleness);
            *stats.staleness_counts.entry(staleness).or_default() += 1;
            stats.response_tokens += scored
                .group
                .rollouts
                .iter()
                .map(|r| r.tokens.len())
                .sum::<usize>();
            reward_sum += scored.rewards.iter().map(|&r| r as f64).sum::<f64>();
            rewards += scored.rewards.len();
        }
        stats.reward_mean = reward_sum / rewards.max(1) as f64;
        stats.mean_response_tokens = stats.response_tokens as f64
            / (batch.len() * batch.first().map_or(1, |g| g.rewards.len())).max(1) as f64;
        spend(started, state.args.cost.learn_s(stats.response_tokens)).await;
        for scored in &batch {
            state.args.ledger.trained(scored.group.prompt.uid);
            activity.mark(scored.group.prompt.uid, Milestone::Trained);
        }
        stats.ledger = state.args.ledger.snapshot();
        stats.train_ms = started.elapsed().as_secs_f64() * 1e3;
        activity.record(&state.args.name, "train", start, activity.now());
        state.version += 1;
        stats.version = state.version;

        let sync_started = Instant::now();
        let sync_start = activity.now();
        let subscribers = state.args.subscribers.len();
        spend(sync_started, state.args.cost.sync_s(subscribers)).await;
        let copy_ms = sync_started.elapsed().as_secs_f64() * 1e3 / subscribers.max(1) as f64;
        for subscriber in &state.args.subscribers {
            stats.sync_bytes += state.args.cost.weight_bytes;
            let update = WeightUpdate {
                version: state.version,
                tensors: Vec::new(),
                bytes: state.args.cost.weight_bytes,
                copy_ms,
                recycle: None,
            };
            if let Err(e) = (subscriber.send)(update) {
                tracing::warn!(
                    "{}: {} refused weights: {e}",
                    state.args.name,
                    subscriber.name
                );
            }
        }
        stats.sync_ms = sync_started.elapsed().as_secs_f64() * 1e3;
        activity.record(&state.args.name, "sync", sync_start, activity.now());
        state
            .args
            .source
            .cast(PromptSourceMsg::Version(state.version))?;
        stats.time = activity.now();
        let _ = state.args.stats.send(stats);
        if state.version < state.args.total_steps {
            myself.cast(LearnerMsg::Step)?;
        } else {
            myself.stop(Some("done".to_string()));
        }
        Ok(())
    }
}
