//! Busy intervals of every actor and the life of every prompt group, on one clock: the source of
//! busy ratios, of the overlap measurements that tell sync from async, of queue depths and
//! end-to-end latencies, and of the timelines `grlhf bench` draws.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// One busy interval.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub actor: String,
    /// What it was doing: `generate`, `judge`, `train`, `sync`.
    pub kind: String,
    /// Seconds since the run started.
    pub start: f64,
    pub end: f64,
}

/// Where a prompt group is in the pipeline. Each is marked once per group, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    /// A generator took the prompt from the source (admission).
    Taken,
    /// Its n responses were generated and handed to a judge.
    Generated,
    /// A judge scored it and handed it on.
    Judged,
    /// The learner trained on it.
    Trained,
}

/// A group reached `milestone` at `time` seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GroupEvent {
    pub uid: u64,
    pub milestone: Milestone,
    pub time: f64,
}

/// The run's activity log.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    origin: Instant,
    spans: Arc<Mutex<Vec<Span>>>,
    events: Arc<Mutex<Vec<GroupEvent>>>,
    versions: Arc<Mutex<Vec<(String, u64)>>>,
    counters: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl Default for ActivityLog {
    fn default() -> Self {
        ActivityLog::new()
    }
}

impl ActivityLog {
    pub fn new() -> ActivityLog {
        ActivityLog {
            origin: Instant::now(),
            spans: Arc::default(),
            events: Arc::default(),
            versions: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Adds `n` to the run-wide counter `name` (generated tokens, judged pairs, …).
    pub fn add(&self, name: &str, n: u64) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += n;
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Notes that `actor` now holds policy weights of `version`.
    pub fn note_version(&self, actor: &str, version: u64) {
        self.versions
            .lock()
            .unwrap()
            .push((actor.to_string(), version));
    }

    /// Every (actor, version) applied, in order.
    pub fn versions(&self) -> Vec<(String, u64)> {
        self.versions.lock().unwrap().clone()
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub fn record(&self, actor: &str, kind: &str, start: f64, end: f64) {
        self.spans.lock().unwrap().push(Span {
            actor: actor.to_string(),
            kind: kind.to_string(),
            start,
            end,
        });
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Notes that group `uid` reached `milestone` now.
    pub fn mark(&self, uid: u64, milestone: Milestone) {
        let time = self.now();
        self.events.lock().unwrap().push(GroupEvent {
            uid,
            milestone,
            time,
        });
    }

    pub fn events(&self) -> Vec<GroupEvent> {
        self.events.lock().unwrap().clone()
    }
}

/// Total busy time of `actor` between `from` and `to` seconds.
pub fn busy_seconds(spans: &[Span], actor: &str, from: f64, to: f64) -> f64 {
    spans
        .iter()
        .filter(|s| s.actor == actor)
        .map(|s| (s.end.min(to) - s.start.max(from)).max(0.0))
        .sum()
}

/// Total time during which a span of kind `a` and a span of kind `b` were both running.
pub fn overlap_seconds(spans: &[Span], a: &str, b: &str) -> f64 {
    let mut total = 0.0;
    for x in spans.iter().filter(|s| s.kind == a) {
        for y in spans.iter().filter(|s| s.kind == b) {
            total += (x.end.min(y.end) - x.start.max(y.start)).max(0.0);
        }
    }
    total
}
