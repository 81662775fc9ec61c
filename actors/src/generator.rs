//! The generator: drives a [`RolloutEngine`] through a [`RolloutWorkflow`] on its device thread, takes prompts from the source,
//! samples n responses per prompt in batches, and hands each group to its sink. Weight updates
//! arrive as messages and are applied between batches — the copy itself was made on the
//! learner's side into fresh tensors, so generation never waits for one to land.
//!
//! Each batch samples from a stream seeded by the generator's seed and the batch's first prompt
//! uid, not by a running count, so a prompt issued again after a restart or a resume is sampled
//! exactly as it would have been. A restarted generator takes no prompt until the learner's
//! current weights have arrived. The protocol here is the same for every engine: real and
//! simulated generators differ only in the engine they are given.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tch::Device;

use crate::activity::{ActivityLog, Milestone};
use crate::device_worker::DeviceWorker;
use crate::error::ActorError;
use crate::ledger::{DropReason, Ledger};
use crate::metric_series as series;
use crate::prompt_source::{PromptSourceMsg, PromptSpec};
use crate::protocol::{GroupSink, PromptItem, RolloutGroup, Version, WeightUpdate};
pub use crate::rollout_engine::GeneratorConfig;
use crate::rollout_engine::{GeneratedGroup, RolloutEngine, RolloutEngineBuilder};
use crate::rollout_workflow::RolloutWorkflow;

pub enum GeneratorMsg {
    /// Take prompts and generate one batch (sent to itself, and by the source's waker).
    Step,
    Weights(WeightUpdate),
    Stop,
    /// Fail on purpose (fault injection): the next batch panics after taking its prompts, as a
    /// generator crashing mid-generation would.
    Fault,
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for GeneratorMsg {}

#[derive(Clone)]
pub struct GeneratorArgs {
    pub name: String,
    /// Builds the engine on the generator's device thread (again on a restart).
    pub engine: RolloutEngineBuilder,
    /// What a trajectory is (single turn by default; a user's multi-turn workflow).
    pub workflow: Arc<dyn RolloutWorkflow>,
    /// Where the engine runs: weight updates are copied onto this device.
    pub device: Device,
    pub group_size: usize,
    pub config: GeneratorConfig,
    pub seed: u64,
    pub source: ActorRef<PromptSourceMsg>,
    pub sink: Arc<dyn GroupSink>,
    pub activity: ActivityLog,
    pub ledger: Ledger,
    /// Weights (a safetensors file) to load over the engine's own, at this version (a resume).
    pub start_from: Option<(std::path::PathBuf, Version)>,
    /// Take no prompt until a weight update arrives (a restart: the learner sends its current
    /// weights).
    pub await_weights: bool,
}

pub struct GeneratorState {
    args: GeneratorArgs,
    worker: DeviceWorker<Box<dyn RolloutEngine>>,
    version: Version,
    pending: Option<WeightUpdate>,
    batches: u64,
    stopped: bool,
    /// An injected fault is pending.
    fault: bool,
}

/// Prompts a batch took, with the specs the engine reads.
type Taken = Vec<(Arc<PromptItem>, PromptSpec)>;

pub struct Generator;

impl Generator {
    async fn apply_pending(state: &mut GeneratorState) -> Result<(), ActorProcessingErr> {
        let Some(update) = state.pending.take() else {
            return Ok(());
        };
        if update.version <= state.version && state.batches > 0 {
            tracing::warn!(generator = %state.args.name, "ignoring weights v{} (have v{})", update.version, state.version);
            return Ok(());
        }
        let start = state.args.activity.now();
        let version = update.version;
        let update = state
            .worker
            .run(move |engine: &mut Box<dyn RolloutEngine>| {
                engine.apply_weights(&update.tensors).map(|()| update)
            })
            .await??;
        if let Some(recycle) = update.recycle {
            let _ = recycle.send(update.tensors);
        }
        state
            .args
            .activity
            .record(&state.args.name, "sync", start, state.args.activity.now());
        state.version = version;
        state.args.activity.note_version(&state.args.name, version);
        Ok(())
    }

    /// Up to `batch_prompts` prompts from the source, held in the ledger by this generator.
    /// Empty when none is admissible now: the waker brings the generator back.
    async fn take(
        myself: &ActorRef<GeneratorMsg>,
        // `&mut`: the state holds tensors (not `Sync`), and this borrow lives across an await.
        state: &mut GeneratorState,
    ) -> Result<Taken, ActorProcessingErr> {
        let me = myself.clone();
        let waker: crate::prompt_source::Waker = Box::new(move || {
            let _ = me.cast(GeneratorMsg::Step);
        });
        let max = state.args.config.batch_prompts;
        let prompts = ractor::call!(state.args.source, |reply| PromptSourceMsg::Take {
            max,
            waker,
            reply
        })?;
        for (item, _) in &prompts {
            state.args.ledger.hold(item.uid, myself.get_id());
            state.args.activity.mark(item.uid, Milestone::Taken);
        }
        Ok(prompts)
    }

