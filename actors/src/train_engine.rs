//! The engine a learner drives: the one interface between the learner actor's protocol (batches
//! from the buffer, staleness checks, skipped steps, the ledger, publishing versions,
//! checkpoints) and whatever trains. [`GrpoTrainer`] is the real one — a Qwen2-VL policy, its
//! frozen reference and AdamW; the simulated engine
//! ([`crate::simulated::learner::SimTrainEngine`]) spends a cost model's time instead. Like
//! AReaL's `TrainEngine`, the actor knows nothing of models.
//!
//! An engine lives on the learner's device thread ([`crate::device_worker`]); its builder runs
//! there.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::adamw::{AdamW, AdamWConfig};
use crate::error::ActorError;
use crate::learner_config::LearnerConfig;
use crate::policy_loss::{LossInputs, PolicyLoss};
use crate::prompt_source::PromptSpec;
use crate::protocol::Version;
use crate::vl_engine::{EncodedPrompt, VlEngine};

/// Named tensors: a copy of the weights, as published to a subscriber.
pub type Snapshot = Vec<(String, Tensor)>;

/// One training sequence: a prompt, one of its responses, the log-probs it was sampled with and
/// its advantage.
pub struct Sequence {
    pub spec: PromptSpec,
    pub prompt_tokens: Vec<i64>,
    pub response: Vec<i64>,
    pub behaviour: Vec<f32>,
    /// Which response tokens are the policy's (trained); `None`: all of them.
    pub policy_mask: Option<Vec<bool>>,
    pub advantage: f32,
    pub temperature: f64,
}

impl Sequence {
    /// Response tokens the loss trains on.
    pub fn trained_tokens(&self) -> usize {
        match &self.policy_mask {
            None => self.response.len(),
            Some(mask) => mask.iter().filter(|&&m| m).count(),
        }
    }
}

/// What one optimiser step measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLosses {
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
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

/// Trains on sequences and hands out its weights.
pub trait TrainEngine {
    /// One optimiser step of `loss` over `sequences` at learning rate `lr`. An error (a
    /// non-finite loss or gradient among them) leaves the weights as they were: the learner
    /// skips the step. `inject_nan` makes the loss NaN (fault injection).
    fn train_step(
        &mut self,
        sequences: Vec<Sequence>,
        config: &LearnerConfig,
        loss: &dyn PolicyLoss,
        lr: f64,
        inject_nan: bool,
    ) -> Result<StepLosses, ActorError>;

    /// A copy of the weights on `device` and its size in bytes, into `reuse`'s buffers where
    /// they fit (a subscriber gives its applied copy back).
    fn snapshot(&mut self, device: Device, reuse: Option<Snapshot>) -> (Snapshot, u64);

    /// Writes the final weights (a model directory).
    fn save(&self, dir: &Path) -> Result<(), ActorError>;

    /// Writes the checkpoint's tensor files into `scratch`; returns the optimiser's step count.
    fn write_checkpoint(&self, scratch: &Path) -> Result<u64, ActorError>;

    /// Loads a checkpoint's weights and optimiser state.
    fn load_resume(&mut self, resume: &LearnerResume) -> Result<(), ActorError>;
}

/// The mask of the tokens a loss trains: `response_mask` (1 on response tokens, 0 on padding;
/// `[batch, tokens]`) times each sequence's policy mask, so a multi-turn trajectory's
/// environment tokens are context and get no gradient.
pub fn trained_mask(response_mask: &Tensor, sequences: &[Sequence]) -> Tensor {
    if sequences.iter().all(|s| s.policy_mask.is_none()) {
        return response_mask.shallow_clone();
    }
    let width = response_mask.size()[1] as usize;
    let flat: Vec<f32> = sequences
        .iter()
        .flat_map(|s| {
            (0..width).map(move |i| {
                let own = i < s.response.len() && s.policy_mask.as_ref().is_none_or(|m| m[i]);
                f32::from(u8::from(own))
            })
        })
        .collect();
    let policy = Tensor::from_slice(&flat)
        .view([sequences.len() as i64, width as i64])
        .to_device(response_mask.device())
        .to_kind(response_mask.kind());
    response_mask * policy
}

/// Builds the learner's engine on its device thread.
pub type TrainEngineBuilder = Box<dyn FnOnce() -> Result<Box<dyn TrainEngine>, ActorError> + Send>;

/// The real engine: GRPO on a Qwen2-VL policy with a frozen reference for the KL term.
pub struct GrpoTrainer {
    policy: VlEngine,
    reference: Option<VlEngine>,
    optimizer: AdamW,
}

