//! `[faults]`: failures injected on purpose, to show a run survives them (off by default).
//!
//! ```toml
//! [faults]
//! kill_every_s = 2.0                 # mean seconds between kills (exponential); unset = none
//! kill = ["generator", "judge"]      # which roles may be killed
//! nan_loss_steps = [3]               # step attempts (skipped ones counted) made NaN
//! nan_loss_probability = 0.0         # … or at random
//! fail_checkpoint_steps = [4]        # checkpoint writes that fail (the run goes on)
//! fail_checkpoint_probability = 0.0
//! corrupt_checkpoint_steps = [6]     # checkpoints damaged after writing (resume skips them)
//! seed = 7                           # default: the run's seed
//! ```
//!
//! A kill sends the chosen actor a fault message: a generator panics in its next batch after
//! taking its prompts, a judge on its next group — a crash while holding work, the case the
//! supervisor must recover from (it restarts the actor and issues those prompts again). NaN losses and checkpoint
//! faults are injected by the learner itself ([`grlhf_actors::learner::LearnerFaults`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grlhf_actors::generator::GeneratorMsg;
use grlhf_actors::judge::{JudgeMsg, JudgePool};
use grlhf_actors::learner::LearnerFaults;
use grlhf_actors::supervisor::ActorSlot;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The `[faults]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Mean seconds between actor kills (exponentially distributed); unset: no kills.
    pub kill_every_s: Option<f64>,
    /// Roles that may be killed: `generator`, `judge` (empty: both).
    pub kill: Vec<String>,
    pub nan_loss_steps: Vec<u64>,
    pub nan_loss_probability: f64,
    pub fail_checkpoint_steps: Vec<u64>,
    pub fail_checkpoint_probability: f64,
    pub corrupt_checkpoint_steps: Vec<u64>,
    /// The faults' random seed (default: the run's seed).
    pub seed: Option<u64>,
}

impl FaultsConfig {
    /// The first problem, naming the field.
    pub fn problem(&self) -> Option<String> {
        if let Some(s) = self.kill_every_s {
            if !(s > 0.0 && s.is_finite()) {
                return Some(format!("faults.kill_every_s = {s}: must be positive"));
            }
        }
        if let Some(role) = self
            .kill
            .iter()
            .find(|r| !matches!(r.as_str(), "generator" | "judge"))
        {
            return Some(format!(
                "faults.kill: `{role}` is not a role that can be killed (generator, judge)"
            ));
        }
        for (field, p) in [
            ("faults.nan_loss_probability", self.nan_loss_probability),
            (
                "faults.fail_checkpoint_probability",
                self.fail_checkpoint_probability,
            ),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Some(format!("{field} = {p}: must be within [0, 1]"));
            }
        }
        None
    }

    pub fn kills(&self, role: &str) -> bool {
        self.kill_every_s.is_some() && (self.kill.is_empty() || self.kill.iter().any(|r| r == role))
    }

    /// The learner's share of the faults.
    pub fn learner(&self, run_seed: u64) -> LearnerFaults {
        LearnerFaults {
            nan_loss_at: self.nan_loss_steps.clone(),
            nan_loss_probability: self.nan_loss_probability,
            fail_checkpoint_at: self.fail_checkpoint_steps.clone(),
            fail_checkpoint_probability: self.fail_checkpoint_probability,
            corrupt_checkpoint_at: self.corrupt_checkpoint_steps.clone(),
            seed: self.seed.unwrap_or(run_seed) ^ 0xFA17,
        }
    }
}

/// Kills counted by role, shared with the run's summary.
pub type KillCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Kills generators and judges at random until `stop` is set.
pub fn spawn_killer(
    config: &FaultsConfig,
    run_seed: u64,
    generators: Vec<ActorSlot<GeneratorMsg>>,
    pool: Arc<JudgePool>,
    stop: Arc<AtomicBool>,
    counts: KillCounts,
) -> Option<tokio::task::JoinHandle<()>> {
    let mean = config.kill_every_s?;
    let (kill_generators, kill_judges) = (config.kills("generator"), config.kills("judge"));
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(config.seed.unwrap_or(run_seed) ^ 0x0C0FFEE);
    Some(tokio::spawn(async move {
        loop {
            // Exponential waits: kills arrive as a Poisson process of the configured rate.
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            tokio::time::sleep(Duration::from_secs_f64(-mean * u.ln())).await;
            if stop.load(Ordering::Acquire) {
                return;
            }
            let judges = pool.judges();
            let choices = (if kill_generators { generators.len() } else { 0 })
                + (if kill_judges { judges.len() } else { 0 });
            if choices == 0 {
                return;
            }
            let pick = rng.random_range(0..choices);
            let generator_choices = if kill_generators { generators.len() } else { 0 };
            let role = if pick < generator_choices {
                let actor = generators[pick].read().unwrap().clone();
                let _ = actor.cast(GeneratorMsg::Fault);
                "generator"
            } else {
                let _ = judges[pick - generator_choices].cast(JudgeMsg::Fault);
                "judge"
            };
            tracing::warn!("faults: killing a {role}");
            let kind = format!("kill_{role}");
            metrics::counter!(grlhf_actors::metric_series::FAULTS_INJECTED, "kind" => kind)
                .increment(1);
            *counts
                .lock()
                .unwrap()
                .entry(format!("kill_{role}"))
                .or_default() += 1;
        }
    }))
}
