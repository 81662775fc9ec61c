//! The handshake every connection between grlhf processes starts with.
//!
//! The connecting side says who it is and what it runs ([`Hello`]). The accepting side refuses
//! at once, naming the field, when the grlhf version, the wire protocol, the run or the config
//! hash differ. With a cluster cookie both sides then prove they know it without sending it:
//! each answers the other's random nonce with SHA-256(cookie, nonce, role). Every read has a
//! deadline, so a silent or hostile peer is refused within [`Handshake::timeout`], never waited
//! on. Last, an authenticated peer whose incarnation is older than one already accepted under
//! its name is refused ([`crate::incarnations`]).

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ClusterError;
use crate::frame::{read_json, write_json, DEFAULT_FRAME_LIMIT};
use crate::incarnations::Incarnations;

/// The version of grlhf's wire protocol; peers must agree on it exactly.
pub const PROTOCOL_VERSION: u32 = 2;

/// This build's grlhf version; peers must agree on it exactly.
pub const GRLHF_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The shared secret of a cluster (from `GRLHF_CLUSTER_COOKIE`, never from a config file or the
/// command line, where it would be logged or shown by `ps`).
#[derive(Clone)]
pub struct Cookie(String);

impl Cookie {
    /// The environment variable the cookie is read from.
    pub const ENV: &'static str = "GRLHF_CLUSTER_COOKIE";

    pub fn new(secret: impl Into<String>) -> Cookie {
        Cookie(secret.into())
    }

    /// The cookie from [`Cookie::ENV`], if set and not empty.
    pub fn from_env() -> Option<Cookie> {
        std::env::var(Self::ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Cookie)
    }

    /// The secret itself, for ractor_cluster's node authentication (which, like this
    /// handshake, answers challenges with it and never sends it).
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    fn proof(&self, nonce: &str, role: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.0.as_bytes());
        hasher.update([0]);
        hasher.update(nonce.as_bytes());
        hasher.update([0]);
        hasher.update(role.as_bytes());
        hex(&hasher.finalize())
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// What both ends of a connection must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub grlhf_version: String,
    pub protocol: u32,
    /// The run both sides belong to (a head's run directory name, or a launcher's id).
    pub run_id: String,
    /// SHA-256 of the run's config, so a worker started with another config is refused.
    pub config_hash: String,
}

impl RunIdentity {
    /// This build's versions with the given run and config hash.
    pub fn new(run_id: impl Into<String>, config_hash: impl Into<String>) -> RunIdentity {
        RunIdentity {
            grlhf_version: GRLHF_VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
            run_id: run_id.into(),
            config_hash: config_hash.into(),
        }
    }

    /// SHA-256 of a config's text, as [`RunIdentity::config_hash`] expects it.
    pub fn hash_config(text: &str) -> String {
        hex(&Sha256::digest(text.as_bytes()))
    }

    /// The first field where `theirs` differs from `self`: its name, ours, theirs.
    pub fn mismatch(&self, theirs: &RunIdentity) -> Option<(&'static str, String, String)> {
        let fields = [
            ("grlhf_version", &self.grlhf_version, &theirs.grlhf_version),
            ("run_id", &self.run_id, &theirs.run_id),
            ("config_hash", &self.config_hash, &theirs.config_hash),
        ];
        if self.protocol != theirs.protocol {
            return Some((
                "protocol",
                self.protocol.to_string(),
                theirs.protocol.to_string(),
            ));
        }
        fields
            .into_iter()
            .find(|(_, ours, theirs)| ours != theirs)
            .map(|(field, ours, theirs)| (field, ours.clone(), theirs.clone()))
    }
}

/// The connecting side's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub identity: RunIdentity,
    /// Who is connecting, for logs and statistics (for example `weights:node2/generator-0`).
    pub peer_name: String,
    /// Bumped each time the peer restarts: a stale incarnation can be refused.
    pub incarnation: u64,
    /// The connecting side's challenge to the accepting side.
    pub nonce: String,
}

/// The accepting side's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Reply {
    /// Identity accepted; prove the cookie (`proof` answers the client's nonce, so the client
    /// knows it reached a holder of the cookie too).
    Challenge {
        nonce: String,
        proof: Option<String>,
    },
    Refused {
        reason: String,
    },
}

/// The connecting side's answer to the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Proof {
    proof: Option<String>,
}

/// The accepting side's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Verdict {
    Welcome,
    Refused { reason: String },
}

/// One side's settings for handshakes.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub identity: RunIdentity,
    pub cookie: Option<Cookie>,
    /// The deadline for each of the peer's frames.
    pub timeout: Duration,
    /// The accepting side's record of peers' incarnations, shared by the clones of this
    /// handshake (one per accepted connection).
    pub incarnations: Arc<Incarnations>,
}

const CLIENT_ROLE: &str = "client";
const SERVER_ROLE: &str = "server";

impl Handshake {
    pub fn new(identity: RunIdentity, cookie: Option<Cookie>) -> Handshake {
        Handshake {
            identity,
            cookie,
            timeout: Duration::from_secs(5),
            incarnations: Arc::new(Incarnations::default()),
        }
    }