    /// Runs one batch on the engine; records the time spent.
    async fn generate(
        state: &mut GeneratorState,
        prompts: &Taken,
    ) -> Result<(Result<Vec<GeneratedGroup>, ActorError>, f64), ActorProcessingErr> {
        let n = state.args.group_size;
        let config = state.args.config.clone();
        let seed = state
            .args
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(prompts[0].0.uid);
        let specs: Vec<PromptSpec> = prompts.iter().map(|(_, s)| s.clone()).collect();
        let started = Instant::now();
        let start = state.args.activity.now();
        let workflow = state.args.workflow.clone();
        let result = state
            .worker
            .run(move |engine: &mut Box<dyn RolloutEngine>| {
                workflow.run(engine.as_mut(), &specs, n, &config, seed)
            })
            .await?;
        let end = state.args.activity.now();
        state
            .args
            .activity
            .record(&state.args.name, "generate", start, end);
        state.batches += 1;
        Ok((result, started.elapsed().as_secs_f64() * 1e3))
    }

    /// Hands each group to the sink; a refused group is dropped and counted.
    fn hand_on(
        state: &GeneratorState,
        prompts: Taken,
        groups: Vec<GeneratedGroup>,
        version: Version,
        generate_ms: f64,
    ) {
        let args = &state.args;
        // Generated by the policy: a multi-turn trajectory's environment tokens are not.
        let tokens: usize = groups
            .iter()
            .flat_map(|g| g.1.iter())
            .map(|r| r.policy_tokens())
            .sum();
        metrics::counter!(series::GENERATED_TOKENS).increment(tokens as u64);
        metrics::counter!(series::GENERATED_SAMPLES)
            .increment((groups.len() * args.group_size) as u64);
        args.activity.add("generated_tokens", tokens as u64);
        args.activity
            .add("generated_samples", (groups.len() * args.group_size) as u64);
        for ((item, spec), (prompt_tokens, rollouts)) in prompts.into_iter().zip(groups) {
            let group = RolloutGroup {
                prompt: item,
                system: spec.system,
                user: spec.user,
                prompt_tokens,
                rollouts,
                policy_version: version,
                generator: args.name.clone(),
                generate_ms,
                temperature: args.config.temperature,
            };
            let uid = group.prompt.uid;
            args.activity.mark(uid, Milestone::Generated);
            if let Err(e) = args.sink.send_group(group) {
                tracing::warn!("generator {}: sink refused a group: {e}", args.name);
                args.ledger.dropped(uid, DropReason::SinkClosed);
            }
        }
    }

    /// One batch: apply pending weights, take prompts, generate, hand the groups on.
    async fn step(
        myself: &ActorRef<GeneratorMsg>,
        state: &mut GeneratorState,
    ) -> Result<(), ActorProcessingErr> {
        if state.stopped {
            return Ok(());
        }
        Self::apply_pending(state).await?;
        let prompts = Self::take(myself, state).await?;
        if prompts.is_empty() {
            return Ok(()); // the waker brings us back
        }
        // Counted out when the batch is handed on or lost (a panic unwinds through it too).
        let _depth = series::StageDepth::enter("generate", prompts.len());
        if state.fault {
            panic!(
                "injected fault: generator {} fails holding {} prompts",
                state.args.name,
                prompts.len()
            );
        }
        let version = state.version;
        match Self::generate(state, &prompts).await? {
            (Ok(groups), generate_ms) => {
                Self::hand_on(state, prompts, groups, version, generate_ms)
            }
            (Err(ActorError::Unreachable(why) | ActorError::Refused(why)), _) => {
                // Failing the actor hands its held prompts back (the supervisor issues them
                // again); dropping them would lose them for this run.
                return Err(why.into());
            }
            (Err(e), _) => {
                tracing::error!("generator {}: generation failed: {e}", state.args.name);
                for (item, _) in prompts {
                    state
                        .args
                        .ledger
                        .dropped(item.uid, DropReason::GenerationError);
                }
            }
        }
        myself.cast(GeneratorMsg::Step)?;
        Ok(())
    }
}

impl Actor for Generator {
    type Msg = GeneratorMsg;
    type State = GeneratorState;
    type Arguments = GeneratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (build, start_from) = (args.engine.clone(), args.start_from.clone());
        let worker = DeviceWorker::spawn(&args.name, move || {
            build(start_from.as_ref().map(|(path, _)| path.as_path()))
        })?;
        if !args.await_weights {
            myself.cast(GeneratorMsg::Step)?;
        }
        Ok(GeneratorState {
            version: args.start_from.as_ref().map_or(0, |(_, v)| *v),
            args,
            worker,
            pending: None,
            batches: 0,
            stopped: false,
            fault: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GeneratorMsg::Weights(update) => {
                metrics::histogram!(series::WEIGHT_SYNC_SECONDS).record(update.copy_ms / 1e3);
                // A newer update replaces one not yet applied (double buffering).
                state.pending = Some(update);
                if state.args.await_weights {
                    state.args.await_weights = false;
                    myself.cast(GeneratorMsg::Step)?;
                }
            }
            GeneratorMsg::Fault => state.fault = true,
            GeneratorMsg::Stop => {
                state.stopped = true;
                myself.stop(None);
            }
            GeneratorMsg::Step => Self::step(&myself, state).await?,
        }
        Ok(())
    }
}
