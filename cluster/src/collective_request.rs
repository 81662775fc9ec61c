//! A collective request to a worker (`JoinCollective`, `ReceiveWeights`) sent beside the
//! head's own blocking part of the same collective, and how either side gives up on one.
//!
//! - The head's wait (a join, a bucket) sees the worker's answer as soon as it comes: a worker
//!   that could not do its part, or a link that failed, ends the head's wait at once instead of
//!   at its deadline — and the two are told apart, because a worker's refusal means "use TCP"
//!   and a lost link means "the worker is unreachable".
//! - Each request carries a sequence number. When the head gives up it sends
//!   `AbandonCollective { seq }`; the worker's operation with that number or an older one stops
//!   waiting (and so does any operation once a newer one arrives), whatever order the two
//!   messages arrive in (`crate::collective_receiver::CollectiveSeqs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::ActorRef;

use crate::error::ClusterError;
use crate::remote_call::RemoteRole;
use crate::role_host::RoleHostMsg;
use crate::wire::{HostReply, HostRequest};

/// Numbers the head's collective requests, across all its remote models (a restarted model
/// talks to the same host, and its requests must count as newer).
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh sequence number for a collective request.
pub fn next_seq() -> u64 {
    NEXT_SEQ.fetch_add(1, Ordering::Relaxed)
}

/// How a worker's part ended, as far as the head's wait needs to know.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerOutcome {
    /// The worker could not do its part (`CollectiveFailed`), and why.
    Failed(String),
    /// The link failed (lost, frozen, refused): the worker is unreachable.
    Lost(String),
}

/// A request running beside the head's blocking part of the same collective.
pub struct CollectiveRequest {
    pub seq: u64,
    handle: tokio::task::JoinHandle<Result<HostReply, ClusterError>>,
    outcome: Arc<Mutex<Option<PeerOutcome>>>,
}

impl CollectiveRequest {
    /// Sends `request` (built with this request's sequence number) on the link's runtime.
    pub fn start(
        link: &Arc<RemoteRole>,
        host: &ActorRef<RoleHostMsg>,
        request: impl FnOnce(u64) -> HostRequest,
    ) -> CollectiveRequest {
        let seq = next_seq();
        let request = request(seq);
        let outcome = Arc::new(Mutex::new(None));
        let (link, host, noted) = (link.clone(), host.clone(), outcome.clone());
        let runtime = link.runtime.clone();
        let handle = runtime.spawn(async move {
            let reply = link.call_watched(&host, request).await;
            let ended = match &reply {
                Ok(HostReply::Joined | HostReply::WeightsApplied { .. }) => None,
                Ok(HostReply::CollectiveFailed { reason }) => {
                    Some(PeerOutcome::Failed(reason.clone()))
                }
                Ok(other) => Some(PeerOutcome::Lost(format!("unexpected reply {other:?}"))),
                Err(e) => Some(PeerOutcome::Lost(e.to_string())),
            };
            *noted.lock().unwrap_or_else(|e| e.into_inner()) = ended;
            reply
        });
        CollectiveRequest {
            seq,
            handle,
            outcome,
        }
    }

    /// How the worker's part ended, if it ended without success.
    pub fn outcome(&self) -> Option<PeerOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// For the head's wait: why to stop waiting, once the worker's part ended badly.
    pub fn peer_failed(&self) -> impl Fn() -> Option<String> + '_ {
        || {
            self.outcome().map(|o| match o {
                PeerOutcome::Failed(why) | PeerOutcome::Lost(why) => why,
            })
        }
    }

    /// The worker's reply.
    pub fn finish(self, link: &Arc<RemoteRole>) -> Result<HostReply, ClusterError> {
        link.runtime
            .block_on(self.handle)
            .map_err(|e| ClusterError::Remote {
                peer: link.peer(),
                message: format!("a collective request: {e}"),
            })?
    }

    /// Gives up on the worker's side too: its operation stops waiting (its device thread is
    /// freed), and this side does not wait for the answer.
    pub fn abandon(self, link: &Arc<RemoteRole>, host: &ActorRef<RoleHostMsg>) {
        self.handle.abort();
        let every = link.timeouts.heartbeat_every;
        let request = HostRequest::AbandonCollective { seq: self.seq };
        let told = link.runtime.block_on(link.call(host, request, every));
        if let Err(e) = told {
            tracing::warn!(role = %link.role, node = %link.node, "telling the worker to stop waiting: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_only_grow() {
        assert!(next_seq() < next_seq());
    }
}
