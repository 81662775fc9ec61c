//! The learner: GRPO on batches from the replay buffer, on its own device thread.
//!
//! Each step: take B groups (never older than η versions — asserted per sample), compute
//! group-normalised advantages, run teacher-forced log-probs in micro-batches with gradient
//! accumulation (token-level clipped surrogate + k3 KL to a frozen reference), clip the gradient
//! norm, take an AdamW step under a warm-up + cosine schedule, bump the version, and publish the
//! weights to every generator (deep copies onto each generator's device) before telling the
//! prompt source, so a generator always holds weights at least as new as its prompts' admission.

use std::path::PathBuf;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

use crate::activity::{ActivityLog, Milestone};
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
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// The learning rate at the last step, as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    /// Drop groups whose rewards are all equal (no learning signal) instead of training on
    /// zero advantages.
    pub drop_zero_variance: bool,
    /// Keep a frozen reference for the KL term (needs `grpo.kl_beta > 0`).
    pub reference: bool,
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
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            drop_zero_variance: false,
            reference: true,
            grpo: GrpoConfig::default(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, Serialize)]
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
    Step,
    /// Finish after the step in progress: write the final weights and stop (Ctrl-C).
    Finish,
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
}

struct LearnerEngine {
    policy: VlEngine,
    reference: Option<VlEngine>,
    optimizer: tch::nn::Optimizer,
}

pub struct LearnerState {
    args: LearnerArgs,
    worker: DeviceWorker<LearnerEngine>,
    version: Version,
    /// Per subscriber: the channel its applied snapshots come back on, for reuse.
    recycled: std::collections::HashMap<String, Recycle>,
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
) -> Result<(f64, f64, f64, f64), String> {
    let total_tokens: usize = sequences.iter().map(|s| s.response.len()).sum();
    engine.optimizer.set_lr(lr);
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
        terms.loss.backward();
        loss_sum += terms.loss.double_value(&[]);
        kl_sum += terms.kl;
        clip_sum += terms.clip_fraction;
    }
    let grad_norm = grad_norm(&engine.policy);
    if !grad_norm.is_finite() {
        engine.optimizer.zero_grad();
        return Err(format!(
            "non-finite gradient norm ({grad_norm}); step skipped"
        ));
    }
    engine.optimizer.clip_grad_norm(config.grad_clip);
    engine.optimizer.step();
    engine.optimizer.zero_grad();
    Ok((loss_sum, kl_sum, clip_sum, grad_norm))
}

fn grad_norm(engine: &VlEngine) -> f64 {
    let mut total = 0.0;
    for var in engine.model.var_store().trainable_variables() {
        let grad = var.grad();
        if grad.defined() {
            total += grad
                .to_kind(Kind::Double)
                .pow_tensor_scalar(2)
                .sum(Kind::Double)
                .double_value(&[]);
        }
    }
    total.sqrt()
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
        let (weight_decay, lr, with_reference) = (
            args.config.weight_decay,
            args.config.lr,
            args.config.reference && args.config.grpo.kl_beta > 0.0,
        );
        let worker = DeviceWorker::spawn(&args.name, move || {
            let policy = VlEngine::load(&dir, device, kind)?;
            let reference = if with_reference {
                let reference = VlEngine::load(&dir, device, kind)?;
                for mut var in reference.model.var_store().trainable_variables() {
                    let _ = var.requires_grad_(false);
                }
                Some(reference)
            } else {
                None
            };
            let optimizer = tch::nn::AdamW {
                wd: weight_decay,
                ..Default::default()
            }
            .build(policy.model.var_store(), lr)
            .map_err(|e| e.to_string())?;
            Ok(LearnerEngine {
                policy,
                reference,
                optimizer,
            })
        })?;
        myself.cast(LearnerMsg::Step)?;
        Ok(LearnerState {
            args,
            worker,
            version: 0,
            recycled: Default::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let LearnerMsg::Finish = message {
            state.args.total_steps = state.version;
            Self::save(state).await?;
            myself.stop(Some("finished early".to_string()));
            return Ok(());
        }
        let step = state.version;
        if step >= state.args.total_steps {
            return Ok(());
        }
        let version = state.version;
        let batch: Vec<ScoredGroup> = ractor::call!(state.args.buffer, |reply| {
            BufferMsg::Sample { version, reply }
        })?;
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
        let config = state.args.config.clone();
        let trained = if sequences.is_empty() {
            Ok((0.0, 0.0, 0.0, 0.0))
        } else {
            state
                .worker
                .run(move |engine: &mut LearnerEngine| train_step(engine, sequences, &config, lr))
                .await?
        };
        match trained {
            Ok((loss, kl, clip, grad_norm)) => {
                stats.loss = loss;
                stats.kl = kl;
                stats.clip_fraction = clip;
                stats.grad_norm = grad_norm;
            }
            Err(e) => tracing::error!("learner: {e}"),
        }
        for scored in &batch {
            let uid = scored.group.prompt.uid;
            if dropped_zero_variance.contains(&uid) {
                state.args.ledger.dropped(uid, "zero_variance");
            } else {
                state.args.ledger.trained(uid);
                state.args.activity.mark(uid, Milestone::Trained);
            }
        }
        stats.ledger = state.args.ledger.snapshot();
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
        for subscriber in &state.args.subscribers {
            if new_version % subscriber.every.max(1) != 0 && !last {
                continue;
            }
            let device = subscriber.device;
            let copy_started = Instant::now();
            let (recycle, returned) = state
                .recycled
                .entry(subscriber.name.clone())
                .or_insert_with(flume::unbounded);
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
        state
            .args
            .source
            .cast(PromptSourceMsg::Version(new_version))?;
        stats.time = state.args.activity.now();
        metrics::counter!("grlhf_learner_steps").increment(1);
        let _ = state.args.stats.send(stats);

        if state.version < state.args.total_steps {
            myself.cast(LearnerMsg::Step)?;
        } else {
            Self::save(state).await?;
            myself.stop(Some("done".to_string()));
        }
        Ok(())
    }
}
