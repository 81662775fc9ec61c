//! Busy intervals of every actor and the life of every prompt group, on one clock: the source of
//! busy ratios, of the overlap measurements that tell sync from async, of queue depths and
//! end-to-end latencies, and of the timelines `grlhf bench` draws. Bounded: only the newest
//! spans and events are kept in memory, with actor names and kinds interned, while totals cover
//! the whole run; with a trace file ([`ActivityLog::stream_to`]) every span and event also goes
//! to disk as it happens ([`crate::trace_file`]). Each span also feeds the per-actor busy
//! histogram of the Prometheus endpoint ([`crate::metric_series::ACTOR_BUSY_SECONDS`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::trace_file::TraceWriter;

pub use crate::activity_records::{GroupEvent, Milestone, Span};

/// How many of the newest spans, and of the newest group events, a log keeps by default: about
/// 1 MB however long a run goes (the trace file keeps the rest).
pub const DEFAULT_ACTIVITY_WINDOW: usize = 10_000;

/// Spans kept, and what is known of all of them.
#[derive(Debug, Default)]
struct SpanLog {
    recent: VecDeque<Span>,
    evicted: u64,
    /// Busy seconds of each actor over the whole run, evicted spans included.
    busy: BTreeMap<Arc<str>, f64>,
    /// Interned actor names and span kinds; an actor's trace thread id is its index + 1.
    names: HashMap<Arc<str>, u32>,
    kinds: HashMap<Arc<str>, ()>,
    trace: Option<TraceWriter>,
    /// Why the trace stopped being written (the run goes on without it).
    trace_error: Option<String>,
}

impl SpanLog {
    /// The shared copy of `actor`'s name, its trace thread id, and whether it is new.
    fn intern_actor(&mut self, actor: &str) -> (Arc<str>, u32, bool) {
        if let Some((name, &tid)) = self.names.get_key_value(actor) {
            return (name.clone(), tid, false);
        }
        let tid = self.names.len() as u32 + 1;
        let name: Arc<str> = Arc::from(actor);
        self.names.insert(name.clone(), tid);
        (name, tid, true)
    }

    fn intern_kind(&mut self, kind: &str) -> Arc<str> {
        if let Some((k, ())) = self.kinds.get_key_value(kind) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(kind);
        self.kinds.insert(k.clone(), ());
        k
    }

    /// Runs `write` on the trace, if one is open; the first failure closes it with a warning.
    fn write_trace(&mut self, write: impl FnOnce(&mut TraceWriter) -> std::io::Result<()>) {
        if let Some(trace) = self.trace.as_mut() {
            if let Err(e) = write(trace) {
                tracing::warn!("the trace file stopped being written: {e}");
                self.trace_error = Some(e.to_string());
                self.trace = None;
            }
        }
    }
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

    /// A log holding exactly `spans` and `events` (read back from a trace file, see
    /// [`crate::trace_file::read_trace`]), with busy totals recomputed from them; its counters
    /// and versions are empty.
    pub fn from_records(spans: Vec<Span>, events: Vec<GroupEvent>) -> ActivityLog {
        let log = ActivityLog::with_window(spans.len().max(events.len()));
        {
            let mut inner = log.spans.lock().unwrap();
            for span in spans {
                let (actor, _, _) = inner.intern_actor(&span.actor);
                *inner.busy.entry(actor).or_default() += (span.end - span.start).max(0.0);
                inner.recent.push_back(span);
            }
        }
        log.events.lock().unwrap().recent.extend(events);
        log
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

    /// Streams every span and group event from now on to the trace file at `path` (appended;
    /// see [`crate::trace_file`]), this process's track named `label`.
    pub fn stream_to(&self, path: &Path, label: &str) -> std::io::Result<()> {
        let mut writer = TraceWriter::append(path, label)?;
        let mut log = self.spans.lock().unwrap();
        let mut actors: Vec<(&Arc<str>, &u32)> = log.names.iter().collect();
        actors.sort_by_key(|(_, tid)| **tid);
        for (name, tid) in actors {
            writer.actor(*tid, name)?;
        }
        log.trace = Some(writer);
        Ok(())
    }

    /// Writes what the trace buffered (a killed run loses at most what came after the last
    /// flush); the run calls it after every learner step.
    pub fn flush_trace(&self) {
        self.spans.lock().unwrap().write_trace(|t| t.flush());
    }

    /// Why the trace file stopped being written, if it did.
    pub fn trace_error(&self) -> Option<String> {
        self.spans.lock().unwrap().trace_error.clone()
    }

    pub fn record(&self, actor: &str, kind: &str, start: f64, end: f64) {
        let busy = (end - start).max(0.0);
        crate::metric_series::observe_busy(actor, kind, busy);
        let mut log = self.spans.lock().unwrap();
        let (actor, tid, new) = log.intern_actor(actor);
        let kind = log.intern_kind(kind);
        if new {
            log.write_trace(|t| t.actor(tid, &actor));
        }
        log.write_trace(|t| t.span(tid, &kind, start, end));
        *log.busy.entry(actor.clone()).or_default() += busy;
        if log.recent.len() == self.window {
            log.recent.pop_front();
            log.evicted += 1;
        }
        log.recent.push_back(Span {
            actor,
            kind,
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
        let log = self.spans.lock().unwrap();
        log.busy.iter().map(|(a, &s)| (a.to_string(), s)).collect()
    }

    /// Notes that group `uid` reached `milestone` now.
    pub fn mark(&self, uid: u64, milestone: Milestone) {
        let event = GroupEvent {
            uid,
            milestone,
            time: self.now(),
        };
        // The trace lives with the spans; taking that lock first keeps one lock order.
        self.spans
            .lock()
            .unwrap()
            .write_trace(|t| t.milestone(&event));
        let mut log = self.events.lock().unwrap();
        if log.recent.len() == self.window {
            log.recent.pop_front();
            log.evicted += 1;
        }
        log.recent.push_back(event);
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
        .filter(|s| &*s.actor == actor)
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
        .filter(|s| &*s.kind == kind && s.end > s.start)
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
