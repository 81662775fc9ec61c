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

impl CollectiveSender {
    /// Asks `host` whether it can take broadcast weights and, if so, joins a new communicator
    /// with it. `Ok(Err(declined))`: it cannot, and why; `Err`: the link failed.
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
        let request = HostRequest::JoinCollective {
            id: id.clone(),
            nranks: 2,
            rank: 1,
        };
        let (worker_link, worker_host) = (link.clone(), host.clone());
        let theirs =
            runtime.spawn(async move { worker_link.call_watched(&worker_host, request).await });
        // Both ranks join at once; each waits for the other up to the attach deadline.
        let deadline = link.timeouts.attach;
        let mine = choice.collectives.join(&id, 2, 0, choice.device, deadline);
        let theirs = runtime.block_on(theirs).map_err(|e| ClusterError::Remote {
            peer: link.peer(),
            message: format!("joining a communicator: {e}"),
        })?;
        match (mine, theirs) {
            (Ok(collective), Ok(HostReply::Joined)) => Ok(Ok(CollectiveSender {
                collective,
                buffer: None,
                about,
            })),
            (Err(why), _) => Ok(Err(Declined(format!("the head could not join: {why}")))),
            (Ok(_), Ok(HostReply::Failed { reason })) => Ok(Err(Declined(format!(
                "the worker could not join: {reason}"
            )))),
            (Ok(_), Ok(other)) => Err(link.unexpected(other)),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Broadcasts `tensors` as weights version `version` to `host`, which receives and applies
    /// them before it answers. A failure aborts the communicator: the caller drops this sender.
    pub fn send(
        &mut self,
        choice: &CollectiveChoice,
        (link, host): (&Arc<RemoteRole>, &ActorRef<RoleHostMsg>),
        version: u64,
        tensors: &[(String, Tensor)],
    ) -> Result<Sent, ClusterError> {
        let started = Instant::now();
        let failed = |message: String| ClusterError::Remote {
            peer: link.peer(),
            message: format!("broadcasting weights version {version}: {message}"),
        };
        let layout = BucketLayout::plan(tensors, choice.bucket_bytes).map_err(failed)?;
        let request = HostRequest::ReceiveWeights {
            version,
            layout: layout.clone(),
        };
        let (worker_link, worker_host) = (link.clone(), host.clone());
        let runtime = link.runtime.clone();
        let applied =
            runtime.spawn(async move { worker_link.call_watched(&worker_host, request).await });
        let buffer = reusable(&mut self.buffer, layout.largest(), choice.device);
        let sent = broadcast_each(
            self.collective.as_mut(),
            (layout.buckets.len(), 0, choice.per_bucket),
            |i| {
                let mut view = buffer.narrow(0, 0, layout.buckets[i] as i64);
                layout.pack_bucket(i, tensors, &mut view)?;
                Ok(view)
            },
            |_, _| Ok(()),
        );
        if let Err(e) = sent {
            applied.abort();
            return Err(failed(e.to_string()));
        }
        let reply = runtime
            .block_on(applied)
            .map_err(|e| failed(e.to_string()))??;
        match reply {
            HostReply::WeightsApplied { version: v, .. } if v == version => Ok(Sent {
                bytes: layout.total_bytes(),
                seconds: started.elapsed().as_secs_f64(),
            }),
            HostReply::Failed { reason } => Err(failed(reason)),
            other => Err(link.unexpected(other)),
        }
    }
}
