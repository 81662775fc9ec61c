//! The head's end of collective weight broadcasts for one remote model: deciding, once per
//! model, whether its worker can take broadcast weights (it answers `CollectiveInfo`; both
//! join a new communicator, the head as rank 0), then broadcasting each published version from
//! buckets on the head's GPU while the worker receives it (`ReceiveWeights`).
//!
//! With `[weights] transport = "auto"` a worker that cannot (no GPU, no NCCL, a join that
//! fails — NCCL refuses two ranks on one GPU) gets TCP, and `summary.json` says why; with
//! `"nccl"` that is an error naming the setting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tch::{Device, Tensor};

use crate::bucket_broadcast::{broadcast_each, Collective, Collectives};
use crate::collective_receiver::reusable;
use crate::collective_request::{CollectiveRequest, PeerOutcome};
use crate::error::ClusterError;
use crate::remote_call::RemoteRole;
use crate::role_host::RoleHostMsg;
use crate::weight_buckets::BucketLayout;
use crate::wire::{HostReply, HostRequest};

/// How a head's remote models broadcast weights.
#[derive(Clone)]
pub struct CollectiveChoice {
    pub collectives: Arc<dyn Collectives>,
    /// The head's rank's device (the learner's GPU).
    pub device: Device,
    /// Largest bucket, bytes.
    pub bucket_bytes: u64,
    /// Each bucket's deadline.
    pub per_bucket: Duration,
    /// `transport = "nccl"`: a worker that cannot is an error, not a fall-back to TCP.
    pub required: bool,
}

/// Why a model's worker gets weights over TCP instead.
pub struct Declined(pub String);

/// One model's communicator with its worker, and the buckets versions are packed into.
pub struct CollectiveSender {
    collective: Box<dyn Collective + Send>,
    /// One bucket's worth of the head's GPU memory, reused for every bucket and version.
    buffer: Option<Tensor>,
    /// What carries the bytes (`NCCL 2.28.9 on Cuda(1)`), as the worker said.
    pub about: String,
}

/// What one broadcast version cost.
pub struct Sent {
    pub bytes: u64,
    pub seconds: f64,
}

/// Why a version was not broadcast.
pub enum SendError {
    /// This side could not lay the version out (a dtype NCCL cannot carry): nothing was sent
    /// and the communicator is intact; TCP can carry it.
    Layout(String),
    /// The broadcast failed (the communicator was aborted), or the link did.
    Broadcast(ClusterError),
}

impl CollectiveSender {
    /// Asks `host` whether it can take broadcast weights and, if so, joins a new communicator
    /// with it. `Ok(Err(declined))`: it cannot, and why; `Err`: the link failed (the worker is
    /// unreachable, which is not a reason to use TCP).
    pub fn negotiate(
        choice: &CollectiveChoice,
        link: &Arc<RemoteRole>,
        host: &ActorRef<RoleHostMsg>,
    ) -> Result<Result<CollectiveSender, Declined>, ClusterError> {
        let runtime = link.runtime.clone();
        let about = match runtime.block_on(link.call_watched(host, HostRequest::CollectiveInfo))? {
            HostReply::CollectiveInfo {
                available: Ok(about),
            } => about,
            HostReply::CollectiveInfo {
                available: Err(why),
            } => return Ok(Err(Declined(why))),
            other => return Err(link.unexpected(other)),
        };
        if let Err(why) = choice.collectives.supports(choice.device) {
            return Ok(Err(Declined(format!("the head: {why}"))));
        }
        let id = match choice.collectives.new_id() {
            Ok(id) => id,
            Err(why) => return Ok(Err(Declined(why))),
        };
        // Both ranks join at once, each waiting for the other up to the attach deadline.
        let deadline = link.timeouts.attach;
        let theirs = CollectiveRequest::start(link, host, |seq| HostRequest::JoinCollective {
            id: id.clone(),
            nranks: 2,
            rank: 1,
            deadline_s: deadline.as_secs_f64(),
            seq,
        });
        let mine = {
            let peer_failed = theirs.peer_failed();
            choice
                .collectives
                .join(&id, 2, 0, choice.device, deadline, &peer_failed)
        };
        let collective = match (mine, theirs.outcome()) {
            (Ok(collective), _) => collective,
            (Err(_), Some(PeerOutcome::Lost(_))) => {
                // The link, not the collective: the worker is unreachable.
                return theirs
                    .finish(link)
                    .and_then(|reply| Err(link.unexpected(reply)));
            }
            (Err(_), Some(PeerOutcome::Failed(why))) => {
                return Ok(Err(Declined(format!("the worker could not join: {why}"))));
            }
            (Err(why), None) => {
                theirs.abandon(link, host);
                return Ok(Err(Declined(format!("the head could not join: {why}"))));
            }
        };
        match theirs.finish(link)? {
            HostReply::Joined => Ok(Ok(CollectiveSender {
                collective,
                buffer: None,
                about,
            })),
            HostReply::CollectiveFailed { reason } => Ok(Err(Declined(format!(
                "the worker could not join: {reason}"
            )))),
            other => Err(link.unexpected(other)),
        }
    }

    /// Broadcasts `tensors` as weights version `version` to `host`, which receives and applies
    /// them before it answers. A broadcast failure aborts the communicator (and tells the
    /// worker to stop waiting): the caller drops this sender.
    pub fn send(
        &mut self,
        choice: &CollectiveChoice,
        (link, host): (&Arc<RemoteRole>, &ActorRef<RoleHostMsg>),
        version: u64,
        tensors: &[(String, Tensor)],
    ) -> Result<Sent, SendError> {
        let started = Instant::now();
        let failed = |message: String| {
            SendError::Broadcast(ClusterError::Remote {
                peer: link.peer(),
                message: format!("broadcasting weights version {version}: {message}"),
            })
        };
        let layout = BucketLayout::plan(tensors, choice.bucket_bytes).map_err(SendError::Layout)?;
        let buffer = reusable(&mut self.buffer, layout.largest(), choice.device)
            .map_err(SendError::Layout)?;
        let applied = CollectiveRequest::start(link, host, |seq| HostRequest::ReceiveWeights {
            version,
            layout: layout.clone(),
            seq,
        });
        let sent = {
            let peer_failed = applied.peer_failed();
            broadcast_each(
                self.collective.as_mut(),
                (layout.buckets.len(), 0, choice.per_bucket),
                &peer_failed,
                |i| {
                    let mut view = buffer.narrow(0, 0, layout.buckets[i] as i64);
                    layout.pack_bucket(i, tensors, &mut view)?;
                    Ok(view)
                },
                |_, _| Ok(()),
            )
        };
        if let Err(e) = sent {
            applied.abandon(link, host);
            return Err(failed(e.to_string()));
        }
        match applied.finish(link).map_err(SendError::Broadcast)? {
            HostReply::WeightsApplied { version: v, .. } if v == version => Ok(Sent {
                bytes: layout.total_bytes(),
                seconds: started.elapsed().as_secs_f64(),
            }),
            HostReply::CollectiveFailed { reason } => Err(failed(reason)),
            other => Err(SendError::Broadcast(link.unexpected(other))),
        }
    }
}
