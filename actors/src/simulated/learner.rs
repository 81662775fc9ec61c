//! A train engine that holds no model: it spends the cost model's training time per step and its
//! publication time per subscriber. The real [`crate::learner::Learner`] drives it, so a
//! simulated learner samples batches, checks staleness, closes prompts in the ledger and
//! publishes versions exactly as the real one does.

use std::path::Path;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::error::ActorError;
use crate::learner_config::LearnerConfig;
use crate::policy_loss::PolicyLoss;
use crate::simulated::generator::spend;
use crate::simulated::CostModel;
use crate::train_engine::{LearnerResume, Sequence, Snapshot, StepLosses, TrainEngine};

/// Training that costs what the cost model says.
pub struct SimTrainEngine {
    pub cost: CostModel,
    /// Publish real bytes: every snapshot is one tensor of the cost model's `weight_bytes`,
    /// different for every version. A multi-process bench sets it so the weight data plane
    /// carries a model's worth of bytes to each worker; in one process the copy is simulated
    /// (`sync_s_per_subscriber`) and no tensor is made.
    pub carry_weights: bool,
    /// Snapshots taken (what a carried tensor is filled with).
    pub versions: u64,
}

impl SimTrainEngine {
    /// An engine that simulates the weight copy instead of making one.
    pub fn new(cost: CostModel) -> SimTrainEngine {
        SimTrainEngine {
            cost,
            carry_weights: false,
            versions: 0,
        }
    }
}

impl TrainEngine for SimTrainEngine {
    fn train_step(
        &mut self,
        sequences: Vec<Sequence>,
        _config: &LearnerConfig,
        _loss: &dyn PolicyLoss,
        _lr: f64,
        inject_nan: bool,
    ) -> Result<StepLosses, ActorError> {
        let started = Instant::now();
        let tokens: usize = sequences.iter().map(|s| s.response.len()).sum();
        spend(started, self.cost.learn_s(tokens));
        if inject_nan {
            return Err(ActorError::NonFinite {
                loss: f64::NAN,
                grad_norm: f64::NAN,
            });
        }
        Ok(StepLosses::default())
    }

    /// No tensors: the update carries the cost model's weight size, and the copy its time;
    /// with `carry_weights`, a real tensor of that size (its bytes the version number), so
    /// what it costs to copy and send is measured, not simulated.
    fn snapshot(&mut self, _device: Device, reuse: Option<Snapshot>) -> (Snapshot, u64) {
        let bytes = self.cost.weight_bytes;
        if !self.carry_weights || bytes == 0 {
            spend(Instant::now(), self.cost.sync_s(1));
            return (Vec::new(), bytes);
        }
        self.versions += 1;
        let mut tensor = reuse
            .and_then(|mut old| old.pop())
            .map(|(_, t)| t)
            .filter(|t| t.numel() as u64 == bytes && t.kind() == Kind::Uint8)
            .unwrap_or_else(|| Tensor::zeros([bytes as i64], (Kind::Uint8, Device::Cpu)));
        let _ = tensor.fill_((self.versions % 251) as i64);
        (vec![("simulated.weights".to_string(), tensor)], bytes)
    }

    fn save(&self, _dir: &Path) -> Result<(), ActorError> {
        Ok(())
    }

    /// Nothing to write: a simulated checkpoint is the run's state alone.
    fn write_checkpoint(&self, _scratch: &Path) -> Result<u64, ActorError> {
        Ok(0)
    }

    fn load_resume(&mut self, _resume: &LearnerResume) -> Result<(), ActorError> {
        Ok(())
    }
}
