//! The learner: GRPO on batches from the replay buffer, on its own device thread.
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
use std::time::Instant;

use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::activity::{ActivityLog, Milestone};
use crate::adamw::{AdamW, AdamWConfig};
use crate::checkpoint::{CheckpointState, RunShape};
use crate::device_worker::DeviceWorker;
use crate::generator::GeneratorMsg;
use crate::grpo::{group_advantages, grpo_loss, GrpoConfig};
use crate::ledger::Ledger;
use crate::prompt_source::{PromptSourceMsg, PromptSpec};
use crate::protocol::{ScoredGroup, Version, WeightUpdate};
use crate::replay_buffer::BufferMsg;
use crate::schedule::LrSchedule;
use crate::vl_engine::{EncodedPrompt, VlEngine};

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Where the learner (and its frozen reference) runs: `cpu` or `cuda:N`.
    pub device: String,
    /// Sequences per forward/backward pass (gradients accumulate over the step's batch).
    pub micro_batch: usize,
    pub grad_clip: f64,
    pub weight_decay: f64,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Linear warm-up steps (default 10: Adam's first steps, with near-zero second moments, are
    /// the largest, and GRPO's first groups the noisiest).
    pub warmup_steps: u64,
    /// The learning rate at the last step, as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    /// Drop groups whose rewards are all equal (no learning signal) instead of training on
    /// zero advantages.
    pub drop_zero_variance: bool,
    /// Keep a frozen reference for the KL term (needs `grpo.kl_beta > 0`).
    pub reference: bool,
    /// Skipped steps (non-finite loss or gradient) in a row after which the run stops.
    pub max_skipped_in_a_row: u64,
    pub grpo: GrpoConfig,
}

