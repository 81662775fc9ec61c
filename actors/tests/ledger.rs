//! The ledger equation and its violations.

use grlhf_actors::ledger::Ledger;

#[test]
fn every_admitted_prompt_is_trained_dropped_or_in_flight() {
    let ledger = Ledger::new();
    for uid in 0..10 {
        ledger.admit(uid, uid / 4);
    }
    for uid in 0..6 {
        ledger.trained(uid);
    }
    ledger.dropped(6, "stale");
    ledger.dropped(7, "judge_error");
    let s = ledger.snapshot();
    assert_eq!(
        (s.admitted, s.trained, s.dropped, s.in_flight),
        (10, 6, 2, 2)
    );
    assert!(s.balances());
    assert_eq!(s.dropped_by_reason["stale"], 1);
    assert_eq!(ledger.in_flight(), vec![(8, 2), (9, 2)]);
    assert!(ledger.violations().is_empty());
    // Training twice, or closing an unknown prompt, is recorded and changes nothing.
    ledger.trained(3);
    ledger.dropped(42, "stale");
    ledger.admit(9, 3);
    assert_eq!(ledger.violations().len(), 3);
    assert_eq!(ledger.snapshot(), s);
}

#[test]
fn a_restored_ledger_has_the_same_counts_and_still_refuses_training_twice() {
    let ledger = Ledger::new();
    for uid in 0..8 {
        ledger.admit(uid, 0);
    }
    for uid in 0..4 {
        ledger.trained(uid);
    }
    ledger.dropped(4, "stale");
    let restored = Ledger::restore(ledger.entries());
    assert_eq!(restored.snapshot(), ledger.snapshot());
    assert!(restored.snapshot().balances());
    restored.trained(2);
    assert_eq!(
        restored.violations().len(),
        1,
        "trained twice across a restore"
    );
    restored.trained(5);
    assert!(restored.snapshot().balances());
}

#[test]
fn a_failed_holder_gives_back_exactly_the_prompts_it_held_in_flight() {
    let ledger = Ledger::new();
    let (a, b) = (ractor::ActorId::Local(1), ractor::ActorId::Local(2));
    for uid in 0..6 {
        ledger.admit(uid, 0);
    }
    for uid in 0..3 {
        ledger.hold(uid, a);
    }
    ledger.hold(3, b);
    // uid 1 moved on to b (routed to a judge); uid 2 was trained; uid 0 went past the judges.
    ledger.hold(1, b);
    ledger.trained(2);
    ledger.hold(4, a);
    ledger.unhold(4);
    assert_eq!(ledger.release_held_by(a), vec![0]);
    assert_eq!(
        ledger.release_held_by(a),
        Vec::<u64>::new(),
        "released twice"
    );
    assert_eq!(ledger.release_held_by(b), vec![1, 3]);
    // A prompt no longer in flight cannot be held.
    ledger.hold(2, a);
    assert!(ledger.release_held_by(a).is_empty());
}
