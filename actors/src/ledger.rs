//! The ledger of prompts: every admitted prompt ends as trained, dropped for a counted reason, or
//! in flight at stop — `admitted = trained + dropped + in_flight`, always, and no prompt is
//! trained twice.
//!
//! It also records which actor incarnation holds each prompt in flight (a generator from the
//! moment it takes the prompt, then the judge its group is routed to), so a supervisor can hand
//! a failed actor's prompts back to the source, and it saves and restores itself for
//! checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ractor::ActorId;
use serde::{Deserialize, Serialize};

use crate::metric_series as series;
use crate::protocol::Version;

/// Where one prompt stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptState {
    InFlight { admitted_at: Version },
    Trained,
    Dropped { reason: DropReason },
}

/// Why a prompt left the pipeline untrained. Saved and reported by its name (`stale`,
/// `judge_error`, …), so checkpoints and summaries read as before; a user's own stage may drop
/// for a reason of its own ([`DropReason::Other`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum DropReason {
    /// Older than η versions when the learner reached it.
    Stale,
    /// Every response got the same reward, and `drop_zero_variance` is on.
    ZeroVariance,
    /// Its learner step was skipped (a non-finite loss or gradient).
    SkippedStep,
    /// The next stage was gone (the run is stopping).
    SinkClosed,
    /// The judge failed or gave unusable rewards.
    JudgeError,
    /// Generation failed.
    GenerationError,
    Other(String),
}

impl DropReason {
    /// The reasons grlhf itself drops for (a plug-in stage may add its own).
    pub const BUILT_IN: [&'static str; 6] = [
        "stale",
        "zero_variance",
        "skipped_step",
        "sink_closed",
        "judge_error",
        "generation_error",
    ];

    pub fn as_str(&self) -> &str {
        match self {
            DropReason::Stale => "stale",
            DropReason::ZeroVariance => "zero_variance",
            DropReason::SkippedStep => "skipped_step",
            DropReason::SinkClosed => "sink_closed",
            DropReason::JudgeError => "judge_error",
            DropReason::GenerationError => "generation_error",
            DropReason::Other(reason) => reason,
        }
    }

    /// Whether the source admits another prompt in its place. Not when the learner moved past
    /// the group (`stale`) or trained its step without it (`zero_variance`).
    pub fn wants_replacement(&self) -> bool {
        !matches!(self, DropReason::Stale | DropReason::ZeroVariance)
    }
}

impl From<&str> for DropReason {
    fn from(reason: &str) -> DropReason {
        match reason {
            "stale" => DropReason::Stale,
            "zero_variance" => DropReason::ZeroVariance,
            "skipped_step" => DropReason::SkippedStep,
            "sink_closed" => DropReason::SinkClosed,
            "judge_error" => DropReason::JudgeError,
            "generation_error" => DropReason::GenerationError,
            other => DropReason::Other(other.to_string()),
        }
    }
}

impl From<String> for DropReason {
    fn from(reason: String) -> DropReason {
        DropReason::from(reason.as_str())
    }
}

impl From<DropReason> for String {
    fn from(reason: DropReason) -> String {
        reason.as_str().to_string()
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// Called with a uid dropped before it could be trained (see [`Ledger::on_replaceable_drop`]).
pub type DropHook = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct Inner {
    prompts: HashMap<u64, PromptState>,
    holders: HashMap<u64, ActorId>,
    snapshot: LedgerSnapshot,
    violations: Vec<String>,
    on_drop: Option<DropHook>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("snapshot", &self.snapshot)
            .field("violations", &self.violations)
            .finish_non_exhaustive()
    }
}

/// Shared by the prompt source, buffer and learner (a mutex, not an actor: entries are tiny and
/// every writer needs the answer at once).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Inner>>,
}

