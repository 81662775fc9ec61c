//! What an activity log records: busy spans of actors and the milestones of prompt groups. Its
//! own module because the log ([`crate::activity`]) keeps them in memory and the trace file
//! ([`crate::trace_file`]) writes and reads them back.

use std::sync::Arc;

use serde::Serialize;

/// One busy interval.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    /// Interned: every span of an actor shares one allocation of its name.
    #[serde(serialize_with = "shared_str")]
    pub actor: Arc<str>,
    /// What it was doing: `generate`, `judge`, `train`, `sync`.
    #[serde(serialize_with = "shared_str")]
    pub kind: Arc<str>,
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

impl Milestone {
    pub const ALL: [Milestone; 4] = [
        Milestone::Taken,
        Milestone::Generated,
        Milestone::Judged,
        Milestone::Trained,
    ];

    /// Its name in the trace file (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::Taken => "taken",
            Milestone::Generated => "generated",
            Milestone::Judged => "judged",
            Milestone::Trained => "trained",
        }
    }
}

/// Serialises a shared string as a plain one (without serde's `rc` feature, which would rebuild
/// every crate that uses serde).
fn shared_str<S: serde::Serializer>(s: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(s)
}
