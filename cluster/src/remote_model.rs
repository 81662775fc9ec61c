//! What a remote generator's engine and a remote evaluator share: a policy on a worker, fed
//! with this process's weights, reached through a [`RemoteRole`].
//!
//! - **Weights**: [`RemoteModel::publish`] puts a version on this model's own weight server
//!   (encoded once, sent by its own thread: the caller never waits on the network); the next
//!   request names that version and its digest, and the worker applies it first.
//! - **The link**: the host is found and attached at the first request, not when the model is
//!   built (building runs while an actor starts, and waiting for a worker there would hold up
//!   the head); every request runs under a deadline and a heartbeat ([`crate::remote_call`]).
//! - **Outcomes** ([`RemoteModel::work`]): the worker's reply (timed into [`RemoteStats`]), the
//!   model's own failure on this work (an ordinary engine error), or the worker unable to serve
//!   ([`ActorError::Unreachable`]: the caller's actor fails or skips, and the work is redone).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use grlhf_actors::error::ActorError;
use ractor::ActorRef;
use tch::Tensor;

use crate::collective_sender::{CollectiveChoice, CollectiveSender, Declined, SendError};
use crate::error::ClusterError;
use crate::handshake::Handshake;
use crate::remote_call::RemoteRole;
use crate::remote_stats::{CallTiming, RemoteStats};
use crate::role_host::RoleHostMsg;
use crate::weight_server::{WeightServer, WeightServerConfig};
use crate::weight_stream::{EncodedWeights, DEFAULT_CHUNK_BYTES};
use crate::wire::{HostReply, HostRequest};

/// Everything a remote model needs, shared by the models its actor builds over a run (one per
/// restart).
pub struct RemoteModelSpec {
    pub link: Arc<RemoteRole>,
    /// The address workers reach the head on; each model's weight server listens there.
    pub weights_ip: IpAddr,
    /// Where this role's call timings and weight traffic are added up.
    pub stats: RemoteStats,
    /// Broadcast weights (NCCL) to workers that can take them; `None`: the weight stream only.
    pub collective: Option<CollectiveChoice>,
}

pub struct RemoteModel {
    spec: Arc<RemoteModelSpec>,
    host: Option<ActorRef<RoleHostMsg>>,
    weights: WeightServer,
    published: u64,
    /// The digest of the version published last (`None`: nothing published).
    digest: Option<String>,
    /// Tells this model's figures from those of the role's earlier models.
    instance: u64,
    /// The last attach found no host (or failed).
    attach_failed: bool,
    /// Broadcasting to this model's worker (after a successful negotiation).
    sender: Option<CollectiveSender>,
    /// Whether this model asked its worker about broadcasts since it last attached.
    negotiated: bool,
}

