//! The weight data plane's byte format: one policy version as a safetensors file, announced by
//! a header frame and streamed raw, each chunk checked by SHA-256 before anything is applied.
//!
//! Why not the cluster link: ractor_cluster's frames are capped at 16 MiB and a 512 MiB cast
//! there took 1.9 s where raw loopback TCP took 0.17 s, so weights get their own connection
//! and go at stream speed.
//!
//! Why chunk digests, not one digest of the whole file: SHA-256 of one stream is serial, and at
//! about 2 GB/s per core it would cap the transfer below what loopback or a datacentre NIC
//! carries. Chunk digests are checked by several threads while later chunks still arrive, and
//! the header's `digest` (SHA-256 of the chunk digests in order) binds them together.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::error::ClusterError;
use crate::frame::{read_full, read_json, write_json, DEFAULT_FRAME_LIMIT};
use crate::handshake::hex;

/// The default chunk: 4 MiB, large enough that a digest per chunk costs nothing on the wire
/// and small enough that verification keeps pace with reception.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

/// What precedes a version's bytes on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightHeader {
    pub version: u64,
    /// Bytes of the safetensors payload that follows.
    pub total_bytes: u64,
    pub chunk_bytes: u64,
    /// SHA-256 of each chunk, hex, in order.
    pub chunk_sha256: Vec<String>,
    /// SHA-256 of the chunk digests (raw, concatenated in order), hex.
    pub digest: String,
}

impl WeightHeader {
    /// The digest a header's chunk list must have.
    fn digest_of(chunk_sha256: &[String]) -> String {
        let mut hasher = Sha256::new();
        for chunk in chunk_sha256 {
            hasher.update(chunk.as_bytes());
        }
        hex(&hasher.finalize())
    }

    /// Checks the header's own consistency (counts, sizes and its digest) before a byte of the
    /// payload is read or allocated.
    fn check(&self, peer: &str, limits: &ReceiveLimits) -> Result<(), ClusterError> {
        let malformed = |message: String| ClusterError::Malformed {
            peer: peer.to_string(),
            message: format!("weights version {}: {message}", self.version),
        };
        if self.total_bytes > limits.max_total_bytes {
            return Err(ClusterError::TooLarge {
                peer: peer.to_string(),
                version: self.version,
                what: "a weights payload",
                bytes: self.total_bytes,
                limit: limits.max_total_bytes,
            });
        }
        if self.chunk_bytes == 0 || self.chunk_bytes > limits.max_chunk_bytes {
            return Err(malformed(format!(
                "chunk size {} outside 1..={}",
                self.chunk_bytes, limits.max_chunk_bytes
            )));
        }
        let chunks = self.total_bytes.div_ceil(self.chunk_bytes);
        if chunks != self.chunk_sha256.len() as u64 {
            return Err(malformed(format!(
                "{} chunk digests for {} chunks",
                self.chunk_sha256.len(),
                chunks
            )));
        }
        if Self::digest_of(&self.chunk_sha256) != self.digest {
            return Err(malformed(
                "the header's digest does not match its chunk digests".into(),
            ));
        }
        Ok(())
    }
}

/// One version encoded once, to be sent to any number of subscribers.
#[derive(Debug)]
pub struct EncodedWeights {
    pub header: WeightHeader,
    pub payload: Vec<u8>,
    /// Wall time of encoding and hashing.
    pub encode_s: f64,
    /// The part of `encode_s` spent hashing chunks.
    pub hash_s: f64,
}

impl EncodedWeights {
    /// Encodes named tensors (any device) as safetensors bytes and hashes their chunks on all
    /// cores.
    pub fn encode(
        version: u64,
        tensors: &[(String, Tensor)],
        chunk_bytes: usize,
    ) -> Result<EncodedWeights, ClusterError> {
        let started = Instant::now();
        let origin = format!("weights version {version}");
        let payload = grlhf_models::weights::encode_safetensors(tensors, Path::new(&origin))?;
        Ok(Self::from_payload(version, payload, chunk_bytes, started))
    }

    /// Wraps bytes that are already a safetensors file (benchmarks, re-sent checkpoints).
    pub fn from_bytes(version: u64, payload: Vec<u8>, chunk_bytes: usize) -> EncodedWeights {
        Self::from_payload(version, payload, chunk_bytes, Instant::now())
    }

    fn from_payload(
        version: u64,
        payload: Vec<u8>,
        chunk_bytes: usize,
        started: Instant,
    ) -> EncodedWeights {
        let chunk_bytes = chunk_bytes.max(1);
        let hashing = Instant::now();
        let chunks: Vec<&[u8]> = payload.chunks(chunk_bytes).collect();
        let chunk_sha256 = parallel_digests(&chunks);
        let hash_s = hashing.elapsed().as_secs_f64();
        let header = WeightHeader {
            version,
            total_bytes: payload.len() as u64,
            chunk_bytes: chunk_bytes as u64,
            digest: WeightHeader::digest_of(&chunk_sha256),
            chunk_sha256,
        };
        EncodedWeights {
            header,
            payload,
            encode_s: started.elapsed().as_secs_f64(),
            hash_s,
        }
    }

    /// Writes the header frame and the payload.
    pub fn send(&self, writer: &mut impl Write, peer: &str) -> Result<(), ClusterError> {
        write_json(writer, &self.header).map_err(ClusterError::frame(peer))?;
        writer
            .write_all(&self.payload)
            .and_then(|_| writer.flush())
            .map_err(ClusterError::io(format!(
                "{peer}: sending weights version {}",
                self.header.version
            )))
    }
}

