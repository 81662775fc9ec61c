//! The learner: GRPO on batches from the replay buffer, through a [`TrainEngine`] on its own
//! device thread (the engine owns the model and optimiser; this actor owns the protocol).
//!
//! Each step: take B groups (never older than η versions — asserted per sample), compute
//! group-normalised advantages, run teacher-forced log-probs in micro-batches with gradient
//! accumulation (token-level clipped surrogate + k3 KL to a frozen reference), clip the gradient
//! norm, take an AdamW step under a warm-up + cosine schedule, bump the version, and publish the
//! weights to every generator (deep copies onto each generator's device) before telling the
//! prompt source, so a generator always holds weights at least as new as its prompts' admission.
//!
//! A step whose loss or gradient is not finite (or that fails otherwise) is skipped: its prompts
//! are dropped and counted, the weights and version stay, and after
//! `learner.max_skipped_in_a_row` such steps in a row the run stops with an error. Every
//! `checkpoint.every` steps, at the end and when the run is stopped, the learner writes a
//! [`crate::checkpoint`] — after publishing the new weights and before telling the source, so in
//! a synchronous run nothing is in flight at a checkpoint. The batch is requested from the
//! buffer by a separate task, so the learner still answers a restarted generator's request for
//! the current weights while it waits for data.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::{Rng, SeedableRng};
use tch::Device;

use crate::activity::{ActivityLog, Milestone};
use crate::checkpoint::{CheckpointState, RunShape};
use crate::device_worker::DeviceWorker;
use crate::error::ActorError;
pub use crate::learner_config::LearnerConfig;
use crate::ledger::{DropReason, Ledger};
use crate::metric_series as series;
use crate::policy_loss::PolicyLoss;
use crate::prompt_source::{PromptSourceMsg, PromptSpec};
use crate::protocol::{ScoredGroup, Version, WeightUpdate};
use crate::replay_buffer::BufferMsg;
pub use crate::step_stats::StepStats;
pub use crate::train_engine::LearnerResume;
use crate::train_engine::{Sequence, Snapshot, StepLosses, TrainEngine, TrainEngineBuilder};

/// A receiver of weight updates: a generator (every version) or an evaluator (every k-th).
pub struct WeightSubscriber {
    pub name: String,
    pub device: Device,
    /// Receives versions divisible by `every`, and the last one.
    pub every: u64,
    pub send: Box<dyn Fn(WeightUpdate) -> Result<(), String> + Send + Sync>,
}

pub enum LearnerMsg {
    /// Ask the buffer for the next batch.
    Step,
    /// The batch for the current version.
    Batch(Vec<ScoredGroup>),
    /// Finish after the step in progress: write the final weights and a checkpoint, and stop
    /// (Ctrl-C).
    Finish,
    /// Send the current weights to the named subscriber (it was restarted).
    Resync(String),
    /// Stop the run with this error, after a final checkpoint (a restart storm).
    Abort(String),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for LearnerMsg {}

/// Where and how often the learner writes checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    pub dir: PathBuf,
    /// Every this many steps (and at the end, on Ctrl-C and on an abort).
    pub every: u64,
    pub keep_last: usize,
    /// What a resumed run must agree on.
    pub shape: RunShape,
}

/// Faults the learner injects into itself (tests and soak runs; none by default).
#[derive(Debug, Clone, Default)]
pub struct LearnerFaults {
    /// Step attempts (0-based, skipped ones included) whose loss is made NaN.
    pub nan_loss_at: Vec<u64>,
    /// Probability of a NaN loss at any step.
    pub nan_loss_probability: f64,
    /// Versions whose checkpoint write fails.
    pub fail_checkpoint_at: Vec<Version>,
    /// Probability that a checkpoint write fails.
    pub fail_checkpoint_probability: f64,
    /// Versions whose checkpoint is damaged right after it is written.
    pub corrupt_checkpoint_at: Vec<Version>,
    pub seed: u64,
}

/// How a learner ended, for the run (shared because an actor's stop reason is only a string).
#[derive(Debug, Clone, Default)]
pub struct LearnerOutcome {
    /// Set when the run was stopped for an error (skipped steps in a row, a restart storm).
    pub aborted: Option<String>,
    pub checkpoints_written: u64,
    pub checkpoint_failures: Vec<String>,
    pub last_checkpoint: Option<PathBuf>,
    pub skipped_steps: u64,
    pub faults_injected: std::collections::BTreeMap<String, u64>,
}

