//! A subscriber's side of the weight data plane: connects to a [`crate::WeightServer`], proves
//! it belongs to the run, and receives verified versions on a background thread.
//!
//! A version reaches [`WeightClient::recv`] only when every byte arrived and every chunk passed
//! its SHA-256 check; a failed transfer arrives as an error and the connection ends, so a torn
//! or corrupt version is never applied.

use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use grlhf_actors::protocol::WeightUpdate;
use tch::{Device, Tensor};

use crate::error::{ClusterError, FrameError};
use crate::handshake::Handshake;
use crate::weight_stream::{ReceiveLimits, VerifiedPayload};

/// One version as received.
#[derive(Debug)]
pub struct ReceivedWeights {
    pub version: u64,
    /// The version's digest (of its chunk digests, all verified).
    pub digest: String,
    /// On the client's device, sorted by name.
    pub tensors: Vec<(String, Tensor)>,
    pub bytes: u64,
    /// From the header's arrival to the last chunk verified.
    pub receive_s: f64,
    /// Turning the bytes into tensors on the device.
    pub decode_s: f64,
}

impl ReceivedWeights {
    /// The update a generator or evaluator applies, as if the learner were in this process.
    pub fn into_update(self) -> WeightUpdate {
        WeightUpdate {
            version: self.version,
            tensors: self.tensors,
            bytes: self.bytes,
            copy_ms: (self.receive_s + self.decode_s) * 1e3,
            recycle: None,
        }
    }
}

/// Settings of a weight client.
#[derive(Debug, Clone)]
pub struct WeightClientConfig {
    pub server: SocketAddr,
    pub handshake: Handshake,
    /// Who is subscribing, as the server reports it.
    pub name: String,
    pub incarnation: u64,
    pub device: Device,
    pub limits: ReceiveLimits,
    pub connect_timeout: Duration,
}

impl WeightClientConfig {
    pub fn new(server: SocketAddr, handshake: Handshake, name: impl Into<String>) -> Self {
        WeightClientConfig {
            server,
            handshake,
            name: name.into(),
            incarnation: 0,
            device: Device::Cpu,
            limits: ReceiveLimits::default(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A connected subscriber.
pub struct WeightClient {
    updates: flume::Receiver<Result<ReceivedWeights, ClusterError>>,
    reader: Option<JoinHandle<()>>,
    stream: TcpStream,
}

impl WeightClient {
    /// Connects and completes the handshake (refusals come back here, naming the reason), then
    /// starts receiving.
    pub fn connect(config: WeightClientConfig) -> Result<WeightClient, ClusterError> {
        let mut stream = TcpStream::connect_timeout(&config.server, config.connect_timeout)
            .map_err(ClusterError::io(format!(
                "connecting to the weight server at {}",
                config.server
            )))?;
        let _ = stream.set_nodelay(true);
        config
            .handshake
            .connect(&mut stream, &config.name, config.incarnation)?;
        let (send, updates) = flume::unbounded();
        let reading = stream
            .try_clone()
            .map_err(ClusterError::io("cloning the weight connection"))?;
        let reader = std::thread::Builder::new()
            .name(format!("weight-client-{}", config.name))
            .spawn(move || receive_loop(reading, config, send))
            .map_err(ClusterError::io("starting the weight client's thread"))?;
        Ok(WeightClient {
            updates,
            reader: Some(reader),
            stream,
        })
    }

    /// The next version, or the error that ended the connection; `None` once the server closed
    /// it cleanly or the deadline passed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Result<ReceivedWeights, ClusterError>> {
        self.updates.recv_timeout(timeout).ok()
    }

    /// Versions are delivered in order; this drops all but the newest one already received.
    pub fn latest(&self) -> Option<Result<ReceivedWeights, ClusterError>> {
        let mut newest = None;
        while let Ok(next) = self.updates.try_recv() {
            let stop = next.is_err();
            newest = Some(next);
            if stop {
                break;
            }
        }
        newest
    }
}

impl Drop for WeightClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn receive_loop(
    mut stream: TcpStream,
    config: WeightClientConfig,
    send: flume::Sender<Result<ReceivedWeights, ClusterError>>,
) {
    let peer = format!("weight server {}", config.server);
    let mut buffer = Vec::new();
    loop {
        let received = VerifiedPayload::receive_into(
            &mut stream,
            &peer,
            &config.limits,
            std::mem::take(&mut buffer),
        );
        let payload = match received {
            Ok(payload) => payload,
            Err(ClusterError::Frame {
                source: FrameError::Closed,
                ..
            }) => return,
            Err(error) => {
                let _ = send.send(Err(error));
                return;
            }
        };
        let started = Instant::now();
        let decoded = payload.decode(&peer).map(|tensors| {
            if config.device == Device::Cpu {
                tensors
            } else {
                tensors
                    .into_iter()
                    .map(|(name, t)| (name, t.to_device(config.device)))
                    .collect()
            }
        });
        let update = decoded.map(|tensors| ReceivedWeights {
            version: payload.header.version,
            digest: payload.header.digest.clone(),
            tensors,
            bytes: payload.header.total_bytes,
            receive_s: payload.receive_s,
            decode_s: started.elapsed().as_secs_f64(),
        });
        buffer = payload.payload;
        let failed = update.is_err();
        if send.send(update).is_err() || failed {
            return;
        }
    }
}
