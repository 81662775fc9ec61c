//! A run's timeline: every actor's busy spans as a Chrome / Perfetto trace (open `trace.json`
//! at ui.perfetto.dev or chrome://tracing), with queue depths as counter tracks, and as a PNG
//! Gantt chart.

use std::path::Path;

use anyhow::{Context, Result};
use grlhf_actors::activity::Span;
use serde_json::{json, Value};

use crate::bench::measure::QueueSample;
use crate::charts::{gantt, GanttBar};

/// Rows of the Gantt chart at most (the learner, then judges and generators in name order).
const MAX_ROWS: usize = 48;

/// Actors ordered learner first, then judges, then generators (each by number).
fn actor_order(spans: &[Span]) -> Vec<String> {
    let mut names: Vec<String> = spans.iter().map(|s| s.actor.to_string()).collect();
    names.sort();
    names.dedup();
    let rank = |a: &str| match a.split('-').next() {
        Some("learner") => 0,
        Some("judge") => 1,
        Some("generator") => 2,
        _ => 3,
    };
    let number = |a: &str| -> Vec<u64> { a.split('-').filter_map(|p| p.parse().ok()).collect() };
    names.sort_by_key(|a| (rank(a), number(a), a.clone()));
    names
}

/// The trace-event JSON of `spans` and `queues`.
pub fn chrome_trace(spans: &[Span], queues: &[QueueSample]) -> Value {
    let order = actor_order(spans);
    let mut events: Vec<Value> = order
        .iter()
        .enumerate()
        .flat_map(|(tid, name)| {
            [
                json!({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}}),
                json!({"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}}),
            ]
        })
        .collect();
    events.push(json!({"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "grlhf"}}));
    for s in spans {
        let tid = order.iter().position(|a| **a == *s.actor).unwrap_or(0);
        events.push(json!({
            "ph": "X", "pid": 1, "tid": tid, "name": &*s.kind, "cat": &*s.kind,
            "ts": s.start * 1e6, "dur": (s.end - s.start) * 1e6,
        }));
    }
    for q in queues {
        events.push(json!({
            "ph": "C", "pid": 1, "name": "queued groups", "ts": q.time * 1e6,
            "args": {"generating": q.generating, "awaiting_judge": q.awaiting_judge,
                     "awaiting_learner": q.awaiting_learner},
        }));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

/// Writes `trace.json` and `timeline.png` into `dir`.
pub fn write_timeline(
    dir: &Path,
    title: &str,
    spans: &[Span],
    queues: &[QueueSample],
) -> Result<()> {
    let trace = chrome_trace(spans, queues);
    let path = dir.join("trace.json");
    std::fs::write(&path, serde_json::to_vec(&trace)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut rows = actor_order(spans);
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    let bars: Vec<GanttBar> = spans
        .iter()
        .filter_map(|s| {
            rows.iter()
                .position(|a| **a == *s.actor)
                .map(|row| GanttBar {
                    row,
                    kind: s.kind.to_string(),
                    start: s.start,
                    end: s.end,
                })
        })
        .collect();
    let title = if hidden > 0 {
        format!("{title} ({hidden} more actors in trace.json)")
    } else {
        title.to_string()
    };
    gantt(&dir.join("timeline.png"), &title, &rows, &bars)
}
