//! The ledger of prompts: every admitted prompt ends as trained, dropped for a counted reason, or
//! in flight at stop — `admitted = trained + dropped + in_flight`, always, and no prompt is
//! trained twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::protocol::Version;

#[derive(Debug, Clone, PartialEq, Eq)]
enum PromptState {
    InFlight { admitted_at: Version },
    Trained,
    Dropped,
}

/// Counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSnapshot {
    pub admitted: u64,
    pub trained: u64,
    pub dropped: u64,
    pub dropped_by_reason: BTreeMap<String, u64>,
    pub in_flight: u64,
}

impl LedgerSnapshot {
    /// The ledger equation.
    pub fn balances(&self) -> bool {
        self.admitted == self.trained + self.dropped + self.in_flight
            && self.dropped == self.dropped_by_reason.values().sum::<u64>()
    }
}

#[derive(Debug, Default)]
struct Inner {
    prompts: HashMap<u64, PromptState>,
    snapshot: LedgerSnapshot,
    violations: Vec<String>,
}

/// Shared by the prompt source, buffer and learner (a mutex, not an actor: entries are tiny and
/// every writer needs the answer at once).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Inner>>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    pub fn admit(&self, uid: u64, admitted_at: Version) {
        let mut inner = self.inner.lock().unwrap();
        if inner
            .prompts
            .insert(uid, PromptState::InFlight { admitted_at })
            .is_some()
        {
            inner
                .violations
                .push(format!("prompt {uid} admitted twice"));
            return;
        }
        inner.snapshot.admitted += 1;
        inner.snapshot.in_flight += 1;
    }

    fn finish(&self, uid: u64, to: PromptState, reason: Option<&str>) {
        let mut inner = self.inner.lock().unwrap();
        match inner.prompts.get(&uid) {
            Some(PromptState::InFlight { .. }) => {}
            other => {
                let v = format!("prompt {uid} finished as {to:?} from {other:?}");
                inner.violations.push(v);
                return;
            }
        }
        inner.prompts.insert(uid, to.clone());
        let s = &mut inner.snapshot;
        s.in_flight -= 1;
        match to {
            PromptState::Trained => s.trained += 1,
            _ => {
                s.dropped += 1;
                *s.dropped_by_reason
                    .entry(reason.unwrap_or("unknown").to_string())
                    .or_default() += 1;
            }
        }
    }

    pub fn trained(&self, uid: u64) {
        self.finish(uid, PromptState::Trained, None);
    }

    pub fn dropped(&self, uid: u64, reason: &str) {
        self.finish(uid, PromptState::Dropped, Some(reason));
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        self.inner.lock().unwrap().snapshot.clone()
    }

    /// Broken rules (double admission, training twice); empty in a correct run.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Admission versions of prompts still in flight (for checkpoints and diagnostics).
    pub fn in_flight(&self) -> Vec<(u64, Version)> {
        let inner = self.inner.lock().unwrap();
        let mut v: Vec<(u64, Version)> = inner
            .prompts
            .iter()
            .filter_map(|(&uid, s)| match s {
                PromptState::InFlight { admitted_at } => Some((uid, *admitted_at)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }
}
