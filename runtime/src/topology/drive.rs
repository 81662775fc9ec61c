//! Drive: receives the learner's steps as they come, until the last one, Ctrl-C (the learner
//! finishes its current step, then writes its final weights and a checkpoint), or a stall (no
//! step within the plan's patience: the run fails instead of hanging).

use anyhow::{bail, Result};
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::learner::{LearnerMsg, StepStats};

use super::Topology;

/// Told of every step as it completes (writes `metrics.jsonl`, moves a progress bar), and of
/// every evaluation that arrives while the run goes (the rest are handed to `drain`'s callback).
pub trait StepObserver {
    fn step(&mut self, stats: &StepStats) -> Result<()>;

    fn eval(&mut self, _stats: &EvalStats) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&StepStats) -> Result<()>> StepObserver for F {
    fn step(&mut self, stats: &StepStats) -> Result<()> {
        self(stats)
    }
}

/// How driving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driven {
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

impl Topology {
    /// Runs until the learner is done. With `interruptible`, Ctrl-C finishes the run early.
    pub async fn drive_steps(
        &mut self,
        observer: &mut dyn StepObserver,
        interruptible: bool,
    ) -> Result<Driven> {
        let ctrl_c = async {
            if interruptible {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(ctrl_c);
        let mut evals_open = self.evaluator.is_some();
        loop {
            tokio::select! {
                eval = self.evals.recv_async(), if evals_open => match eval {
                    Ok(eval) if eval.skipped.is_some() => self.evals_skipped += 1,
                    Ok(eval) => {
                        observer.eval(&eval)?;
                        self.evals_seen.push(eval);
                    }
                    Err(_) => evals_open = false,
                },
                stats = tokio::time::timeout(self.patience, self.stats.recv_async()) => match stats {
                    Ok(Ok(stats)) => {
                        self.activity.flush_trace();
                        observer.step(&stats)?;
                        self.steps.push(stats);
                    }
                    // The learner finished (or died: an error in a step closes the channel too).
                    Ok(Err(_)) => break,
                    Err(_) => bail!(
                        "the run stalled: no learner step in {:.0} s after step {}",
                        self.patience.as_secs_f64(),
                        self.steps.last().map_or(self.start_version, |s| s.version)
                    ),
                },
                _ = &mut ctrl_c => {
                    tracing::warn!("interrupted: finishing the current step, then writing the final weights and a checkpoint");
                    let _ = self.learner.0.cast(LearnerMsg::Finish);
                    // Record the steps that still complete.
                    while let Ok(stats) = self.stats.recv_async().await {
                        observer.step(&stats)?;
                        self.steps.push(stats);
                    }
                    return Ok(Driven { interrupted: true });
                }
            }
        }
        Ok(Driven { interrupted: false })
    }
}
