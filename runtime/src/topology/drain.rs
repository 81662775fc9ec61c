//! Drain: after the last step, collect the evaluator's results, then restart nothing, admit
//! nothing more, and stop generators (each finishes its batch, so judges still take what it
//! sends) and judges; what they hold stays in flight in the ledger. The supervisor's and the
//! buffer's reports are taken before they stop.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use grlhf_actors::activity::ActivityLog;
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::generator::GeneratorMsg;
use grlhf_actors::learner::LearnerOutcome;
use grlhf_actors::ledger::LedgerSnapshot;
use grlhf_actors::prompt_source::PromptSourceMsg;
use grlhf_actors::protocol::Control;
use grlhf_actors::replay_buffer::BufferMsg;
use grlhf_actors::supervisor::{SupervisionReport, SupervisorMsg};

use super::{Driven, Reliability, StepHistory, Topology};

/// Everything a taken-down topology leaves behind.
pub struct Finished {
    pub steps: StepHistory,
    pub evals: Vec<EvalStats>,
    pub activity: ActivityLog,
    /// Seconds from the start to the learner's end.
    pub end: f64,
    pub interrupted: bool,
    pub learner: LearnerOutcome,
    pub supervision: SupervisionReport,
    pub buffer_max_staleness: Option<u64>,
    pub ledger: LedgerSnapshot,
    pub ledger_violations: Vec<String>,
    /// Prompts trained before this process started (a resume).
    pub trained_at_start: u64,
    pub start_version: u64,
    /// Faults injected from outside the learner (killed actors), by kind.
    pub kills: BTreeMap<String, u64>,
    /// What the run was restored with (a resume).
    pub restored: Reliability,
}

impl Finished {
    /// The last version the learner reached.
    pub fn reached(&self) -> u64 {
        self.steps.last().map_or(self.start_version, |s| s.version)
    }
}

impl Topology {
    /// Takes the topology down; `on_eval` is told of each evaluation collected now (those that
    /// arrived while driving went to the step observer).
    pub async fn drain(
        self,
        driven: Driven,
        on_eval: &mut dyn FnMut(&EvalStats) -> Result<()>,
    ) -> Result<Finished> {
        let _ = self.learner.1.await;
        self.stop_killing.store(true, Ordering::Release);
        if let Some(killer) = &self.killer {
            killer.abort();
        }
        let end = self.activity.now();
        let learner = self.outcome.lock().unwrap().clone();
        // The learner sent its last weights to the evaluator; collect every evaluation, then
        // stop it.
        let mut evals: Vec<EvalStats> = self.evals_seen;
        let mut skipped = self.evals_skipped;
        if let Some((evaluator, handle)) = self.evaluator {
            let last = self.steps.last().map_or(self.start_version, |s| s.version);
            let has_last = |evals: &[EvalStats]| evals.last().map(|e| e.version) == Some(last);
            while evals.len() + skipped < self.evaluations_expected
                && learner.aborted.is_none()
                && !(driven.interrupted && has_last(&evals))
            {
                match tokio::time::timeout(Duration::from_secs(600), self.evals.recv_async()).await
                {
                    Ok(Ok(stats)) if stats.skipped.is_some() => skipped += 1,
                    Ok(Ok(stats)) => {
                        on_eval(&stats)?;
                        evals.push(stats);
                        if driven.interrupted && evals.last().map(|e| e.version) == Some(last) {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            evaluator.stop(None);
            let _ = tokio::time::timeout(Duration::from_secs(600), handle).await;
        }
        let (supervisor, supervisor_handle) = self.supervisor;
        let (source, source_handle) = self.source;
        let (buffer, buffer_handle) = self.buffer;
        supervisor.cast(SupervisorMsg::Draining)?;
        source.cast(PromptSourceMsg::Control(Control::Drain))?;
        let generators: Vec<_> = self
            .generators
            .iter()
            .map(|slot| slot.read().unwrap().clone())
            .collect();
        for generator in &generators {
            let _ = generator.cast(GeneratorMsg::Stop);
        }
        // Generators finish their batch first, so judges still take what they send.
        for generator in &generators {
            let _ = generator
                .get_cell()
                .wait(Some(Duration::from_secs(120)))
                .await;
        }
        for judge in self.pool.judges() {
            let _ = judge
                .stop_and_wait(None, Some(Duration::from_secs(120)))
                .await;
        }
        let supervision = ractor::call!(supervisor, SupervisorMsg::Report).unwrap_or_default();
        supervisor.stop(None);
        let _ = supervisor_handle.await;
        let buffer_stats = ractor::call!(buffer, BufferMsg::Stats).ok();
        buffer.stop(None);
        source.stop(None);
        let _ = buffer_handle.await;
        let _ = source_handle.await;
        let kills = self.kills.lock().unwrap().clone();
        // Everything the actors recorded is on disk before anyone reads the trace back.
        self.activity.flush_trace();
        Ok(Finished {
            steps: self.steps,
            evals,
            ledger: self.ledger.snapshot(),
            ledger_violations: self.ledger.violations(),
            activity: self.activity,
            end,
            interrupted: driven.interrupted,
            learner,
            supervision,
            buffer_max_staleness: buffer_stats.map(|s| s.max_staleness_served),
            trained_at_start: self.trained_at_start,
            start_version: self.start_version,
            kills,
            restored: self.reliability,
        })
    }
}
