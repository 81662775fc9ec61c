//! A generator that holds no model: it takes prompts from the real prompt source, spends the
//! cost model's generation time, and hands groups of n token-sized rollouts to the judges —
//! the same messages, admission and weight handling as [`crate::generator::Generator`].

use std::sync::Arc;
use std::time::Duration;

use grlhf_models::generation::FinishReason;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::activity::{ActivityLog, Milestone};
use crate::generator::GeneratorMsg;
use crate::ledger::Ledger;
use crate::prompt_source::{PromptSourceMsg, Waker};
use crate::protocol::{GroupSink, Rollout, RolloutGroup, Version};
use crate::simulated::CostModel;

pub struct SimGeneratorArgs {
    pub name: String,
    pub cost: CostModel,
    pub group_size: usize,
    pub batch_prompts: usize,
    pub source: ActorRef<PromptSourceMsg>,
    pub sink: Arc<dyn GroupSink>,
    pub activity: ActivityLog,
    pub ledger: Ledger,
}

pub struct SimGeneratorState {
    args: SimGeneratorArgs,
    version: Version,
    pending: Option<Version>,
    stopped: bool,
}

pub struct SimGenerator;

/// n rollouts of `tokens` tokens each, sized like real ones (ids, log-probs and text).
pub fn simulated_rollouts(n: usize, tokens: usize, seed: u64) -> Vec<Rollout> {
    (0..n)
        .map(|i| Rollout {
            tokens: (0..tokens as i64).map(|t| (t + i as i64) % 1000).collect(),
            logprobs: vec![-1.0; tokens],
            finish_reason: FinishReason::Stop,
            text: format!("{seed}-{i} ") + &"tok ".repeat(tokens),
        })
        .collect()
}

/// Waits until `seconds` after `from` (a deadline, so time spent around the wait is not added).
/// The wait is an OS-thread sleep on tokio's blocking pool: tokio's own timer rounds up to whole
/// milliseconds, which would add several percent to costs of tens of milliseconds.
pub async fn spend(from: std::time::Instant, seconds: f64) {
    if seconds > 0.0 {
        let deadline = from + Duration::from_secs_f64(seconds);
        let _ = tokio::task::spawn_blocking(move || {
            std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()))
        })
        .await;
    }
}

impl Actor for SimGenerator {
    type Msg = GeneratorMsg;
    type State = SimGeneratorState;
    type Arguments = SimGeneratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(GeneratorMsg::Step)?;
        Ok(SimGeneratorState {
            args,
            version: 0,
            pending: None,
            stopped: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GeneratorMsg::Weights(update) => state.pending = Some(update.version),
            GeneratorMsg::Fault => panic!("injected fault: {} fails", state.args.name),
            GeneratorMsg::Stop => {
                state.stopped = true;
                myself.stop(None);
            }
            GeneratorMsg::Step => {
                if state.stopped {
                    return Ok(());
                }
                if let Some(version) = state.pending.take() {
                    if version > state.version {
                        state.version = version;
                        state.args.activity.note_version(&state.args.name, version);
                    }
                }
                let me = myself.clone();
                let waker: Waker = Box::new(move || {
                    let _ = me.cast(GeneratorMsg::Step);
                });
                let max = state.args.batch_prompts;
                let prompts = ractor::call!(state.args.source, |reply| PromptSourceMsg::Take {
                    max,
                    waker,
                    reply
                })?;
                if prompts.is_empty() {
                    return Ok(());
                }
                let activity = &state.args.activity;
                for (item, _) in &prompts {
                    activity.mark(item.uid, Milestone::Taken);
                }
                let n = state.args.group_size;
                let started = std::time::Instant::now();
                let start = activity.now();
                spend(started, state.args.cost.generate_s(prompts.len(), n)).await;
                let end = activity.now();
                activity.record(&state.args.name, "generate", start, end);
                let tokens = prompts.len() * n * state.args.cost.response_tokens;
                activity.add("generated_tokens", tokens as u64);
                activity.add("generated_samples", (prompts.len() * n) as u64);
                for (item, spec) in prompts {
                    let uid = item.uid;
                    let group = RolloutGroup {
                        rollouts: simulated_rollouts(n, state.args.cost.response_tokens, uid),
                        prompt: item,
                        system: spec.system,
                        user: spec.user,
                        prompt_tokens: vec![0; 32],
                        policy_version: state.version,
                        generator: state.args.name.clone(),
                        generate_ms: (end - start) * 1e3,
                        temperature: 1.0,
                    };
                    activity.mark(uid, Milestone::Generated);
                    if let Err(e) = state.args.sink.send_group(group) {
                        tracing::warn!("{}: sink refused a group: {e}", state.args.name);
                        state.args.ledger.dropped(uid, "sink_closed");
                    }
                }
                myself.cast(GeneratorMsg::Step)?;
            }
        }
        Ok(())
    }
}
