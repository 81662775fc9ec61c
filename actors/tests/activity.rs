//! The activity log stays bounded however long a run goes, while its totals stay exact: busy
//! seconds over evicted spans, counters, and the version check.

use grlhf_actors::activity::{overlap_seconds, ActivityLog, Milestone, Span};

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
        actor: format!("{kind}-actor"),
        kind: kind.to_string(),
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