impl LearnerConfig {
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            device: "cpu".to_string(),
            micro_batch: 16,
            grad_clip: 1.0,
            weight_decay: 0.01,
            lr: 1e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            drop_zero_variance: false,
            reference: true,
            max_skipped_in_a_row: 3,
            grpo: GrpoConfig::default(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepStats {
    pub step: u64,
    /// The version after the step.
    pub version: Version,
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub reward_mean: f64,
    pub groups: usize,
    pub groups_dropped_zero_variance: usize,
    pub response_tokens: usize,
    pub mean_response_tokens: f64,
    /// Largest (learner version − sample version) in the batch.
    pub max_staleness: u64,
    /// Groups in the batch by staleness (learner version − sample version).
    pub staleness_counts: std::collections::BTreeMap<u64, usize>,
    pub train_ms: f64,
    pub sync_ms: f64,
    pub sync_bytes: u64,
    /// Seconds since the run started when the step ended.
    pub time: f64,
    /// Samples older than η (must stay empty: the buffer filters them).
    pub staleness_violations: Vec<String>,
    /// The ledger right after this step's prompts were closed.
    pub ledger: crate::ledger::LedgerSnapshot,
    /// Steps skipped so far (non-finite loss or gradient, or a failed step).
    pub skipped_steps: u64,
    /// The checkpoint written after this step, if one was.
    pub checkpoint: Option<PathBuf>,
}

/// A receiver of weight updates: a generator (every version) or an evaluator (every k-th).
pub struct WeightSubscriber {
    pub name: String,
    pub device: Device,
    /// Receives versions divisible by `every`, and the last one.
    pub every: u64,
    pub send: Box<dyn Fn(WeightUpdate) -> Result<(), String> + Send + Sync>,
}

impl WeightSubscriber {
    /// A generator: every version.
    pub fn generator(
        name: &str,
        actor: ActorRef<GeneratorMsg>,
        device: Device,
    ) -> WeightSubscriber {
        WeightSubscriber {
            name: name.to_string(),
            device,
            every: 1,
            send: Box::new(move |update| {
                actor
                    .cast(GeneratorMsg::Weights(update))
                    .map_err(|e| e.to_string())
            }),
        }
    }
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

/// Where the learner starts from when a run resumes.
#[derive(Debug, Clone)]
pub struct LearnerResume {
    pub version: Version,
    pub optimizer_steps: u64,
    pub skipped_steps: u64,
    pub weights: PathBuf,
    pub optimizer: PathBuf,
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
    pub model_dir: PathBuf,
    pub device: Device,
    pub kind: Kind,
    pub config: LearnerConfig,
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

struct LearnerEngine {
    policy: VlEngine,
    reference: Option<VlEngine>,
    optimizer: AdamW,
}

pub struct LearnerState {
    args: LearnerArgs,
    worker: DeviceWorker<LearnerEngine>,
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

type Snapshot = Vec<(String, Tensor)>;
type Recycle = (flume::Sender<Snapshot>, flume::Receiver<Snapshot>);

pub struct Learner;

impl Learner {
    /// Writes the policy's weights to the save directory, if there is one.
    async fn save(state: &mut LearnerState) -> Result<(), ActorProcessingErr> {
        if let Some(dir) = state.args.save_dir.clone() {
            state
                .worker
                .run(move |engine: &mut LearnerEngine| {
                    engine.policy.model.save(&dir).map_err(|e| e.to_string())
                })
                .await??;
        }
        Ok(())
    }

    fn fault(state: &LearnerState, kind: &str) {
        let mut outcome = state.args.outcome.lock().unwrap();
        *outcome.faults_injected.entry(kind.to_string()).or_default() += 1;
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
            Err(format!(
                "injected fault: checkpoint write at step {version} fails"
            ))
        } else {
            Self::write_checkpoint(state, &plan).await
        };
        let mut outcome = state.args.outcome.lock().unwrap();
        match result {
            Ok(dir) => {
                state.recent_steps.clear();
                state.checkpointed = Some(version);
                outcome.checkpoints_written += 1;
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
                outcome.checkpoint_failures.push(e);
                None
            }
        }
    }

    async fn write_checkpoint(
        state: &mut LearnerState,
        plan: &CheckpointPlan,
    ) -> Result<PathBuf, String> {
        let version = state.version;
        std::fs::create_dir_all(&plan.dir)
            .map_err(|e| format!("creating {}: {e}", plan.dir.display()))?;
        let scratch = crate::checkpoint::scratch_dir(&plan.dir, version);
        let _ = std::fs::remove_dir_all(&scratch);
        let target = scratch.clone();
        let optimizer_steps = state
            .worker
            .run(move |engine: &mut LearnerEngine| write_tensors(engine, &target))
            .await
            .and_then(|r| r)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&scratch);
            })?;
        // Order matters (see CheckpointState::assemble): source, buffer, then ledger.
        let source = ractor::call!(state.args.source, PromptSourceMsg::Snapshot)
            .map_err(|e| format!("prompt source snapshot: {e}"))?;
        let buffer = ractor::call!(state.args.buffer, BufferMsg::Snapshot)
            .map_err(|e| format!("replay buffer snapshot: {e}"))?;
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
        .map_err(|e| format!("checkpoint writer: {e}"))?
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
            .run(move |engine: &mut LearnerEngine| {
                crate::weight_sync::snapshot(engine.policy.model.var_store(), device)
            })
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
}

/// One training sequence.
struct Sequence {
    spec: PromptSpec,
    prompt_tokens: Vec<i64>,
    response: Vec<i64>,
    behaviour: Vec<f32>,
    advantage: f32,
    temperature: f64,
}

fn train_step(
    engine: &mut LearnerEngine,
    sequences: Vec<Sequence>,
    config: &LearnerConfig,
    lr: f64,
    inject_nan: bool,
) -> Result<(f64, f64, f64, f64), String> {
    let total_tokens: usize = sequences.iter().map(|s| s.response.len()).sum();
    engine.optimizer.zero_grad();
    let (mut loss_sum, mut kl_sum, mut clip_sum) = (0.0, 0.0, 0.0);
    for chunk in sequences.chunks(config.micro_batch.max(1)) {
        let encoded: Vec<EncodedPrompt> = chunk
            .iter()
            .map(|s| {
                engine
                    .policy
                    .encode(&s.spec.system, &s.spec.user, s.spec.image.as_deref())
            })
            .collect::<Result<_, _>>()?;
        for (e, s) in encoded.iter().zip(chunk) {
            if e.prompt.tokens != s.prompt_tokens {
                return Err(format!(
                    "prompt {} re-encodes differently on the learner",
                    s.spec.id
                ));
            }
        }
        let refs: Vec<&EncodedPrompt> = encoded.iter().collect();
        let responses: Vec<Vec<i64>> = chunk.iter().map(|s| s.response.clone()).collect();
        let temperature = chunk[0].temperature.max(1e-6);
        let current = engine.policy.logprobs(&refs, &responses, temperature)?;
        let width = current.logprobs.size()[1];
        let device = current.logprobs.device();
        let padded = |rows: Vec<Vec<f32>>| -> Tensor {
            let flat: Vec<f32> = rows
                .into_iter()
                .flat_map(|mut r| {
                    r.resize(width as usize, 0.0);
                    r
                })
                .collect();
            Tensor::from_slice(&flat)
                .view([chunk.len() as i64, width])
                .to_device(device)
        };
        let behaviour = padded(chunk.iter().map(|s| s.behaviour.clone()).collect());
        let reference = match &engine.reference {
            Some(reference) if config.grpo.kl_beta > 0.0 => {
                Some(tch::no_grad(|| reference.logprobs(&refs, &responses, temperature))?.logprobs)
            }
            _ => None,
        };
        let advantages =
            Tensor::from_slice(&chunk.iter().map(|s| s.advantage).collect::<Vec<f32>>())
                .to_device(device);
        let terms = grpo_loss(
            &current.logprobs,
            &behaviour,
            reference.as_ref(),
            &advantages,
            &current.mask,
            total_tokens as f64,
            &config.grpo,
        );
        let loss = if inject_nan {
            terms.loss * f64::NAN
        } else {
            terms.loss
        };
        loss.backward();
        loss_sum += loss.double_value(&[]);
        kl_sum += terms.kl;
        clip_sum += terms.clip_fraction;
    }
    let grad_norm = engine.optimizer.grad_norm();
    if !grad_norm.is_finite() || !loss_sum.is_finite() {
        engine.optimizer.zero_grad();
        return Err(format!(
            "non-finite loss ({loss_sum}) or gradient norm ({grad_norm})"
        ));
    }
    engine.optimizer.clip_to(grad_norm, config.grad_clip);
    engine.optimizer.step(lr);
    engine.optimizer.zero_grad();
    Ok((loss_sum, kl_sum, clip_sum, grad_norm))
}

/// Writes the tensors of a checkpoint (weights, optimizer moments) into `scratch`.
fn write_tensors(engine: &LearnerEngine, scratch: &std::path::Path) -> Result<u64, String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let mut weights: Vec<(String, Tensor)> = engine
        .policy
        .model
        .var_store()
        .variables()
        .into_iter()
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let path = scratch.join(crate::checkpoint::WEIGHTS);
    Tensor::write_safetensors(&weights, &path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let path = scratch.join(crate::checkpoint::OPTIMIZER);
    Tensor::write_safetensors(&engine.optimizer.state_tensors(), &path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(engine.optimizer.steps())
}

/// Loads a checkpoint's weights and optimizer moments into the engine.
fn load_resume(engine: &mut LearnerEngine, resume: &LearnerResume) -> Result<(), String> {
    crate::weight_sync::apply_file(engine.policy.model.var_store(), &resume.weights)?;
    let moments = Tensor::read_safetensors(&resume.optimizer)
        .map_err(|e| format!("reading {}: {e}", resume.optimizer.display()))?;
    engine
        .optimizer
        .load_state(&moments, resume.optimizer_steps)
        .map_err(|e| format!("{}: {e}", resume.optimizer.display()))
}

impl Actor for Learner {
    type Msg = LearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (dir, device, kind) = (args.model_dir.clone(), args.device, args.kind);
        let (weight_decay, with_reference) = (
            args.config.weight_decay,
            args.config.reference && args.config.grpo.kl_beta > 0.0,
        );
        let resume = args.resume.clone();
        let worker = DeviceWorker::spawn(&args.name, move || {
            let policy = VlEngine::load(&dir, device, kind)?;
            // The reference is the starting policy, also on resume.
            let reference = if with_reference {
                let reference = VlEngine::load(&dir, device, kind)?;
                for mut var in reference.model.var_store().trainable_variables() {
                    let _ = var.requires_grad_(false);
                }
                Some(reference)
            } else {
                None
            };
            let optimizer = AdamW::new(
                policy.model.var_store(),
                AdamWConfig {
                    weight_decay,
                    ..Default::default()
                },
            );
            let mut engine = LearnerEngine {
                policy,
                reference,
                optimizer,
            };
            if let Some(resume) = &resume {
                load_resume(&mut engine, resume)?;
            }
            Ok(engine)
        })?;
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
        let batch = match message {
            LearnerMsg::Step => {
                if state.version >= state.args.total_steps {
                    Self::finish(&myself, state, "done").await?;
                } else {
                    Self::request_batch(&myself, state);
                }
                return Ok(());
            }
            LearnerMsg::Finish => return Self::finish(&myself, state, "finished early").await,
            LearnerMsg::Resync(name) => return Self::resync(state, &name).await,
            LearnerMsg::Abort(reason) => {
                tracing::error!("learner: stopping the run: {reason}");
                state.args.outcome.lock().unwrap().aborted = Some(reason.clone());
                return Self::finish(&myself, state, &reason).await;
            }
            LearnerMsg::Batch(batch) => batch,
        };
        state.awaiting_batch = false;
        if state.stopped {
            return Ok(()); // a batch that arrived after Finish stays in flight in the ledger
        }
        let step = state.version;
        let version = state.version;
        let start = state.args.activity.now();
        let started = Instant::now();
        let mut stats = StepStats {
            step,
            groups: batch.len(),
            ..Default::default()
        };
        let mut sequences = Vec::new();
        let mut rewards_total = 0.0;
        let mut rewards_count = 0usize;
        let mut dropped_zero_variance = std::collections::HashSet::new();
        for scored in &batch {
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
            let advantages =
                group_advantages(&scored.rewards, state.args.config.grpo.normalize_std);
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
                sequences.push(Sequence {
                    spec: spec.clone(),
                    prompt_tokens: scored.group.prompt_tokens.clone(),
                    response: rollout.tokens.clone(),
                    behaviour: rollout.logprobs.clone(),
                    advantage,
                    temperature: scored.group.temperature,
                });
            }
        }
        stats.reward_mean = rewards_total / rewards_count.max(1) as f64;
        stats.mean_response_tokens = stats.response_tokens as f64 / sequences.len().max(1) as f64;
        let lr = state
            .args
            .config
            .schedule()
            .at(step, state.args.total_steps);
        stats.lr = lr;
        let faults = &state.args.faults;
        let attempt = version + state.skipped_steps;
        let inject_nan = faults.nan_loss_at.contains(&attempt)
            || (faults.nan_loss_probability > 0.0
                && state
                    .fault_rng
                    .random_bool(faults.nan_loss_probability.min(1.0)));
        if inject_nan {
            Self::fault(state, "nan_loss");
        }
        let config = state.args.config.clone();
        let trained = if sequences.is_empty() {
            Ok((0.0, 0.0, 0.0, 0.0))
        } else {
            state
                .worker
                .run(move |engine: &mut LearnerEngine| {
                    train_step(engine, sequences, &config, lr, inject_nan)
                })
                .await?
        };
        let (loss, kl, clip, grad_norm) = match trained {
            Ok(values) => values,
            Err(e) => {
                // Skipped: the weights and version stay; the batch's prompts are closed as
                // dropped so the ledger still balances.
                state.skipped_steps += 1;
                state.skipped_in_a_row += 1;
                state.args.outcome.lock().unwrap().skipped_steps = state.skipped_steps;
                metrics::counter!("grlhf_learner_skipped_steps").increment(1);
                tracing::error!(
                    "learner: step {step} skipped ({} in a row): {e}",
                    state.skipped_in_a_row
                );
                for scored in &batch {
                    state
                        .args
                        .ledger
                        .dropped(scored.group.prompt.uid, "skipped_step");
                }
                let limit = state.args.config.max_skipped_in_a_row.max(1);
                if state.skipped_in_a_row >= limit {
                    myself.cast(LearnerMsg::Abort(format!(
                        "{} learner steps in a row were skipped (learner.max_skipped_in_a_row = {limit}); last: {e}",
                        state.skipped_in_a_row
                    )))?;
                } else {
                    Self::request_batch(&myself, state);
                }
                return Ok(());
            }
        };
        state.skipped_in_a_row = 0;
        stats.loss = loss;
        stats.kl = kl;
        stats.clip_fraction = clip;
        stats.grad_norm = grad_norm;
        stats.skipped_steps = state.skipped_steps;
        for scored in &batch {
            let uid = scored.group.prompt.uid;
            if dropped_zero_variance.contains(&uid) {
                state.args.ledger.dropped(uid, "zero_variance");
            } else {
                state.args.ledger.trained(uid);
                state.args.activity.mark(uid, Milestone::Trained);
            }
        }
        stats.train_ms = started.elapsed().as_secs_f64() * 1e3;
        state
            .args
            .activity
            .record(&state.args.name, "train", start, state.args.activity.now());
        state.version += 1;
        stats.version = state.version;

        // Publish: deep copies onto each generator's device, then the version to the source.
        let sync_start = state.args.activity.now();
        let sync_started = Instant::now();
        let new_version = state.version;
        let last = new_version >= state.args.total_steps;
        for (index, subscriber) in state.args.subscribers.iter().enumerate() {
            if new_version % subscriber.every.max(1) != 0 && !last {
                continue;
            }
            let device = subscriber.device;
            let copy_started = Instant::now();
            let (recycle, returned) = state.recycled.entry(index).or_insert_with(flume::unbounded);
            let reuse = returned.try_iter().last();
            let recycle = recycle.clone();
            let (tensors, bytes) = state
                .worker
                .run(move |engine: &mut LearnerEngine| {
                    crate::weight_sync::snapshot_into(
                        engine.policy.model.var_store(),
                        device,
                        reuse,
                    )
                })
                .await?;
            let copy_ms = copy_started.elapsed().as_secs_f64() * 1e3;
            stats.sync_bytes += bytes;
            let update = WeightUpdate {
                version: new_version,
                tensors,
                bytes,
                copy_ms,
                recycle: Some(recycle),
            };
            if let Err(e) = (subscriber.send)(update) {
                tracing::warn!(
                    "learner: {} did not take weights v{new_version}: {e}",
                    subscriber.name
                );
            }
        }
        stats.sync_ms = sync_started.elapsed().as_secs_f64() * 1e3;
        state.args.activity.record(
            &state.args.name,
            "sync",
            sync_start,
            state.args.activity.now(),
        );
        // The checkpoint comes before the source hears of the new version: in a synchronous
        // run nothing is in flight at this point.
        stats.ledger = state.args.ledger.snapshot();
        if state.args.checkpoints.is_some() {
            state.recent_steps.push(stats.clone());
        }
        let every = state.args.checkpoints.as_ref().map_or(0, |c| c.every);
        if last || (every > 0 && new_version % every == 0) {
            stats.checkpoint = Self::checkpoint(state).await;
        }
        state
            .args
            .source
            .cast(PromptSourceMsg::Version(new_version))?;
        stats.time = state.args.activity.now();
        metrics::counter!("grlhf_learner_steps").increment(1);
        let _ = state.args.stats.send(stats);

        if state.version < state.args.total_steps {
            Self::request_batch(&myself, state);
        } else {
            Self::finish(&myself, state, "done").await?;
        }
        Ok(())
    }
}
