//! The learner steps a run remembers: the full record of the newest `[telemetry] steps_window`
//! steps (what `RunOutcome::steps` hands back, and what `grlhf bench` measures) and, for the whole
//! run, only what `summary.json` needs — each step's reward (8 bytes a step, for the first and
//! last quarter's means), the largest staleness, the violations, the sync time. A step record
//! holds maps and is about 1 kB in memory, so keeping every one grew a long run by ~1 MB per
//! 1,000 steps; `metrics.jsonl` on disk has all of them.

use std::collections::VecDeque;

use grlhf_actors::learner::StepStats;

#[derive(Debug, Clone)]
pub struct StepHistory {
    recent: VecDeque<StepStats>,
    window: usize,
    count: u64,
    rewards: Vec<f64>,
    max_staleness: u64,
    violations: usize,
    sync_ms_total: f64,
}

impl StepHistory {
    /// A history keeping the newest `window` steps in full (at least 1).
    pub fn new(window: usize) -> StepHistory {
        StepHistory {
            recent: VecDeque::new(),
            window: window.max(1),
            count: 0,
            rewards: Vec::new(),
            max_staleness: 0,
            violations: 0,
            sync_ms_total: 0.0,
        }
    }

    pub fn push(&mut self, stats: StepStats) {
        self.count += 1;
        self.rewards.push(stats.reward_mean);
        self.max_staleness = self.max_staleness.max(stats.max_staleness);
        self.violations += stats.staleness_violations.len();
        self.sync_ms_total += stats.sync_ms;
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(stats);
    }

    /// Steps recorded, over the whole run.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn last(&self) -> Option<&StepStats> {
        self.recent.back()
    }

    /// The steps kept in full, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &StepStats> {
        self.recent.iter()
    }

    /// The steps kept in full.
    pub fn into_recent(self) -> Vec<StepStats> {
        self.recent.into()
    }

    /// Every step's batch-mean reward, in order.
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }

    pub fn max_staleness(&self) -> u64 {
        self.max_staleness
    }

    pub fn staleness_violations(&self) -> usize {
        self.violations
    }

    /// Mean weight-sync time per step, in ms.
    pub fn mean_sync_ms(&self) -> f64 {
        self.sync_ms_total / self.count.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_the_full_records_and_totals_cover_the_run() {
        let mut history = StepHistory::new(3);
        for step in 0..10u64 {
            history.push(StepStats {
                step,
                reward_mean: step as f64,
                max_staleness: step % 4,
                sync_ms: 2.0,
                staleness_violations: if step == 1 { vec!["x".into()] } else { vec![] },
                ..StepStats::default()
            });
        }
        assert_eq!(history.count(), 10);
        let kept: Vec<u64> = history.recent().map(|s| s.step).collect();
        assert_eq!(kept, vec![7, 8, 9]);
        assert_eq!(history.rewards().len(), 10);
        assert_eq!(history.max_staleness(), 3);
        assert_eq!(history.staleness_violations(), 1);
        assert_eq!(history.mean_sync_ms(), 2.0);
        assert_eq!(history.last().map(|s| s.step), Some(9));
    }
}