/// Numbers the remote models of a process, for [`RemoteStats`].
static MODELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RemoteModel {
    /// Starts this model's weight server and publishes `start_from` (a resume's weights file)
    /// as version 1; the host is attached at the first request.
    pub fn new(
        spec: Arc<RemoteModelSpec>,
        start_from: Option<&Path>,
    ) -> Result<RemoteModel, ClusterError> {
        let link = &spec.link;
        let weights = WeightServer::bind(WeightServerConfig::new(
            SocketAddr::new(spec.weights_ip, 0),
            Handshake::new(link.identity.clone(), link.cookie.clone()),
        ))?;
        let (mut published, mut digest) = (0, None);
        if let Some(path) = start_from {
            let bytes = std::fs::read(path).map_err(ClusterError::io(format!(
                "reading {} to send to node {}",
                path.display(),
                link.node
            )))?;
            let encoded = EncodedWeights::from_bytes(1, bytes, DEFAULT_CHUNK_BYTES);
            digest = Some(weights.publish_encoded(encoded).digest);
            published = 1;
        }
        Ok(RemoteModel {
            spec,
            host: None,
            weights,
            published,
            digest,
            instance: MODELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            attach_failed: false,
            sender: None,
            negotiated: false,
        })
    }

    pub fn link(&self) -> &Arc<RemoteRole> {
        &self.spec.link
    }

    /// The host, once attached (after the first request).
    pub fn host(&self) -> Option<&ActorRef<RoleHostMsg>> {
        self.host.as_ref()
    }

    /// The weights version the next request needs, and its digest.
    pub fn needed(&self) -> (u64, Option<String>) {
        (self.published, self.digest.clone())
    }

    /// Publishes the next version: broadcast to the worker when it takes broadcast weights,
    /// else encoded here and sent by the weight server's own threads.
    pub fn publish(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        let version = self.published + 1;
        if let Some(choice) = self.spec.collective.clone() {
            if self.broadcasting(&choice)? && self.broadcast(&choice, version, tensors)? {
                return Ok(());
            }
        }
        let stats = self.weights.publish(version, tensors).map_err(|e| {
            ActorError::Engine(format!("{}: publishing weights: {e}", self.link().peer()))
        })?;
        self.published = version;
        self.digest = Some(stats.digest);
        Ok(())
    }

    /// Whether versions go to the worker by broadcast: decided at the first publication after
    /// each attach (attaching first).
    fn broadcasting(&mut self, choice: &CollectiveChoice) -> Result<bool, ActorError> {
        let link = self.spec.link.clone();
        let host = link
            .runtime
            .block_on(self.attached_host())
            .map_err(unreachable)?;
        if self.sender.is_some() || self.negotiated {
            return Ok(self.sender.is_some());
        }
        let stats = &self.spec.stats;
        match CollectiveSender::negotiate(choice, &link, &host) {
            Ok(Ok(sender)) => {
                tracing::info!(role = %link.role, node = %link.node, via = %sender.about, "weights by broadcast");
                stats.transport(&link.role, &link.node, &sender.about);
                self.sender = Some(sender);
                Ok(true)
            }
            Ok(Err(Declined(why))) if choice.required => Err(ActorError::Refused(format!(
                "weights.transport = \"nccl\", but {} cannot take broadcast weights: {why}",
                link.peer()
            ))),
            Ok(Err(Declined(why))) => {
                // Decided for this model's life: a worker that cannot now will not later.
                self.negotiated = true;
                tracing::warn!(role = %link.role, node = %link.node, %why, "weights over TCP");
                stats.transport(&link.role, &link.node, &format!("tcp ({why})"));
                Ok(false)
            }
            Err(e) => {
                self.host = None;
                Err(unreachable(e))
            }
        }
    }

    /// Broadcasts `tensors` as `version` (`Ok(false)`: it cannot be laid out for a broadcast,
    /// and TCP is to carry it); a failure drops the communicator and the worker's
    /// link (a generator fails and its restart negotiates anew; the evaluator skips, and its
    /// next publication does).
    fn broadcast(
        &mut self,
        choice: &CollectiveChoice,
        version: u64,
        tensors: &[(String, Tensor)],
    ) -> Result<bool, ActorError> {
        let link = self.spec.link.clone();
        let (Some(sender), Some(host)) = (self.sender.as_mut(), self.host.clone()) else {
            return Err(ActorError::Unreachable(format!(
                "{}: broadcasting before the worker was attached",
                link.peer()
            )));
        };
        match sender.send(choice, (&link, &host), version, tensors) {
            Ok(sent) => {
                let stats = &self.spec.stats;
                stats.broadcast(&link.role, &link.node, sent.bytes, sent.seconds);
                self.published = version;
                // Broadcast versions carry no digest: NCCL delivers or fails.
                self.digest = None;
                Ok(true)
            }
            Err(SendError::Layout(why)) if choice.required => Err(ActorError::Engine(format!(
                "weights.transport = \"nccl\", but version {version} cannot be broadcast: {why}"
            ))),
            Err(SendError::Layout(why)) => {
                // Nothing was sent: this model's versions go over TCP from now on.
                self.sender = None;
                self.negotiated = true;
                tracing::warn!(role = %link.role, node = %link.node, %why, "weights over TCP");
                let via = format!("tcp (cannot broadcast: {why})");
                self.spec.stats.transport(&link.role, &link.node, &via);
                Ok(false)
            }
            Err(SendError::Broadcast(e)) => {
                // The communicator was aborted; the next publication attaches and negotiates
                // again (a surviving model, such as the evaluator's, keeps broadcasting).
                self.host = None;
                Err(unreachable(e))
            }
        }
    }

    /// The attached host, attaching first if need be. After an attach found no host, the next
    /// waits only a heartbeat interval until one is seen again: an actor that keeps going
    /// without the worker (the evaluator, skipping versions) must not spend
    /// `attach_timeout_s` per request while its updates pile up.
    async fn attached_host(&mut self) -> Result<ActorRef<RoleHostMsg>, ClusterError> {
        let link = self.spec.link.clone();
        Ok(match &self.host {
            Some(host) => host.clone(),
            None => {
                let patience = match self.attach_failed {
                    true => link.timeouts.heartbeat_every,
                    false => link.timeouts.attach,
                };
                let attached = link.attach(Some(self.weights.local_addr()), patience).await;
                self.attach_failed = attached.is_err();
                let host = attached?;
                self.spec.stats.attached(&link.role, &link.node);
                self.host = Some(host.clone());
                // Whichever call attaches, the worker (perhaps a restarted one) counts versions
                // from 0 again and holds no communicator of this model's: the decision about
                // broadcasts is made anew at the next publication.
                self.sender = None;
                self.negotiated = false;
                host
            }
        })
    }

    /// The request's reply from the attached host (attaching first if need be).
    async fn request(&mut self, request: HostRequest) -> Result<HostReply, ClusterError> {
        let link = self.spec.link.clone();
        let host = self.attached_host().await?;
        link.call_watched(&host, request).await
    }

    /// Sends a work request covering `groups` groups and classifies the outcome: the worker's
    /// reply (timed into the stats), the model's own failure on this work (an engine error, as
    /// a local model's would be), a request too large to send or a reply that does not decode
    /// (the work's fault, an engine error too), or the worker unable to serve
    /// ([`ActorError::Unreachable`]).
    pub fn work(&mut self, request: HostRequest, groups: u64) -> Result<HostReply, ActorError> {
        let link = self.spec.link.clone();
        let started = std::time::Instant::now();
        let reply = link.runtime.block_on(self.request(request));
        let call_s = started.elapsed().as_secs_f64();
        let stats = &self.spec.stats;
        let subscribers = self.weights.subscribers();
        stats.weights(&link.role, &link.node, self.instance, &subscribers);
        let worker_s = |reply: &HostReply| match reply {
            HostReply::Generated {
                weights_s,
                generate_s,
                ..
            }
            | HostReply::Continued {
                weights_s,
                generate_s,
                ..
            } => Some((*weights_s, *generate_s)),
            HostReply::Evaluated {
                weights_s, eval_s, ..
            } => Some((*weights_s, *eval_s)),
            _ => None,
        };
        let timed = reply.map(|reply| (worker_s(&reply), reply));
        match timed {
            Ok((Some((worker_weights_s, worker_compute_s)), reply)) => {
                let timing = CallTiming {
                    groups,
                    call_s,
                    worker_weights_s,
                    worker_compute_s,
                };
                stats.call(&link.role, &link.node, timing);
                Ok(reply)
            }
            Ok((None, HostReply::EngineError { reason })) => {
                Err(ActorError::Engine(format!("{}: {reason}", link.peer())))
            }
            Err(e @ (ClusterError::TooLargeToSend { .. } | ClusterError::Malformed { .. })) => {
                Err(ActorError::Engine(e.to_string()))
            }
            Err(e @ (ClusterError::Refused { .. } | ClusterError::Mismatch { .. })) => {
                self.host = None;
                Err(ActorError::Refused(e.to_string()))
            }
            Ok((None, other)) => Err(unreachable(link.unexpected(other))),
            Err(e) => {
                // The next request looks for the host again (a restarted worker).
                self.host = None;
                Err(unreachable(e))
            }
        }
    }

    /// A reply with the wrong number of items: the worker misbehaves.
    pub fn wrong_count(&self, what: &str, got: usize, expected: usize) -> ActorError {
        let peer = self.link().peer();
        ActorError::Unreachable(format!("{peer}: {got} {what} for {expected}"))
    }
}

/// The worker cannot serve: the caller's actor fails (or skips) and the work is redone.
pub fn unreachable(e: ClusterError) -> ActorError {
    ActorError::Unreachable(e.to_string())
}
