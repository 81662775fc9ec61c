//! The head's calls to the worker hosting one of its roles ([`crate::role_host`]): finding the
//! host, attaching, and requests with a deadline and, while they run, a heartbeat.
//!
//! - **Finding the host**: wait (bounded by `attach`) for a member of the role's process group,
//!   ping every member and keep the newest incarnation on the role's node that answers. Of a
//!   frozen old process that woke up and its replacement, both answering, the replacement
//!   (newer) wins; an older incarnation than one this role used serves only when no newer one
//!   answers (a replacement on a machine whose clock is behind).
//! - **Deadlines**: every call has one. While a request runs, the host is pinged every
//!   `heartbeat_every` (on a task of its own); nothing heard for `heartbeat_misses ×
//!   heartbeat_every` since the last answer fails the request. A killed worker fails the call
//!   at once (ractor_cluster closes the session); a frozen one is caught by the heartbeat.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;

use crate::error::ClusterError;
use crate::handshake::{Cookie, RunIdentity};
use crate::incarnations::Incarnations;
use crate::role_host::{role_group, RoleHostMsg};
use crate::wire::{Envelope, HostReply, HostRequest};

/// Deadlines of a remote role.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteTimeouts {
    /// How long a (re)starting role waits for the worker's host to appear (a worker starting,
    /// or rejoining after a restart).
    pub attach: Duration,
    /// The longest one request (a batch, a group to score) may take.
    pub batch: Duration,
    pub heartbeat_every: Duration,
    pub heartbeat_misses: u32,
}

impl Default for RemoteTimeouts {
    fn default() -> Self {
        RemoteTimeouts {
            attach: Duration::from_secs(300),
            batch: Duration::from_secs(1800),
            heartbeat_every: Duration::from_secs(2),
            heartbeat_misses: 3,
        }
    }
}

/// The head's link to the host of one role, shared by the role's engines or judges over a run
/// (one per restart).
pub struct RemoteRole {
    /// `generator-0`, `judge-0-1`.
    pub role: String,
    pub node: String,
    pub identity: RunIdentity,
    /// The head's incarnation.
    pub incarnation: u64,
    pub cookie: Option<Cookie>,
    pub timeouts: RemoteTimeouts,
    /// The head's tokio runtime (engines and judges live on plain device threads).
    pub runtime: tokio::runtime::Handle,
    /// The newest incarnation of the host this role used, across restarts.
    pub hosts_seen: Incarnations,
}

impl RemoteRole {
    pub fn peer(&self) -> String {
        format!("node {} ({})", self.node, self.role)
    }

    /// Finds the host (waiting up to `patience` for one) and attaches to it (an engine
    /// passes its weight server). A failure is a refusal or mismatch as the host said it, or
    /// [`ClusterError::Remote`] saying what went wrong while attaching.
    pub async fn attach(
        &self,
        weights: Option<SocketAddr>,
        patience: Duration,
    ) -> Result<ActorRef<RoleHostMsg>, ClusterError> {
        self.try_attach(weights, patience)
            .await
            .map_err(|e| self.attach_error(e))
    }

