//! The activity log stays bounded however long a run goes, while its totals stay exact: busy
//! seconds over evicted spans, counters, and the version check.

use grlhf_actors::activity::{overlap_seconds, ActivityLog, Milestone, Span};
use grlhf_actors::trace_file::read_trace;

#[test]
fn the_window_bounds_spans_and_events_and_totals_stay_exact() {
    let log = ActivityLog::with_window(100);
    let mut busy = [0.0f64; 3];
    for i in 0..10_000u64 {
        let actor = (i % 3) as usize;
        let (start, end) = (i as f64, i as f64 + 0.25 * (actor + 1) as f64);
        log.record(&format!("generator-{actor}"), "generate", start, end);
        busy[actor] += end - start;
        log.mark(i, Milestone::Taken);
        log.add("generated_tokens", 3);
    }
    let spans = log.spans();
    assert_eq!(spans.len(), 100);
    assert_eq!(
        spans[0].start, 9_900.0,
        "the newest spans are kept, oldest first"
    );
    assert_eq!(log.events().len(), 100);
    assert_eq!(log.events()[99].uid, 9_999);
    assert_eq!(log.evicted(), (9_900, 9_900));
    let totals = log.busy_totals();
    assert_eq!(totals.len(), 3);
    for (actor, expected) in busy.iter().enumerate() {
        let got = totals[&format!("generator-{actor}")];
        assert!(
            (got - expected).abs() < 1e-6,
            "generator-{actor}: {got} vs {expected}"
        );
    }
    assert_eq!(log.counter("generated_tokens"), 30_000);
}

#[test]
fn a_run_that_fits_its_window_evicts_nothing() {
    let log = ActivityLog::with_window(1_000);
    for i in 0..1_000 {
        log.record("learner", "train", i as f64, i as f64 + 1.0);
    }
    assert_eq!(log.evicted(), (0, 0));
    assert_eq!(log.spans().len(), 1_000);
}

#[test]
fn versions_are_checked_without_keeping_their_history() {
    let log = ActivityLog::new();
    for v in 1..=50_000 {
        log.note_version("generator-0", v);
        log.note_version("generator-1", v);
    }
    assert!(log.versions_monotonic());
    assert_eq!(log.last_versions()["generator-1"], 50_000);
    log.note_version("generator-0", 49_999);
    assert!(
        !log.versions_monotonic(),
        "going back a version must be caught"
    );
    log.note_version("generator-0", 60_000);
    assert!(!log.versions_monotonic(), "the flag stays down once raised");
}

fn span(kind: &str, start: f64, end: f64) -> Span {
    Span {
        actor: format!("{kind}-actor").into(),
        kind: kind.into(),
        start,
        end,
    }
}

#[test]
fn overlap_is_the_time_both_kinds_ran_counted_once() {
    // Two generators overlap each other during [1, 2); the learner runs [1.5, 3).
    let spans = [
        span("generate", 0.0, 2.0),
        span("generate", 1.0, 2.5),
        span("train", 1.5, 3.0),
        span("generate", 4.0, 5.0),
        span("train", 6.0, 7.0),
    ];
    // Generation ran [0, 2.5) ∪ [4, 5); training [1.5, 3) ∪ [6, 7): both during [1.5, 2.5).
    assert!((overlap_seconds(&spans, "generate", "train") - 1.0).abs() < 1e-12);
    assert_eq!(overlap_seconds(&spans, "generate", "judge"), 0.0);
    // Lockstep: touching ends are not overlap.
    let lockstep = [span("generate", 0.0, 1.0), span("train", 1.0, 2.0)];
    assert_eq!(overlap_seconds(&lockstep, "generate", "train"), 0.0);
}

#[test]
fn overlap_of_a_full_window_is_exact() {
    // 200k spans (a full default window): the old pairwise sum made 10^10 comparisons here.
    let mut spans = Vec::new();
    for i in 0..100_000 {
        let t = i as f64;
        spans.push(span("generate", t, t + 0.6));
        spans.push(span("train", t + 0.5, t + 1.0));
    }
    let overlap = overlap_seconds(&spans, "generate", "train");
    assert!((overlap - 10_000.0).abs() < 1e-3, "{overlap}");
}

#[test]
fn the_trace_file_holds_every_span_and_event_the_window_dropped() {
    let dir = std::env::temp_dir().join(format!("grlhf-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace");
    let _ = std::fs::remove_file(&path);
    let log = ActivityLog::with_window(10);
    log.stream_to(&path, "test run").unwrap();
    for i in 0..1_000u64 {
        let actor = format!("judge-{}", i % 3);
        log.record(&actor, "judge", i as f64, i as f64 + 0.5);
        log.mark(i, Milestone::Judged);
    }
    log.flush_trace();
    assert_eq!(log.spans().len(), 10, "memory keeps the window only");
    let read = read_trace(&path, true).unwrap();
    assert_eq!(read.spans.len(), 1_000);
    assert_eq!(read.events.len(), 1_000);
    assert_eq!(read.bad_lines, 0);
    assert_eq!(&*read.spans[4].actor, "judge-1");
    assert_eq!(&*read.spans[4].kind, "judge");
    assert!((read.spans[4].start - 4.0).abs() < 1e-6 && (read.spans[4].end - 4.5).abs() < 1e-6);
    assert_eq!(read.events[999].uid, 999);
    assert_eq!(read.events[999].milestone, Milestone::Judged);
    // Names are interned: every span of an actor shares one allocation.
    let spans = log.spans();
    let same: Vec<&Span> = spans.iter().filter(|s| &*s.actor == "judge-0").collect();
    assert!(
        same.len() > 1
            && same
                .windows(2)
                .all(|w| std::sync::Arc::ptr_eq(&w[0].actor, &w[1].actor))
    );
    // A run killed mid-write leaves a cut-off last line: it is skipped and counted.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"ph":"X","name":"judge","pid":1,"ti"#);
    std::fs::write(&path, text).unwrap();
    let read = read_trace(&path, false).unwrap();
    assert_eq!((read.spans.len(), read.bad_lines), (1_000, 1));
    // The next writer (a resume) cuts the fragment off before it appends.
    let resumed = ActivityLog::with_window(10);
    resumed.stream_to(&path, "resumed").unwrap();
    resumed.record("learner", "train", 0.0, 1.0);
    resumed.flush_trace();
    let read = read_trace(&path, false).unwrap();
    assert_eq!((read.spans.len(), read.bad_lines), (1_001, 0));
    // Perfetto / Chrome read the JSON array form without its closing bracket; with one added it
    // is plain JSON, every event an object with a phase.
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.rfind('\n').unwrap();
    let json = format!("{}]", text[..cut].trim_end().trim_end_matches(','));
    let events: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(events.iter().all(|e| e["ph"].is_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_rebuilt_from_its_records_has_the_same_busy_totals() {
    let log = ActivityLog::new();
    log.record("generator-0", "generate", 0.0, 2.0);
    log.record("generator-0", "sync", 2.0, 2.5);
    log.record("learner", "train", 1.0, 3.0);
    let rebuilt = ActivityLog::from_records(log.spans(), log.events());
    assert_eq!(rebuilt.busy_totals(), log.busy_totals());
    assert_eq!(rebuilt.spans().len(), 3);
    assert_eq!(rebuilt.evicted(), (0, 0));
}
