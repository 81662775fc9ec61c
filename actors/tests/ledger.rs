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