pub struct LearnerArgs {
    pub name: String,
    /// Builds the engine on the learner's device thread (loading a resume's weights, if any).
    pub engine: TrainEngineBuilder,
    pub config: LearnerConfig,
    /// The loss kind: advantages of each group, and the loss the engine minimises.
    pub loss: Arc<dyn PolicyLoss>,
    pub total_steps: u64,
    pub max_staleness: u64,
    pub buffer: ActorRef<BufferMsg>,
    pub source: ActorRef<PromptSourceMsg>,
    /// Generators and evaluators that receive versioned weights.
    pub subscribers: Vec<WeightSubscriber>,
    pub ledger: Ledger,
    pub activity: ActivityLog,
    /// Every step's statistics; the channel closes after the last step.
    pub stats: flume::Sender<StepStats>,
    /// Where the final weights are written (optional).
    pub save_dir: Option<PathBuf>,
    pub checkpoints: Option<CheckpointPlan>,
    pub resume: Option<LearnerResume>,
    pub faults: LearnerFaults,
    pub outcome: Arc<Mutex<LearnerOutcome>>,
}

pub struct LearnerState {
    args: LearnerArgs,
    worker: DeviceWorker<Box<dyn TrainEngine>>,
    version: Version,
    /// Per subscriber (by index): the channel its applied snapshots come back on, for reuse.
    recycled: std::collections::HashMap<usize, Recycle>,
    /// A batch request is out.
    awaiting_batch: bool,
    skipped_in_a_row: u64,
    skipped_steps: u64,
    fault_rng: rand_chacha::ChaCha8Rng,
    stopped: bool,
    /// Statistics of the steps since the last checkpoint (they go into the next one).
    recent_steps: Vec<StepStats>,
    /// The version of the newest checkpoint written.
    checkpointed: Option<Version>,
}

type Recycle = (flume::Sender<Snapshot>, flume::Receiver<Snapshot>);

pub struct Learner;

impl Learner {
    /// Writes the policy's weights to the save directory, if there is one.
    async fn save(state: &mut LearnerState) -> Result<(), ActorProcessingErr> {
        if let Some(dir) = state.args.save_dir.clone() {
            state
                .worker
                .run(move |engine: &mut Box<dyn TrainEngine>| engine.save(&dir))
                .await??;
        }
        Ok(())
    }

    fn fault(state: &LearnerState, kind: &str) {
        let mut outcome = state.args.outcome.lock().unwrap();
        *outcome.faults_injected.entry(kind.to_string()).or_default() += 1;
        metrics::counter!(series::FAULTS_INJECTED, "kind" => kind.to_string()).increment(1);
    }

    /// Writes a checkpoint of the current version. A failure is logged and counted; the run
    /// goes on (the previous checkpoints are untouched).
    async fn checkpoint(state: &mut LearnerState) -> Option<PathBuf> {
        let plan = state.args.checkpoints.clone()?;
        let version = state.version;
        let faults = &state.args.faults;
        let fail = faults.fail_checkpoint_at.contains(&version)
            || (faults.fail_checkpoint_probability > 0.0
                && state
                    .fault_rng
                    .random_bool(faults.fail_checkpoint_probability.min(1.0)));
        let result = if fail {
            Self::fault(state, "checkpoint_write_failure");
            Err(ActorError::Checkpoint(format!(
                "injected fault: checkpoint write at step {version} fails"
            )))
        } else {
            Self::write_checkpoint(state, &plan).await
        };
        let mut outcome = state.args.outcome.lock().unwrap();
        match result {
            Ok(dir) => {
                state.recent_steps.clear();
                state.checkpointed = Some(version);
                outcome.checkpoints_written += 1;
                metrics::counter!(series::CHECKPOINTS_WRITTEN).increment(1);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics::gauge!(series::LAST_CHECKPOINT_TIMESTAMP).set(now);
                outcome.last_checkpoint = Some(dir.clone());
                drop(outcome);
                if state.args.faults.corrupt_checkpoint_at.contains(&version) {
                    Self::fault(state, "corrupt_checkpoint");
                    if let Err(e) = crate::checkpoint::corrupt(&dir) {
                        tracing::error!("learner: could not corrupt {}: {e}", dir.display());
                    }
                }
                Some(dir)
            }
            Err(e) => {
                tracing::error!("learner: checkpoint at step {version} not written: {e}");
                outcome.checkpoint_failures.push(e.to_string());
                None
            }
        }
    }