    /// The connecting side: sends `hello`, checks the server's proof, proves the cookie.
    pub fn connect(
        &self,
        stream: &mut TcpStream,
        peer_name: &str,
        incarnation: u64,
    ) -> Result<(), ClusterError> {
        let peer = peer_label(stream);
        let previous = set_timeouts(stream, Some(self.timeout), &peer)?;
        let nonce = new_nonce();
        let hello = Hello {
            identity: self.identity.clone(),
            peer_name: peer_name.to_string(),
            incarnation,
            nonce: nonce.clone(),
        };
        write_json(stream, &hello).map_err(ClusterError::frame(&peer))?;
        let reply: Reply =
            read_json(stream, DEFAULT_FRAME_LIMIT).map_err(ClusterError::frame(&peer))?;
        let (server_nonce, server_proof) = match reply {
            Reply::Refused { reason } => return Err(ClusterError::Refused { peer, reason }),
            Reply::Challenge { nonce, proof } => (nonce, proof),
        };
        if let Some(cookie) = &self.cookie {
            if server_proof.as_deref() != Some(cookie.proof(&nonce, SERVER_ROLE).as_str()) {
                return Err(ClusterError::WrongCookie { peer });
            }
        }
        let proof = Proof {
            proof: self
                .cookie
                .as_ref()
                .map(|c| c.proof(&server_nonce, CLIENT_ROLE)),
        };
        write_json(stream, &proof).map_err(ClusterError::frame(&peer))?;
        match read_json(stream, DEFAULT_FRAME_LIMIT).map_err(ClusterError::frame(&peer))? {
            Verdict::Welcome => {}
            Verdict::Refused { reason } => return Err(ClusterError::Refused { peer, reason }),
        }
        set_timeouts(stream, previous, &peer)?;
        Ok(())
    }

    /// The accepting side: checks the peer's identity and cookie, and tells it why when it
    /// refuses. Returns the peer's [`Hello`].
    pub fn accept(&self, stream: &mut TcpStream) -> Result<Hello, ClusterError> {
        let peer = peer_label(stream);
        let previous = set_timeouts(stream, Some(self.timeout), &peer)?;
        let hello: Hello =
            read_json(stream, DEFAULT_FRAME_LIMIT).map_err(ClusterError::frame(&peer))?;
        if let Some((field, ours, theirs)) = self.identity.mismatch(&hello.identity) {
            let error = ClusterError::Mismatch {
                peer: format!("{peer} ({})", hello.peer_name),
                field,
                ours,
                theirs,
            };
            refuse_reply(stream, &error);
            return Err(error);
        }
        let nonce = new_nonce();
        let reply = Reply::Challenge {
            nonce: nonce.clone(),
            proof: self
                .cookie
                .as_ref()
                .map(|c| c.proof(&hello.nonce, SERVER_ROLE)),
        };
        write_json(stream, &reply).map_err(ClusterError::frame(&peer))?;
        let proof: Proof =
            read_json(stream, DEFAULT_FRAME_LIMIT).map_err(ClusterError::frame(&peer))?;
        if let Some(cookie) = &self.cookie {
            if proof.proof.as_deref() != Some(cookie.proof(&nonce, CLIENT_ROLE).as_str()) {
                let error = ClusterError::WrongCookie {
                    peer: format!("{peer} ({})", hello.peer_name),
                };
                let _ = write_json(
                    stream,
                    &Verdict::Refused {
                        reason: error.to_string(),
                    },
                );
                return Err(error);
            }
        }
        if let Err(newest) = self.incarnations.admit(&hello.peer_name, hello.incarnation) {
            let error = ClusterError::StaleIncarnation {
                peer: format!("{peer} ({})", hello.peer_name),
                theirs: hello.incarnation,
                newest,
            };
            let _ = write_json(
                stream,
                &Verdict::Refused {
                    reason: error.to_string(),
                },
            );
            return Err(error);
        }
        write_json(stream, &Verdict::Welcome).map_err(ClusterError::frame(&peer))?;
        set_timeouts(stream, previous, &peer)?;
        Ok(hello)
    }
}

/// Tells the peer why it is refused (best effort: it may already be gone).
fn refuse_reply(stream: &mut impl Write, error: &ClusterError) {
    let _ = write_json(
        stream,
        &Reply::Refused {
            reason: error.to_string(),
        },
    );
}

/// Sets both deadlines and returns the read deadline that was there before.
fn set_timeouts(
    stream: &mut TcpStream,
    timeout: Option<Duration>,
    peer: &str,
) -> Result<Option<Duration>, ClusterError> {
    let previous = stream.read_timeout().map_err(ClusterError::io(format!(
        "{peer}: reading the socket deadline"
    )))?;
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(ClusterError::io(format!(
            "{peer}: setting the socket deadline"
        )))?;
    Ok(previous)
}

pub(crate) fn peer_label(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".to_string())
}

fn new_nonce() -> String {
    hex(&rand::random::<[u8; 32]>())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
