//! The learner's side of the weight data plane: a TCP listener that hands every subscriber the
//! newest policy version over its own connection.
//!
//! Each version is encoded and hashed once ([`WeightServer::publish`]) and shared by all
//! subscribers. Each subscriber has a sender thread that always sends the newest version it has
//! not sent yet, so a slow subscriber skips versions instead of queueing them, and a subscriber
//! that connects (or reconnects) late gets the current weights at once. `publish` never waits on
//! the network: the learner never blocks on a remote node.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::error::ClusterError;
use crate::handshake::{peer_label, Handshake, Hello};
use crate::weight_stream::{EncodedWeights, DEFAULT_CHUNK_BYTES};

/// Settings of a weight server.
#[derive(Debug, Clone)]
pub struct WeightServerConfig {
    pub listen: SocketAddr,
    pub handshake: Handshake,
    pub chunk_bytes: usize,
    /// A subscriber that takes longer than this to accept a write is dropped.
    pub write_timeout: Duration,
}

impl WeightServerConfig {
    pub fn new(listen: SocketAddr, handshake: Handshake) -> WeightServerConfig {
        WeightServerConfig {
            listen,
            handshake,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What the server knows of one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberStats {
    pub name: String,
    pub peer: String,
    pub incarnation: u64,
    pub connected: bool,
    pub last_version_sent: Option<u64>,
    pub versions_sent: u64,
    pub bytes_sent: u64,
    /// Wall time spent writing versions to this subscriber.
    pub send_s: f64,
    /// Why the connection ended, if it did.
    pub error: Option<String>,
}

/// What one `publish` cost.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishStats {
    pub version: u64,
    pub bytes: u64,
    pub encode_s: f64,
    /// The version's digest (of its chunk digests): what a subscriber told of it over another
    /// channel can check it received exactly this version.
    pub digest: String,
}

#[derive(Default)]
struct State {
    latest: Option<Arc<EncodedWeights>>,
    subscribers: Vec<SubscriberStats>,
    shutting_down: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A running weight server (stops when dropped).
pub struct WeightServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    chunk_bytes: usize,
}

impl WeightServer {
    /// Binds the listener and starts accepting subscribers. A non-loopback address needs a
    /// cookie.
    pub fn bind(config: WeightServerConfig) -> Result<WeightServer, ClusterError> {
        if !config.listen.ip().is_loopback() && config.handshake.cookie.is_none() {
            return Err(ClusterError::CookieRequired {
                addr: config.listen,
            });
        }
        let listener = TcpListener::bind(config.listen).map_err(ClusterError::io(format!(
            "binding the weight server to {}",
            config.listen
        )))?;
        let addr = listener
            .local_addr()
            .map_err(ClusterError::io("reading the weight server's address"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accept = {
            let shared = shared.clone();
            let config = config.clone();
            std::thread::Builder::new()
                .name("weight-server-accept".into())
                .spawn(move || accept_loop(listener, shared, config))
                .map_err(ClusterError::io("starting the weight server's thread"))?
        };
        Ok(WeightServer {
            addr,
            shared,
            accept: Some(accept),
            chunk_bytes: config.chunk_bytes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Encodes a version once and hands it to every subscriber's sender; returns without
    /// waiting for any of them.
    pub fn publish(
        &self,
        version: u64,
        tensors: &[(String, Tensor)],
    ) -> Result<PublishStats, ClusterError> {
        let encoded = EncodedWeights::encode(version, tensors, self.chunk_bytes)?;
        Ok(self.publish_encoded(encoded))
    }

    /// Publishes bytes already encoded.
    pub fn publish_encoded(&self, encoded: EncodedWeights) -> PublishStats {
        let stats = PublishStats {
            version: encoded.header.version,
            bytes: encoded.header.total_bytes,
            encode_s: encoded.encode_s,
            digest: encoded.header.digest.clone(),
        };
        let mut state = self.shared.state.lock().expect("weight server state");
        state.latest = Some(Arc::new(encoded));
        self.shared.changed.notify_all();
        stats
    }

    /// Every subscriber that ever connected, in order of arrival.
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        self.shared
            .state
            .lock()
            .expect("weight server state")
            .subscribers
            .clone()
    }

    /// Waits until `n` subscribers are connected, or the deadline passes.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("weight server state");
        loop {
            if state.subscribers.iter().filter(|s| s.connected).count() >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .expect("weight server state")
                .0;
        }
    }
}

impl Drop for WeightServer {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .expect("weight server state")
            .shutting_down = true;
        self.shared.changed.notify_all();
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, config: WeightServerConfig) {
    for stream in listener.incoming() {
        if shared
            .state
            .lock()
            .expect("weight server state")
            .shutting_down
        {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let config = config.clone();
        // The handshake runs on the subscriber's own thread: a silent peer never holds up others.
        let _ = std::thread::Builder::new()
            .name("weight-server-subscriber".into())
            .spawn(move || serve_subscriber(stream, shared, config));
    }
}

fn serve_subscriber(mut stream: TcpStream, shared: Arc<Shared>, config: WeightServerConfig) {
    let peer = peer_label(&stream);
    let hello: Hello = match config.handshake.accept(&mut stream) {
        Ok(hello) => hello,
        Err(error) => {
            tracing::warn!(%peer, %error, "weight subscriber refused");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(config.write_timeout));
    let index = {
        let mut state = shared.state.lock().expect("weight server state");
        state.subscribers.push(SubscriberStats {
            name: hello.peer_name.clone(),
            peer: peer.clone(),
            incarnation: hello.incarnation,
            connected: true,
            last_version_sent: None,
            versions_sent: 0,
            bytes_sent: 0,
            send_s: 0.0,
            error: None,
        });
        shared.changed.notify_all();
        state.subscribers.len() - 1
    };
    let label = format!("{peer} ({})", hello.peer_name);
    let mut sent: Option<u64> = None;
    loop {
        let next = {
            let mut state = shared.state.lock().expect("weight server state");
            loop {
                if state.shutting_down {
                    state.subscribers[index].connected = false;
                    return;
                }
                match &state.latest {
                    Some(latest) if Some(latest.header.version) != sent => break latest.clone(),
                    _ => state = shared.changed.wait(state).expect("weight server state"),
                }
            }
        };
        let started = Instant::now();
        let result = next.send(&mut stream, &label);
        let mut state = shared.state.lock().expect("weight server state");
        let stats = &mut state.subscribers[index];
        match result {
            Ok(()) => {
                sent = Some(next.header.version);
                stats.last_version_sent = sent;
                stats.versions_sent += 1;
                stats.bytes_sent += next.header.total_bytes;
                stats.send_s += started.elapsed().as_secs_f64();
            }
            Err(error) => {
                tracing::warn!(peer = %label, %error, "weight subscriber dropped");
                stats.connected = false;
                stats.error = Some(error.to_string());
                shared.changed.notify_all();
                return;
            }
        }
    }
}
