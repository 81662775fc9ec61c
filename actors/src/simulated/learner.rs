//! A train engine that holds no model: it spends the cost model's training time per step and its
//! publication time per subscriber. The real [`crate::learner::Learner`] drives it, so a
//! simulated learner samples batches, checks staleness, closes prompts in the ledger and
//! publishes versions exactly as the real one does.

use std::path::Path;
use std::time::Instant;

use tch::Device;

use crate::error::ActorError;
use crate::learner_config::LearnerConfig;
use crate::policy_loss::PolicyLoss;
use crate::simulated::generator::spend;
use crate::simulated::CostModel;
use crate::train_engine::{LearnerResume, Sequence, Snapshot, StepLosses, TrainEngine};

/// Training that costs what the cost model says.
pub struct SimTrainEngine {
    pub cost: CostModel,
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

    /// No tensors: the update carries the cost model's weight size, and the copy its time.
    fn snapshot(&mut self, _device: Device, _reuse: Option<Snapshot>) -> (Snapshot, u64) {
        spend(Instant::now(), self.cost.sync_s(1));
        (Vec::new(), self.cost.weight_bytes)
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