/// What a receiver accepts.
#[derive(Debug, Clone)]
pub struct ReceiveLimits {
    pub max_total_bytes: u64,
    pub max_chunk_bytes: u64,
    /// Threads checking chunk digests while later chunks arrive. The default is one per core:
    /// SHA-256 runs at about 1.7 GB/s on a core with SHA extensions, slower than loopback or
    /// a fast NIC, so verification, not the wire, sets the pace unless it has several cores
    /// (docs/distributed.md, "Weight data plane").
    pub verify_threads: usize,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        ReceiveLimits {
            max_total_bytes: 256 << 30,
            max_chunk_bytes: 256 << 20,
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A version's bytes, received whole and verified; not yet turned into tensors.
#[derive(Debug)]
pub struct VerifiedPayload {
    pub header: WeightHeader,
    pub payload: Vec<u8>,
    /// From the header's arrival to the last chunk verified.
    pub receive_s: f64,
}

impl VerifiedPayload {
    /// Reads the next version from the stream: its header, then every byte, each chunk checked
    /// against its digest. Any failure returns an error and no bytes: a version is applied whole
    /// or not at all. [`ClusterError::Frame`] with [`crate::FrameError::Closed`] means the
    /// sender closed the connection between versions.
    pub fn receive(
        reader: &mut impl Read,
        peer: &str,
        limits: &ReceiveLimits,
    ) -> Result<VerifiedPayload, ClusterError> {
        Self::receive_into(reader, peer, limits, Vec::new())
    }

    /// [`VerifiedPayload::receive`] into `buffer`'s memory (a subscriber passes back the
    /// previous version's, so steady-state versions of one size touch no fresh pages).
    pub fn receive_into(
        reader: &mut impl Read,
        peer: &str,
        limits: &ReceiveLimits,
        mut payload: Vec<u8>,
    ) -> Result<VerifiedPayload, ClusterError> {
        let header: WeightHeader =
            read_json(reader, DEFAULT_FRAME_LIMIT).map_err(ClusterError::frame(peer))?;
        let started = Instant::now();
        header.check(peer, limits)?;
        let total = header.total_bytes as usize;
        payload.clear();
        payload
            .try_reserve_exact(total)
            .map_err(|_| ClusterError::TooLarge {
                peer: peer.to_string(),
                version: header.version,
                what: "a weights payload (out of memory)",
                bytes: header.total_bytes,
                limit: header.total_bytes,
            })?;
        payload.resize(total, 0);
        receive_and_verify(reader, &mut payload, &header, peer, limits.verify_threads)?;
        Ok(VerifiedPayload {
            header,
            payload,
            receive_s: started.elapsed().as_secs_f64(),
        })
    }

    /// The tensors, on the CPU, sorted by name.
    pub fn decode(&self, peer: &str) -> Result<Vec<(String, Tensor)>, ClusterError> {
        let origin = format!("{peer}: weights version {}", self.header.version);
        Ok(grlhf_models::weights::decode_safetensors(
            &self.payload,
            Path::new(&origin),
        )?)
    }
}

/// Reads chunk after chunk into `payload` while `threads` workers check the chunks already read.
fn receive_and_verify(
    reader: &mut impl Read,
    payload: &mut [u8],
    header: &WeightHeader,
    peer: &str,
    threads: usize,
) -> Result<(), ClusterError> {
    let expected = header.total_bytes;
    std::thread::scope(|scope| {
        let (work, jobs) = flume::bounded::<(usize, &[u8])>(threads * 2);
        let (report, reports) = flume::unbounded::<usize>();
        for _ in 0..threads.max(1) {
            let jobs = jobs.clone();
            let report = report.clone();
            let digests = &header.chunk_sha256;
            scope.spawn(move || {
                for (index, chunk) in jobs.iter() {
                    if hex(&Sha256::digest(chunk)) != digests[index] {
                        let _ = report.send(index);
                    }
                }
            });
        }
        drop(report);
        let mut received = 0u64;
        let mut failure = None;
        for (index, chunk) in payload.chunks_mut(header.chunk_bytes as usize).enumerate() {
            let want = chunk.len();
            let got = match read_full(reader, chunk) {
                Ok(n) => n,
                Err(e) => {
                    failure = Some(ClusterError::Frame {
                        peer: peer.to_string(),
                        source: e,
                    });
                    break;
                }
            };
            received += got as u64;
            if got < want {
                failure = Some(ClusterError::Truncated {
                    peer: peer.to_string(),
                    version: header.version,
                    expected,
                    received,
                });
                break;
            }
            let chunk: &[u8] = chunk;
            if work.send((index, chunk)).is_err() {
                break;
            }
        }
        drop(work);
        // Workers finish the chunks queued so far; the first bad chunk, if any, is reported.
        let bad = reports.iter().min();
        match (failure, bad) {
            (Some(error), _) => Err(error),
            (None, Some(chunk)) => Err(ClusterError::Checksum {
                peer: peer.to_string(),
                version: header.version,
                chunk,
            }),
            (None, None) => Ok(()),
        }
    })
}

/// SHA-256 of each chunk, on all cores.
fn parallel_digests(chunks: &[&[u8]]) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len().max(1));
    let per_thread = chunks.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|c| hex(&Sha256::digest(c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a digest thread panicked"))
            .collect()
    })
}