/// Moves one prompt from in flight to `to` in the counts.
fn settle(s: &mut LedgerSnapshot, to: &PromptState) {
    match to {
        PromptState::InFlight { .. } => return,
        PromptState::Trained => s.trained += 1,
        PromptState::Dropped { reason } => {
            s.dropped += 1;
            *s.dropped_by_reason.entry(reason.to_string()).or_default() += 1;
        }
    }
    s.in_flight -= 1;
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
        metrics::gauge!(series::PROMPTS_IN_FLIGHT).set(inner.snapshot.in_flight as f64);
    }

    /// Moves `uid` out of flight; false (and a recorded violation) if it was not in flight.
    fn finish(&self, uid: u64, to: PromptState) -> bool {
        let mut inner = self.inner.lock().unwrap();
        match inner.prompts.get(&uid) {
            Some(PromptState::InFlight { .. }) => {}
            other => {
                let v = format!("prompt {uid} finished as {to:?} from {other:?}");
                inner.violations.push(v);
                return false;
            }
        }
        inner.holders.remove(&uid);
        settle(&mut inner.snapshot, &to);
        metrics::gauge!(series::PROMPTS_IN_FLIGHT).set(inner.snapshot.in_flight as f64);
        if let PromptState::Dropped { reason } = &to {
            metrics::counter!(series::PROMPTS_DROPPED, "reason" => reason.as_str().to_string())
                .increment(1);
        }
        inner.prompts.insert(uid, to);
        true
    }

    pub fn trained(&self, uid: u64) {
        let _ = self.finish(uid, PromptState::Trained);
    }

    pub fn dropped(&self, uid: u64, reason: impl Into<DropReason>) {
        let reason = reason.into();
        let replace = reason.wants_replacement();
        let dropped = self.finish(uid, PromptState::Dropped { reason });
        if dropped && replace {
            let hook = self.inner.lock().unwrap().on_drop.clone();
            if let Some(hook) = hook {
                hook(uid);
            }
        }
    }

    /// Calls `hook` for every prompt dropped before it could be trained (a generation or judge
    /// error, a skipped learner step): the prompt source admits a replacement, so a step is
    /// never left waiting for a group that will not come.
    pub fn on_replaceable_drop(&self, hook: DropHook) {
        self.inner.lock().unwrap().on_drop = Some(hook);
    }

    /// `holder` (an actor incarnation) now holds `uid`; ignored unless the prompt is in flight.
    pub fn hold(&self, uid: u64, holder: ActorId) {
        let mut inner = self.inner.lock().unwrap();
        if matches!(inner.prompts.get(&uid), Some(PromptState::InFlight { .. })) {
            inner.holders.insert(uid, holder);
        }
    }

    /// No actor holds `uid` any more (it went past the judges).
    pub fn unhold(&self, uid: u64) {
        self.inner.lock().unwrap().holders.remove(&uid);
    }

    /// Takes back the in-flight prompts `holder` held (it failed): they are held by no one
    /// until the source issues them again.
    pub fn release_held_by(&self, holder: ActorId) -> Vec<u64> {
        let mut inner = self.inner.lock().unwrap();
        let mut uids: Vec<u64> = inner
            .holders
            .iter()
            .filter(|(_, h)| **h == holder)
            .map(|(&uid, _)| uid)
            .collect();
        uids.sort_unstable();
        for uid in &uids {
            inner.holders.remove(uid);
        }
        uids
    }

    /// Every prompt's state, by uid (for a checkpoint).
    pub fn entries(&self) -> Vec<(u64, PromptState)> {
        let inner = self.inner.lock().unwrap();
        let mut v: Vec<(u64, PromptState)> =
            inner.prompts.iter().map(|(&u, s)| (u, s.clone())).collect();
        v.sort_by_key(|(u, _)| *u);
        v
    }

    /// A ledger holding exactly `entries` (from a checkpoint), its counts recomputed.
    pub fn restore(entries: Vec<(u64, PromptState)>) -> Ledger {
        let mut inner = Inner::default();
        for (uid, state) in entries {
            inner.snapshot.admitted += 1;
            inner.snapshot.in_flight += 1;
            settle(&mut inner.snapshot, &state);
            inner.prompts.insert(uid, state);
        }
        Ledger {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        self.inner.lock().unwrap().snapshot.clone()
    }

    /// Broken rules (double admission, training twice); empty in a correct run.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Whether `uid` was admitted and is neither trained nor dropped.
    pub fn is_in_flight(&self, uid: u64) -> bool {
        matches!(
            self.inner.lock().unwrap().prompts.get(&uid),
            Some(PromptState::InFlight { .. })
        )
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
