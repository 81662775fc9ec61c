//! A process's place in a grlhf cluster: its ractor_cluster node server, the connection from a
//! worker to its head, and what each side hears when the other goes away.
//!
//! The head listens (`grlhf run CONFIG --listen ADDR:PORT`); each worker starts its own node
//! server on a free port and connects to the head (`--join HEAD:PORT --node NAME`). ractor_cluster
//! authenticates the session with the cluster cookie (a challenge answered with a digest of it;
//! the cookie is never sent) and then keeps process groups in sync across the two, which is how
//! the head finds the roles a worker hosts ([`crate::role_host`]). A killed peer's session
//! ends within about a second; a frozen one keeps it, which is why remote calls carry their own
//! heartbeat ([`crate::remote_engine`]).

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};

use crate::error::ClusterError;
use crate::handshake::Cookie;
use crate::tls::ClusterTls;

/// The cookie a cluster on loopback uses when `GRLHF_CLUSTER_COOKIE` is not set: only
/// processes of this machine can reach such a node, and they could read the environment anyway.
const LOOPBACK_COOKIE: &str = "grlhf-loopback";

/// A running node server.
pub struct ClusterNode {
    pub name: String,
    pub server: ActorRef<NodeServerMessage>,
    events: flume::Receiver<NodeEvent>,
    tls: Option<ClusterTls>,
}

/// What a node hears about its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Ready { peer: String },
    Disconnected { peer: String },
}

struct EventForwarder(flume::Sender<NodeEvent>);

fn peer_of(session: &ractor_cluster::node::NodeServerSessionInformation) -> String {
    session
        .peer_name
        .as_ref()
        .map_or_else(|| session.peer_addr.clone(), |n| n.name.clone())
}

impl NodeEventSubscription for EventForwarder {
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.send(NodeEvent::Disconnected {
            peer: peer_of(&ses),
        });
    }

    fn node_session_authenticated(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}

    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.send(NodeEvent::Ready {
            peer: peer_of(&ses),
        });
    }
}

impl ClusterNode {
    /// Starts this process's node server on `listen` (port 0: any free port). A non-loopback
    /// address needs a cookie; on loopback a fixed one stands in when none is given. With
    /// `tls`, sessions are mutual TLS (the listener's and [`ClusterNode::join`]'s).
    pub async fn start(
        name: &str,
        listen: SocketAddr,
        cookie: Option<&Cookie>,
        tls: Option<&ClusterTls>,
    ) -> Result<ClusterNode, ClusterError> {
        let cookie = match cookie {
            Some(cookie) => cookie.secret().to_string(),
            None if listen.ip().is_loopback() => LOOPBACK_COOKIE.to_string(),
            None => return Err(ClusterError::CookieRequired { addr: listen }),
        };
        let server = NodeServer::new(
            listen.port(),
            cookie,
            name.to_string(),
            hostname(),
            tls.map(|t| IncomingEncryptionMode::Tls(t.acceptor.clone())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| ClusterError::Io {
                what: format!("starting the cluster node on {listen}"),
                error: std::io::Error::other(e.to_string()),
            })?;
        let (send, events) = flume::unbounded();
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "grlhf".into(),
                subscription: Box::new(EventForwarder(send)),
            })
            .map_err(|e| ClusterError::Io {
                what: "subscribing to the cluster node's events".into(),
                error: std::io::Error::other(e.to_string()),
            })?;
        Ok(ClusterNode {
            name: name.to_string(),
            server,
            events,
            tls: tls.cloned(),
        })
    }

    /// Connects to the head at `head` and waits until the session is authenticated and ready.
    /// A head not listening yet is tried again until `timeout` passes (workers may start
    /// before their head, as a batch scheduler starts them); a wrong cookie never gets a
    /// session and is reported at once, when the head closes it.
    pub async fn join(&self, head: SocketAddr, timeout: Duration) -> Result<String, ClusterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let connected = match &self.tls {
                Some(tls) => {
                    let name = tls.server_name_for(head);
                    let connector = tls.connector.clone();
                    ractor_cluster::client_connect_enc(&self.server, head, connector, name).await
                }
                None => ractor_cluster::client_connect(&self.server, head).await,
            };
            match connected {
                Ok(()) => break,
                // A refused certificate will not be accepted on a second try.
                Err(ractor_cluster::ClientConnectErr::Encryption(e)) => {
                    return Err(ClusterError::Refused {
                        peer: head.to_string(),
                        reason: format!(
                            "the TLS handshake failed: {e} (are both nodes' certificates signed by the CA in cluster.tls_ca, and does the head's carry the name dialled?)"
                        ),
                    })
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(ClusterError::Io {
                        what: format!("connecting to the head at {head} (for {timeout:?})"),
                        error: std::io::Error::other(format!("{e:?}")),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        // Authentication gets its own bound: a head that came up just before the connect
        // deadline still has the whole of it to welcome this worker.
        match tokio::time::timeout(timeout, self.events.recv_async()).await {
            Ok(Ok(NodeEvent::Ready { peer })) => Ok(peer),
            Ok(Ok(NodeEvent::Disconnected { peer })) => Err(ClusterError::Refused {
                peer: format!("{head} ({peer})"),
                reason: "the head closed the session during authentication (is GRLHF_CLUSTER_COOKIE the same on every node, and do both or neither use [cluster] TLS, with certificates of one CA?)".into(),
            }),
            Ok(Err(_)) | Err(_) => Err(ClusterError::Refused {
                peer: head.to_string(),
                reason: format!(
                    "no authenticated session within {timeout:?} (is GRLHF_CLUSTER_COOKIE the same on every node, do both or neither use [cluster] TLS with certificates of one CA, and is the head listening there?)"
                ),
            }),
        }
    }

    /// The next session event (`None`: the node server stopped).
    pub async fn next_event(&self) -> Option<NodeEvent> {
        self.events.recv_async().await.ok()
    }

    pub fn stop(&self) {
        self.server.stop(None);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
