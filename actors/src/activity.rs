//! Busy intervals of every actor and the life of every prompt group, on one clock: the source of
//! busy ratios, of the overlap measurements that tell sync from async, of queue depths and
//! end-to-end latencies, and of the timelines `grlhf bench` draws. Bounded: only the newest
//! spans and events are kept, while totals cover the whole run.

use std::collections::{BTreeMap, VecDeque};
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

/// How many of the newest spans, and of the newest group events, a log keeps by default: every
/// span of a bench run, and about 40 MB at most however long a run goes.
pub const DEFAULT_ACTIVITY_WINDOW: usize = 200_000;

/// Spans kept, and what is known of all of them.
#[derive(Debug, Default)]
struct SpanLog {
    recent: VecDeque<Span>,
    evicted: u64,
    /// Busy seconds of each actor over the whole run, evicted spans included.
    busy: BTreeMap<String, f64>,
}

#[derive(Debug, Default)]
struct EventLog {
    recent: VecDeque<GroupEvent>,
    evicted: u64,
}

/// Each actor's newest policy version, and whether any actor ever went back.
#[derive(Debug)]
struct VersionLog {
    last: BTreeMap<String, u64>,
    monotonic: bool,
}

impl Default for VersionLog {
    fn default() -> Self {
        VersionLog {
            last: BTreeMap::new(),
            monotonic: true,
        }
    }
}

/// The run's activity log.
///
/// Busy spans and group events are kept in windows of the newest `window` entries (timelines and
/// latency figures read those); busy totals, counters and version checks cover the whole run.
/// So a week-long run's telemetry stays bounded instead of growing ~15 kB per step.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    origin: Instant,
    window: usize,
    spans: Arc<Mutex<SpanLog>>,
    events: Arc<Mutex<EventLog>>,
    versions: Arc<Mutex<VersionLog>>,
    counters: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Default for ActivityLog {
    fn default() -> Self {
        ActivityLog::new()
    }
}

impl ActivityLog {
    /// A log keeping the newest [`DEFAULT_ACTIVITY_WINDOW`] spans and events.
    pub fn new() -> ActivityLog {
        ActivityLog::with_window(DEFAULT_ACTIVITY_WINDOW)
    }

    /// A log keeping the newest `window` spans and the newest `window` group events (at least 1).
    pub fn with_window(window: usize) -> ActivityLog {
        ActivityLog {
            origin: Instant::now(),
            window: window.max(1),
            spans: Arc::default(),
            events: Arc::default(),
            versions: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Adds `n` to the run-wide counter `name` (generated tokens, judged pairs, …).
    pub fn add(&self, name: &str, n: u64) {
        let mut counters = self.counters.lock().unwrap();
        match counters.get_mut(name) {
            Some(count) => *count += n,
            None => {
                counters.insert(name.to_string(), n);
            }
        }
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
        let mut versions = self.versions.lock().unwrap();
        match versions.last.get_mut(actor) {
            Some(last) => {
                let forward = version > *last;
                *last = version;
                versions.monotonic &= forward;
            }
            None => {
                versions.last.insert(actor.to_string(), version);
            }
        }
    }

    /// Each actor's newest version.
    pub fn last_versions(&self) -> BTreeMap<String, u64> {
        self.versions.lock().unwrap().last.clone()
    }

    /// Whether every actor's versions only ever increased.
    pub fn versions_monotonic(&self) -> bool {
        self.versions.lock().unwrap().monotonic
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub fn record(&self, actor: &str, kind: &str, start: f64, end: f64) {
        let mut log = self.spans.lock().unwrap();
        let busy = (end - start).max(0.0);
        match log.busy.get_mut(actor) {
            Some(total) => *total += busy,
            None => {
                log.busy.insert(actor.to_string(), busy);
            }
        }
        if log.recent.len() == self.window {
            log.recent.pop_front();
            log.evicted += 1;
        }
        log.recent.push_back(Span {
            actor: actor.to_string(),
            kind: kind.to_string(),
            start,
            end,
        });
    }

    /// The spans kept (the newest `window`), oldest first.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().recent.iter().cloned().collect()
    }

    /// Busy seconds of every actor that recorded a span, over the whole run.
    pub fn busy_totals(&self) -> BTreeMap<String, f64> {
        self.spans.lock().unwrap().busy.clone()
    }

    /// Notes that group `uid` reached `milestone` now.
    pub fn mark(&self, uid: u64, milestone: Milestone) {
        let time = self.now();
        let mut log = self.events.lock().unwrap();
        if log.recent.len() == self.window {
            log.recent.pop_front();
            log.evicted += 1;
        }
        log.recent.push_back(GroupEvent {
            uid,
            milestone,
            time,
        });
    }

    /// The group events kept (the newest `window`), oldest first.
    pub fn events(&self) -> Vec<GroupEvent> {
        self.events.lock().unwrap().recent.iter().copied().collect()
    }

    /// Spans and events dropped from the windows so far: a measurement that needs every span of
    /// a run (`grlhf bench`) must find both 0.
    pub fn evicted(&self) -> (u64, u64) {
        (
            self.spans.lock().unwrap().evicted,
            self.events.lock().unwrap().evicted,
        )
    }

    /// How many spans and events the log keeps.
    pub fn window(&self) -> usize {
        self.window
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

/// Total time during which some span of kind `a` and some span of kind `b` were both running
/// (the measure of the intersection of the two kinds' unions; O(n log n), so a summary of a long
/// run's window stays fast).
pub fn overlap_seconds(spans: &[Span], a: &str, b: &str) -> f64 {
    let xs = union_of(spans, a);
    let ys = union_of(spans, b);
    let (mut i, mut j, mut total) = (0, 0, 0.0);
    while i < xs.len() && j < ys.len() {
        let (x, y) = (xs[i], ys[j]);
        total += (x.1.min(y.1) - x.0.max(y.0)).max(0.0);
        if x.1 < y.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    total
}

/// The spans of `kind` as sorted, disjoint intervals.
fn union_of(spans: &[Span], kind: &str) -> Vec<(f64, f64)> {
    let mut intervals: Vec<(f64, f64)> = spans
        .iter()
        .filter(|s| s.kind == kind && s.end > s.start)
        .map(|s| (s.start, s.end))
        .collect();
    intervals.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}