    async fn write_checkpoint(
        state: &mut LearnerState,
        plan: &CheckpointPlan,
    ) -> Result<PathBuf, ActorError> {
        let version = state.version;
        std::fs::create_dir_all(&plan.dir).map_err(|e| ActorError::io("creating", &plan.dir, e))?;
        let scratch = crate::checkpoint::scratch_dir(&plan.dir, version);
        let _ = std::fs::remove_dir_all(&scratch);
        let target = scratch.clone();
        let optimizer_steps = state
            .worker
            .run(move |engine: &mut Box<dyn TrainEngine>| engine.write_checkpoint(&target))
            .await
            .and_then(|r| r)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&scratch);
            })?;
        // Order matters (see CheckpointState::assemble): source, buffer, then ledger.
        let source = ractor::call!(state.args.source, PromptSourceMsg::Snapshot)
            .map_err(|e| ActorError::Checkpoint(format!("prompt source snapshot: {e}")))?;
        let buffer = ractor::call!(state.args.buffer, BufferMsg::Snapshot)
            .map_err(|e| ActorError::Checkpoint(format!("replay buffer snapshot: {e}")))?;
        let ledger = state.args.ledger.entries();
        let mut checkpoint = CheckpointState::assemble(
            version,
            optimizer_steps,
            state.skipped_steps,
            plan.shape.clone(),
            source,
            buffer,
            ledger,
        );
        checkpoint.recent_steps = state.recent_steps.clone();
        let (root, keep) = (plan.dir.clone(), plan.keep_last);
        tokio::task::spawn_blocking(move || {
            crate::checkpoint::finish(&root, &scratch, &checkpoint, keep)
        })
        .await
        .map_err(|e| ActorError::Thread(format!("checkpoint writer: {e}")))?
    }

    /// Final weights and checkpoint, then stop.
    async fn finish(
        myself: &ActorRef<LearnerMsg>,
        state: &mut LearnerState,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        if state.stopped {
            return Ok(());
        }
        state.stopped = true;
        state.args.total_steps = state.version;
        Self::save(state).await?;
        if state.checkpointed != Some(state.version) {
            Self::checkpoint(state).await;
        }
        myself.stop(Some(reason.to_string()));
        Ok(())
    }

    /// Sends the current weights to `subscriber` (fresh buffers: its old ones died with it).
    async fn resync(state: &mut LearnerState, subscriber: &str) -> Result<(), ActorProcessingErr> {
        let Some(index) = state
            .args
            .subscribers
            .iter()
            .position(|s| s.name == subscriber)
        else {
            tracing::warn!("learner: no weight subscriber named {subscriber}");
            return Ok(());
        };
        let device = state.args.subscribers[index].device;
        let started = Instant::now();
        let (tensors, bytes) = state
            .worker
            .run(move |engine: &mut Box<dyn TrainEngine>| engine.snapshot(device, None))
            .await?;
        let update = WeightUpdate {
            version: state.version,
            tensors,
            bytes,
            copy_ms: started.elapsed().as_secs_f64() * 1e3,
            recycle: None,
        };
        if let Err(e) = (state.args.subscribers[index].send)(update) {
            tracing::warn!("learner: {subscriber} did not take weights: {e}");
        }
        Ok(())
    }

    /// Requests the next batch; the answer comes back as [`LearnerMsg::Batch`].
    fn request_batch(myself: &ActorRef<LearnerMsg>, state: &mut LearnerState) {
        if state.awaiting_batch || state.stopped || state.version >= state.args.total_steps {
            return;
        }
        state.awaiting_batch = true;
        let (buffer, version, me) = (state.args.buffer.clone(), state.version, myself.clone());
        tokio::spawn(async move {
            let message = match ractor::call!(buffer, |reply| BufferMsg::Sample { version, reply })
            {
                Ok(batch) => LearnerMsg::Batch(batch),
                Err(e) => LearnerMsg::Abort(format!("the replay buffer stopped answering: {e}")),
            };
            let _ = me.cast(message);
        });
    }

    /// The step's training sequences from a batch, with the statistics that need no engine:
    /// staleness (a violation is recorded, never trained past), rewards and advantages.
    /// Groups with zero variance are left out when `drop_zero_variance` is on; their uids come
    /// back so the ledger can close them.
    fn prepare(
        state: &LearnerState,
        batch: &[ScoredGroup],
    ) -> (StepStats, Vec<Sequence>, std::collections::HashSet<u64>) {
        let (step, version) = (state.version, state.version);
        let mut stats = StepStats {
            step,
            groups: batch.len(),
            ..Default::default()
        };
        let mut sequences = Vec::new();
        let (mut rewards_total, mut rewards_count) = (0.0, 0usize);
        let mut dropped_zero_variance = std::collections::HashSet::new();
        for scored in batch {
            let staleness = version.saturating_sub(scored.group.policy_version);
            stats.max_staleness = stats.max_staleness.max(staleness);
            *stats.staleness_counts.entry(staleness).or_default() += 1;
            if staleness > state.args.max_staleness || scored.group.policy_version > version {
                stats.staleness_violations.push(format!(
                    "step {step}: sample from version {} at learner version {version} (η = {})",
                    scored.group.policy_version, state.args.max_staleness
                ));
            }
            rewards_total += scored.rewards.iter().map(|&r| r as f64).sum::<f64>();
            rewards_count += scored.rewards.len();
            let advantages = state.args.loss.advantages(&scored.rewards);
            let zero_variance = advantages.iter().all(|a| a.abs() < 1e-6);
            if zero_variance && state.args.config.drop_zero_variance {
                stats.groups_dropped_zero_variance += 1;
                dropped_zero_variance.insert(scored.group.prompt.uid);
                continue;
            }
            let item = &scored.group.prompt;
            let spec = PromptSpec {
                id: item.id.clone(),
                question: item.question.clone(),
                system: scored.group.system.clone(),
                user: scored.group.user.clone(),
                image: item.image.clone(),
                reference: item.reference.clone(),
                world: item.world.clone(),
            };
            for (rollout, advantage) in scored.group.rollouts.iter().zip(advantages) {
                if rollout.tokens.is_empty() {
                    continue;
                }
                stats.response_tokens += rollout.tokens.len();
                *stats
                    .response_length_counts
                    .entry(rollout.tokens.len())
                    .or_default() += 1;
                sequences.push(Sequence {
                    spec: spec.clone(),
                    prompt_tokens: scored.group.prompt_tokens.clone(),
                    response: rollout.tokens.clone(),
                    behaviour: rollout.logprobs.clone(),
                    policy_mask: rollout.policy_mask.clone(),
                    advantage,
                    temperature: scored.group.temperature,
                });
            }
        }
        stats.reward_mean = rewards_total / rewards_count.max(1) as f64;
        stats.mean_response_tokens = stats.response_tokens as f64 / sequences.len().max(1) as f64;
        (stats, sequences, dropped_zero_variance)
    }

    /// Whether this step attempt's loss is made NaN (fault injection); counts it if so.
    fn inject_nan(state: &mut LearnerState) -> bool {
        let faults = &state.args.faults;
        let attempt = state.version + state.skipped_steps;
        let inject = faults.nan_loss_at.contains(&attempt)
            || (faults.nan_loss_probability > 0.0
                && state
                    .fault_rng
                    .random_bool(faults.nan_loss_probability.min(1.0)));
        if inject {
            Self::fault(state, "nan_loss");
        }
        inject
    }

    /// A failed step: the weights and version stay, and the batch's prompts are closed as
    /// dropped so the ledger still balances. Too many in a row stop the run.
    fn skip(
        myself: &ActorRef<LearnerMsg>,
        state: &mut LearnerState,
        batch: &[ScoredGroup],
        error: ActorError,
    ) -> Result<(), ActorProcessingErr> {
        let step = state.version;
        state.skipped_steps += 1;
        state.skipped_in_a_row += 1;
        state.args.outcome.lock().unwrap().skipped_steps = state.skipped_steps;
        metrics::counter!(series::LEARNER_SKIPPED_STEPS).increment(1);
        tracing::error!(
            "learner: step {step} skipped ({} in a row): {error}",
            state.skipped_in_a_row
        );
        for scored in batch {
            state
                .args
                .ledger
                .dropped(scored.group.prompt.uid, DropReason::SkippedStep);
        }
        let limit = state.args.config.max_skipped_in_a_row.max(1);
        if state.skipped_in_a_row >= limit {
            myself.cast(LearnerMsg::Abort(format!(
                "{} learner steps in a row were skipped (learner.max_skipped_in_a_row = {limit}); last: {error}",
                state.skipped_in_a_row
            )))?;
        } else {
            Self::request_batch(myself, state);
        }
        Ok(())
    }

    /// Publishes the new version's weights: a deep copy onto each due subscriber's device
    /// (into the buffers it gave back, where it did). All copies are made in one job on the
    /// device thread — one hand-off per version, not one per subscriber, which at 170 generators
    /// was most of the learner's publishing time. Returns the bytes sent.
    async fn publish(state: &mut LearnerState) -> Result<u64, ActorProcessingErr> {
        let new_version = state.version;
        let last = new_version >= state.args.total_steps;
        let mut due = Vec::new();
        let mut jobs = Vec::new();
        for (index, subscriber) in state.args.subscribers.iter().enumerate() {
            if !new_version.is_multiple_of(subscriber.every.max(1)) && !last {
                continue;
            }
            let (recycle, returned) = state.recycled.entry(index).or_insert_with(flume::unbounded);
            due.push((index, recycle.clone()));
            jobs.push((subscriber.device, returned.try_iter().last()));
        }
        let copies = state
            .worker
            .run(move |engine: &mut Box<dyn TrainEngine>| {
                jobs.into_iter()
                    .map(|(device, reuse)| {
                        let started = Instant::now();
                        let (tensors, bytes) = engine.snapshot(device, reuse);
                        (tensors, bytes, started.elapsed().as_secs_f64() * 1e3)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut sent = 0;
        for ((index, recycle), (tensors, bytes, copy_ms)) in due.into_iter().zip(copies) {
            sent += bytes;
            let update = WeightUpdate {
                version: new_version,
                tensors,
                bytes,
                copy_ms,
                recycle: Some(recycle),
            };
            let subscriber = &state.args.subscribers[index];
            if let Err(e) = (subscriber.send)(update) {
                tracing::warn!(
                    "learner: {} did not take weights v{new_version}: {e}",
                    subscriber.name
                );
            }
        }
        Ok(sent)
    }

    /// Trains one batch: prepare, step the engine (or skip), close the prompts, publish,
    /// checkpoint when due, then tell the source and the run.
    async fn train(
        myself: &ActorRef<LearnerMsg>,
        state: &mut LearnerState,
        batch: Vec<ScoredGroup>,
    ) -> Result<(), ActorProcessingErr> {
        let step = state.version;
        let start = state.args.activity.now();
        let started = Instant::now();
        let (mut stats, sequences, dropped_zero_variance) = Self::prepare(state, &batch);
        let lr = state
            .args
            .config
            .schedule()
            .at(step, state.args.total_steps);
        stats.lr = lr;
        let inject_nan = Self::inject_nan(state);
        let (config, loss) = (state.args.config.clone(), state.args.loss.clone());
        let trained = if sequences.is_empty() {
            Ok(StepLosses::default())
        } else {
            state
                .worker
                .run(move |engine: &mut Box<dyn TrainEngine>| {
                    engine.train_step(sequences, &config, loss.as_ref(), lr, inject_nan)
                })
                .await?
        };
        let losses = match trained {
            Ok(losses) => losses,
            Err(e) => return Self::skip(myself, state, &batch, e),
        };
        state.skipped_in_a_row = 0;
        stats.loss = losses.loss;
        stats.kl = losses.kl;
        stats.clip_fraction = losses.clip_fraction;
        stats.grad_norm = losses.grad_norm;
        stats.skipped_steps = state.skipped_steps;
        for scored in &batch {
            let uid = scored.group.prompt.uid;
            if dropped_zero_variance.contains(&uid) {
                state.args.ledger.dropped(uid, DropReason::ZeroVariance);
            } else {
                state.args.ledger.trained(uid);
                state.args.activity.mark(uid, Milestone::Trained);
                metrics::counter!(series::SAMPLES_TRAINED)
                    .increment(scored.group.rollouts.len() as u64);
            }
        }
        stats.train_ms = started.elapsed().as_secs_f64() * 1e3;
        let activity = state.args.activity.clone();
        activity.record(&state.args.name, "train", start, activity.now());
        state.version += 1;
        stats.version = state.version;

        // Publish: deep copies onto each subscriber's device, then the version to the source.
        let (sync_start, sync_started) = (activity.now(), Instant::now());
        stats.sync_bytes = Self::publish(state).await?;
        stats.sync_ms = sync_started.elapsed().as_secs_f64() * 1e3;
        activity.record(&state.args.name, "sync", sync_start, activity.now());
        Self::after_step(myself, state, stats).await
    }

    /// After publishing: a checkpoint when due — before the source hears of the new version,
    /// so in a synchronous run nothing is in flight at this point — then the version to the
    /// source, the step's record to the run, and the next batch (or the end).
    async fn after_step(
        myself: &ActorRef<LearnerMsg>,
        state: &mut LearnerState,
        mut stats: StepStats,
    ) -> Result<(), ActorProcessingErr> {
        let new_version = state.version;
        let last = new_version >= state.args.total_steps;
        stats.ledger = state.args.ledger.snapshot();
        if state.args.checkpoints.is_some() {
            state.recent_steps.push(stats.clone());
        }
        let every = state.args.checkpoints.as_ref().map_or(0, |c| c.every);
        if last || (every > 0 && new_version.is_multiple_of(every)) {
            stats.checkpoint = Self::checkpoint(state).await;
        }
        state
            .args
            .source
            .cast(PromptSourceMsg::Version(new_version))?;
        stats.time = state.args.activity.now();
        export_step(&stats);
        let _ = state.args.stats.send(stats);
        if state.version < state.args.total_steps {
            Self::request_batch(myself, state);
        } else {
            Self::finish(myself, state, "done").await?;
        }
        Ok(())
    }
}

impl Actor for Learner {
    type Msg = LearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        mut args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The builder runs once, on the device thread; the args keep a spent placeholder.
        let build = std::mem::replace(
            &mut args.engine,
            Box::new(|| {
                Err(ActorError::Engine(
                    "the learner's engine was already built".into(),
                ))
            }),
        );
        let worker = DeviceWorker::spawn(&args.name, build)?;
        myself.cast(LearnerMsg::Step)?;
        let (version, skipped_steps) = args
            .resume
            .as_ref()
            .map_or((0, 0), |r| (r.version, r.skipped_steps));
        Ok(LearnerState {
            fault_rng: rand_chacha::ChaCha8Rng::seed_from_u64(args.faults.seed),
            args,
            worker,
            version,
            recycled: Default::default(),
            awaiting_batch: false,
            skipped_in_a_row: 0,
            skipped_steps,
            stopped: false,
            recent_steps: Vec::new(),
            checkpointed: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LearnerMsg::Step => {
                if state.version >= state.args.total_steps {
                    Self::finish(&myself, state, "done").await?;
                } else {
                    Self::request_batch(&myself, state);
                }
                Ok(())
            }
            LearnerMsg::Finish => Self::finish(&myself, state, "finished early").await,
            LearnerMsg::Resync(name) => Self::resync(state, &name).await,
            LearnerMsg::Abort(reason) => {
                tracing::error!("learner: stopping the run: {reason}");
                state.args.outcome.lock().unwrap().aborted = Some(reason.clone());
                Self::finish(&myself, state, &reason).await
            }
            LearnerMsg::Batch(batch) => {
                state.awaiting_batch = false;
                if state.stopped {
                    // A batch that arrived after Finish stays in flight in the ledger.
                    return Ok(());
                }
                Self::train(&myself, state, batch).await
            }
        }
    }
}

/// The step's figures as Prometheus series (docs/observability.md).
fn export_step(stats: &StepStats) {
    metrics::counter!(series::LEARNER_STEPS).increment(1);
    metrics::gauge!(series::POLICY_VERSION).set(stats.version as f64);
    metrics::gauge!(series::REWARD_MEAN).set(stats.reward_mean);
    metrics::gauge!(series::KL).set(stats.kl);
    metrics::gauge!(series::CLIP_FRACTION).set(stats.clip_fraction);
    metrics::gauge!(series::LOSS).set(stats.loss);
    metrics::gauge!(series::GRAD_NORM).set(stats.grad_norm);
    metrics::gauge!(series::RESPONSE_TOKENS_MEAN).set(stats.mean_response_tokens);
    metrics::histogram!(series::LEARNER_STEP_SECONDS).record(stats.train_ms / 1e3);
    metrics::counter!(series::WEIGHT_SYNC_BYTES).increment(stats.sync_bytes);
    let staleness = metrics::histogram!(series::STALENESS);
    for (&versions, &groups) in &stats.staleness_counts {
        for _ in 0..groups {
            staleness.record(versions as f64);
        }
    }
}
