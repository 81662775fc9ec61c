//! What can go wrong between processes. Every variant names what the operator has to look at:
//! the peer, the field that disagrees, the version or chunk that failed its check.

use std::net::SocketAddr;

/// A framing failure on one connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("not a grlhf frame (starts with {found:02x?}, expected `GRLF`)")]
    BadMagic { found: [u8; 4] },
    #[error("frame of {len} bytes refused: the limit is {limit}")]
    TooLarge { len: u64, limit: u64 },
    #[error("the stream ended after {received} of {expected} bytes")]
    Truncated { expected: u64, received: u64 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Includes read and write deadlines (`WouldBlock` / `TimedOut`).
    #[error("{0}")]
    Io(std::io::Error),
}

impl FrameError {
    /// Whether the error is a read or write deadline passing.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
}

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{peer}: {source}")]
    Frame {
        peer: String,
        #[source]
        source: FrameError,
    },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    /// The two sides disagree on something they must share (grlhf version, protocol, run, config).
    #[error("{peer}: refused: `{field}` differs (ours {ours}, theirs {theirs})")]
    Mismatch {
        peer: String,
        field: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("{peer}: refused: the cluster cookie does not match (set the same GRLHF_CLUSTER_COOKIE on every node)")]
    WrongCookie { peer: String },
    #[error("{peer}: refused: stale incarnation {theirs} (incarnation {newest} of this peer was already accepted; a restarted process starts with a newer one)")]
    StaleIncarnation {
        peer: String,
        theirs: u64,
        newest: u64,
    },
    #[error("{peer} refused us: {reason}")]
    Refused { peer: String, reason: String },
    #[error("listening on {addr} (not loopback) needs a cluster cookie: set GRLHF_CLUSTER_COOKIE")]
    CookieRequired { addr: SocketAddr },
    #[error("{peer}: weights version {version}: the stream ended after {received} of {expected} bytes; nothing was applied")]
    Truncated {
        peer: String,
        version: u64,
        expected: u64,
        received: u64,
    },
    #[error("{peer}: weights version {version}: chunk {chunk} fails its SHA-256 check; nothing was applied")]
    Checksum {
        peer: String,
        version: u64,
        chunk: usize,
    },
    #[error(
        "{peer}: weights version {version}: {what} of {bytes} bytes refused: the limit is {limit}"
    )]
    TooLarge {
        peer: String,
        version: u64,
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    /// A message refused before sending: over the actor link's size limit.
    #[error("{peer}: {message}")]
    TooLargeToSend { peer: String, message: String },
    /// A remote call that failed, timed out, or lost its peer.
    #[error("{peer}: {message}")]
    Remote { peer: String, message: String },
    #[error("{peer}: malformed: {message}")]
    Malformed { peer: String, message: String },
    #[error(transparent)]
    Model(#[from] grlhf_models::ModelError),
}

impl ClusterError {
    pub(crate) fn frame(peer: impl ToString) -> impl FnOnce(FrameError) -> ClusterError {
        let peer = peer.to_string();
        move |source| ClusterError::Frame { peer, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let what = what.into();
        move |error| ClusterError::Io { what, error }
    }
}