    async fn try_attach(
        &self,
        weights: Option<SocketAddr>,
        patience: Duration,
    ) -> Result<ActorRef<RoleHostMsg>, ClusterError> {
        let host = self.find_host(patience).await?;
        let request = HostRequest::Attach {
            identity: self.identity.clone(),
            role: self.role.clone(),
            weights,
        };
        match self.call(&host, request, self.timeouts.attach).await? {
            HostReply::Attached { .. } => {
                tracing::info!(role = %self.role, node = %self.node, "remote role attached");
                Ok(host)
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Waits for the role's host to join its process group; of several (a restarted worker
    /// next to a frozen old one), the newest incarnation that answers a ping.
    async fn find_host(&self, patience: Duration) -> Result<ActorRef<RoleHostMsg>, ClusterError> {
        let group = role_group(&self.role);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let mut newest: Option<(u64, ActorRef<RoleHostMsg>)> = None;
            for member in ractor::pg::get_members(&group) {
                let host: ActorRef<RoleHostMsg> = member.into();
                let every = self.timeouts.heartbeat_every;
                let ping = self.call_raw(&host, HostRequest::Ping, every).await;
                if let Ok((incarnation, HostReply::Pong { node, .. })) = ping {
                    if node == self.node && newest.as_ref().is_none_or(|(i, _)| incarnation > *i) {
                        newest = Some((incarnation, host));
                    }
                }
            }
            if let Some((incarnation, host)) = newest {
                // An older incarnation than one seen before: the newer process answered no
                // ping, so it is gone, not frozen behind a live older one (a frozen process
                // does not answer either, but then the older one answering is a replacement
                // whose clock is behind). Either way the host that answered is the one.
                if let Err(seen) = self.hosts_seen.admit(&self.node, incarnation) {
                    tracing::warn!(
                        peer = %self.peer(), incarnation, seen,
                        "the newer host is gone; attaching an older incarnation (a replacement whose clock is behind?)"
                    );
                    self.hosts_seen.replace(&self.node, incarnation);
                }
                return Ok(host);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Remote {
                    peer: self.peer(),
                    message: format!(
                        "no host joined within {patience:?}: start `grlhf run CONFIG --join HEAD:PORT --node {}`",
                        self.node
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One request and its decoded reply, with the replier's incarnation.
    async fn call_raw(
        &self,
        host: &ActorRef<RoleHostMsg>,
        request: HostRequest,
        timeout: Duration,
    ) -> Result<(u64, HostReply), ClusterError> {
        let peer = self.peer();
        let lost = |message: String| ClusterError::Remote {
            peer: peer.clone(),
            message,
        };
        let fix = request.how_to_shrink();
        let bytes = Envelope::new(&self.identity.run_id, self.incarnation, request)
            .encode_within_limit("the request", fix)
            .map_err(|message| ClusterError::TooLargeToSend {
                peer: peer.clone(),
                message,
            })?;
        match host
            .call(|port| RoleHostMsg::Call(bytes, port), Some(timeout))
            .await
        {
            Ok(CallResult::Success(reply)) => {
                let envelope = Envelope::<HostReply>::decode(&reply, &self.identity.run_id, &peer)?;
                Ok((envelope.incarnation, envelope.body))
            }
            Ok(CallResult::Timeout) => Err(lost(format!("no answer within {timeout:?}"))),
            Ok(CallResult::SenderError) => Err(lost(
                "the worker's session closed mid-call (the worker died or left)".into(),
            )),
            Err(e) => Err(lost(format!("the worker is unreachable: {e}"))),
        }
    }

    /// One request; a refusal or a host's failure is an error.
    pub async fn call(
        &self,
        host: &ActorRef<RoleHostMsg>,
        request: HostRequest,
        timeout: Duration,
    ) -> Result<HostReply, ClusterError> {
        match self.call_raw(host, request, timeout).await?.1 {
            HostReply::Refused { reason } => Err(ClusterError::Refused {
                peer: self.peer(),
                reason,
            }),
            HostReply::Failed { reason } => Err(ClusterError::Remote {
                peer: self.peer(),
                message: reason,
            }),
            reply => Ok(reply),
        }
    }

    /// Runs `request` (deadline `batch`) while pinging the host every `heartbeat_every`. The
    /// host is declared dead when nothing was heard from it for `heartbeat_misses ×
    /// heartbeat_every`, measured from its last answer, so a freeze is caught at most that long
    /// after it began.
    pub async fn call_watched(
        self: &std::sync::Arc<Self>,
        host: &ActorRef<RoleHostMsg>,
        request: HostRequest,
    ) -> Result<HostReply, ClusterError> {
        let batch = self.call(host, request, self.timeouts.batch);
        tokio::pin!(batch);
        let every = self.timeouts.heartbeat_every;
        let silence = every * self.timeouts.heartbeat_misses;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (heard, mut answers) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let mut pinging = false;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                reply = &mut batch => return reply,
                _ = ticks.tick(), if !pinging => {
                    // On a task of its own: an unanswered ping must not hold up the reply or
                    // the deadline.
                    pinging = true;
                    let (link, host, heard) = (self.clone(), host.clone(), heard.clone());
                    tokio::spawn(async move {
                        let answered = link.call(&host, HostRequest::Ping, silence).await.is_ok();
                        let _ = heard.send(answered);
                    });
                }
                Some(answered) = answers.recv() => {
                    pinging = false;
                    if answered {
                        last_heard = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(last_heard + silence) => {
                    return Err(ClusterError::Remote {
                        peer: self.peer(),
                        message: format!(
                            "no heartbeat answered for {silence:?} (heartbeat_misses = {} × every {every:?}): the worker is frozen or unreachable",
                            self.timeouts.heartbeat_misses
                        ),
                    });
                }
            }
        }
    }

    /// An attach that failed: a refusal stays one; anything else (an odd reply included) means
    /// the worker cannot serve now.
    fn attach_error(&self, e: ClusterError) -> ClusterError {
        match e {
            ClusterError::Refused { .. }
            | ClusterError::Mismatch { .. }
            | ClusterError::Remote { .. } => e,
            other => ClusterError::Remote {
                peer: self.peer(),
                message: format!("attaching: {other}"),
            },
        }
    }

    pub fn unexpected(&self, reply: HostReply) -> ClusterError {
        ClusterError::Malformed {
            peer: self.peer(),
            message: format!("unexpected reply {reply:?}"),
        }
    }
}