impl GrpoTrainer {
    /// Loads the policy (and, when the loss has a KL term — `kl_beta` > 0 — and the config
    /// keeps a reference, a frozen reference: the starting policy, also on resume) from
    /// `model_dir`.
    pub fn load(
        model_dir: &Path,
        device: Device,
        kind: Kind,
        config: &LearnerConfig,
        kl_beta: f64,
    ) -> Result<GrpoTrainer, ActorError> {
        let policy = VlEngine::load(model_dir, device, kind)?;
        let reference = if config.reference && kl_beta > 0.0 {
            let reference = VlEngine::load(model_dir, device, kind)?;
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
                weight_decay: config.weight_decay,
                ..Default::default()
            },
        );
        Ok(GrpoTrainer {
            policy,
            reference,
            optimizer,
        })
    }

    /// A builder for [`crate::learner::LearnerArgs::engine`], resuming from `resume` if given.
    pub fn builder(
        model_dir: PathBuf,
        device: Device,
        kind: Kind,
        config: LearnerConfig,
        kl_beta: f64,
        resume: Option<LearnerResume>,
    ) -> TrainEngineBuilder {
        Box::new(move || {
            let mut engine = GrpoTrainer::load(&model_dir, device, kind, &config, kl_beta)?;
            if let Some(resume) = &resume {
                engine.load_resume(resume)?;
            }
            Ok(Box::new(engine) as Box<dyn TrainEngine>)
        })
    }

    /// Loss terms of one micro-batch, with gradients accumulated.
    fn micro_batch(
        &mut self,
        chunk: &[Sequence],
        loss: &dyn PolicyLoss,
        step: (usize, usize),
        inject_nan: bool,
    ) -> Result<StepLosses, ActorError> {
        let (step_tokens, step_sequences) = step;
        let encoded: Vec<EncodedPrompt> = chunk
            .iter()
            .map(|s| {
                self.policy
                    .encode(&s.spec.system, &s.spec.user, s.spec.image.as_deref())
            })
            .collect::<Result<_, _>>()?;
        for (e, s) in encoded.iter().zip(chunk) {
            if e.prompt.tokens != s.prompt_tokens {
                return Err(ActorError::Engine(format!(
                    "prompt {} re-encodes differently on the learner",
                    s.spec.id
                )));
            }
        }
        let refs: Vec<&EncodedPrompt> = encoded.iter().collect();
        let responses: Vec<Vec<i64>> = chunk.iter().map(|s| s.response.clone()).collect();
        let temperature = chunk[0].temperature.max(1e-6);
        let current = self.policy.logprobs(&refs, &responses, temperature)?;
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
        let mask = trained_mask(&current.mask, chunk);
        let reference = match &self.reference {
            Some(reference) if loss.kl_beta() > 0.0 => {
                Some(tch::no_grad(|| reference.logprobs(&refs, &responses, temperature))?.logprobs)
            }
            _ => None,
        };
        let advantages =
            Tensor::from_slice(&chunk.iter().map(|s| s.advantage).collect::<Vec<f32>>())
                .to_device(device);
        let terms = loss.loss(&LossInputs {
            logp: &current.logprobs,
            behaviour_logp: &behaviour,
            reference_logp: reference.as_ref(),
            advantages: &advantages,
            mask: &mask,
            step_tokens,
            step_sequences,
        });
        let loss = if inject_nan {
            terms.loss * f64::NAN
        } else {
            terms.loss
        };
        loss.backward();
        Ok(StepLosses {
            loss: loss.double_value(&[]),
            kl: terms.kl,
            clip_fraction: terms.clip_fraction,
            grad_norm: 0.0,
        })
    }
}

impl TrainEngine for GrpoTrainer {
    fn train_step(
        &mut self,
        sequences: Vec<Sequence>,
        config: &LearnerConfig,
        loss: &dyn PolicyLoss,
        lr: f64,
        inject_nan: bool,
    ) -> Result<StepLosses, ActorError> {
        let step_tokens: usize = sequences.iter().map(Sequence::trained_tokens).sum();
        let step = (step_tokens, sequences.len());
        self.optimizer.zero_grad();
        let mut sum = StepLosses::default();
        for chunk in sequences.chunks(config.micro_batch.max(1)) {
            let terms = self.micro_batch(chunk, loss, step, inject_nan)?;
            sum.loss += terms.loss;
            sum.kl += terms.kl;
            sum.clip_fraction += terms.clip_fraction;
        }
        let grad_norm = self.optimizer.grad_norm();
        if !grad_norm.is_finite() || !sum.loss.is_finite() {
            self.optimizer.zero_grad();
            return Err(ActorError::NonFinite {
                loss: sum.loss,
                grad_norm,
            });
        }
        self.optimizer.clip_to(grad_norm, config.grad_clip);
        self.optimizer.step(lr);
        self.optimizer.zero_grad();
        sum.grad_norm = grad_norm;
        Ok(sum)
    }

    fn snapshot(&mut self, device: Device, reuse: Option<Snapshot>) -> (Snapshot, u64) {
        crate::weight_sync::snapshot_into(self.policy.model.var_store(), device, reuse)
    }

    fn save(&self, dir: &Path) -> Result<(), ActorError> {
        self.policy
            .model
            .save(dir)
            .map_err(|e| ActorError::Engine(e.to_string()))
    }

    fn write_checkpoint(&self, scratch: &Path) -> Result<u64, ActorError> {
        std::fs::create_dir_all(scratch).map_err(|e| ActorError::io("creating", scratch, e))?;
        let mut weights: Vec<(String, Tensor)> = self
            .policy
            .model
            .var_store()
            .variables()
            .into_iter()
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let path = scratch.join(crate::checkpoint::WEIGHTS);
        Tensor::write_safetensors(&weights, &path)
            .map_err(|e| ActorError::Checkpoint(format!("writing {}: {e}", path.display())))?;
        let path = scratch.join(crate::checkpoint::OPTIMIZER);
        Tensor::write_safetensors(&self.optimizer.state_tensors(), &path)
            .map_err(|e| ActorError::Checkpoint(format!("writing {}: {e}", path.display())))?;
        Ok(self.optimizer.steps())
    }

    fn load_resume(&mut self, resume: &LearnerResume) -> Result<(), ActorError> {
        crate::weight_sync::apply_file(self.policy.model.var_store(), &resume.weights)?;
        let moments = Tensor::read_safetensors(&resume.optimizer).map_err(|e| {
            ActorError::Checkpoint(format!("reading {}: {e}", resume.optimizer.display()))
        })?;
        self.optimizer
            .load_state(&moments, resume.optimizer_steps)
            .map_err(|e| ActorError::Checkpoint(format!("{}: {e}", resume.optimizer.display())))
    }
}
