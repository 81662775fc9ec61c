//! `grlhf-bench weights`: the weight data plane against raw loopback TCP, in the same run.
//!
//! Each repeat moves the same bytes twice over 127.0.0.1, alternating: once as a bare
//! `write_all` / `read_exact` pair (the ceiling), once through `WeightServer` → `WeightClient`
//! (header frame, chunk-wise SHA-256 checks while bytes arrive, safetensors decode). The ratio
//! of the two wire rates is the "≥ 80% of raw loopback TCP" goal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use grlhf_cluster::{
    Cookie, EncodedWeights, Handshake, RunIdentity, WeightClient, WeightClientConfig, WeightServer,
    WeightServerConfig,
};
use serde::Serialize;
use tch::{Kind, Tensor};

/// One repeat's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsRepeat {
    pub raw_tcp_gb_s: f64,
    /// Bytes over the time from the header's arrival to the last chunk verified.
    pub plane_wire_gb_s: f64,
    /// Bytes over the time from `publish` returning to the tensors decoded on the subscriber.
    pub plane_end_to_end_gb_s: f64,
    pub decode_s: f64,
}

/// The whole measurement.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    pub machine: String,
    pub bytes: u64,
    pub chunk_bytes: usize,
    pub verify_threads: usize,
    /// SHA-256 over the payload on one thread: with `verify_threads` threads the receiver
    /// cannot verify faster than `verify_threads` × this, whatever the wire does.
    pub sha256_gb_s_per_thread: f64,
    /// Encoding and hashing the first version (fresh pages for the encoded bytes).
    pub encode_first_s: f64,
    /// Encoding and hashing a later version, the median of [`ENCODES`] − 1: what a run pays
    /// once per version (shared by every subscriber).
    pub encode_s: f64,
    /// The part of `encode_s` spent hashing chunks.
    pub hash_s: f64,
    pub repeats: Vec<WeightsRepeat>,
    pub median_raw_tcp_gb_s: f64,
    pub median_plane_wire_gb_s: f64,
    pub median_plane_end_to_end_gb_s: f64,
    /// median plane wire rate / median raw TCP rate.
    pub wire_ratio: f64,
}

fn gb_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds.max(1e-9) / 1e9
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// The ceiling: `bytes` over a fresh loopback connection into a buffer already touched (as the
/// plane's client reuses its buffer), timed on the receiving side from the first byte to the
/// last (as the plane's wire rate is).
fn raw_tcp(payload: &[u8], buf: &mut [u8]) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let len = payload.len();
    std::thread::scope(|scope| -> Result<f64> {
        let sender = scope.spawn(move || -> Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            stream.write_all(payload)?;
            stream.flush()?;
            Ok(())
        });
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.read_exact(&mut buf[..1])?;
        let started = Instant::now();
        stream.read_exact(&mut buf[1..])?;
        let seconds = started.elapsed().as_secs_f64();
        sender.join().map_err(|_| anyhow!("sender panicked"))??;
        Ok(gb_s(len as u64 - 1, seconds))
    })
}

/// A model-shaped set of f32 tensors of about `mib` MiB.
fn model(mib: usize) -> Vec<(String, Tensor)> {
    tch::manual_seed(0);
    let per = 16usize;
    let rows = (mib << 20) / 4 / 4096 / per;
    (0..per)
        .map(|i| {
            (
                format!("model.layers.{i}.mlp.up_proj.weight"),
                Tensor::randn([rows as i64, 4096], (Kind::Float, tch::Device::Cpu)),
            )
        })
        .collect()
}

/// How many versions are encoded: the first alone, then the steady state.
pub const ENCODES: usize = 4;

/// Encodes `tensors` [`ENCODES`] times: the last encoding, the first's time, and the median
/// total and hashing times of the others.
fn encode_versions(
    tensors: &[(String, Tensor)],
    chunk_bytes: usize,
) -> Result<(EncodedWeights, f64, f64, f64)> {
    let mut last = EncodedWeights::encode(0, tensors, chunk_bytes)?;
    let first_s = last.encode_s;
    let (mut totals, mut hashes) = (Vec::new(), Vec::new());
    for _ in 1..ENCODES {
        // The previous version is dropped first, as a server drops one no subscriber holds.
        drop(last);
        last = EncodedWeights::encode(0, tensors, chunk_bytes)?;
        totals.push(last.encode_s);
        hashes.push(last.hash_s);
    }
    Ok((last, first_s, median(totals), median(hashes)))
}

/// SHA-256 of `payload` in `chunk_bytes` chunks on this thread, in GB/s.
fn sha256_rate(payload: &[u8], chunk_bytes: usize) -> f64 {
    use sha2::{Digest, Sha256};
    let started = Instant::now();
    let digests: usize = payload
        .chunks(chunk_bytes)
        .map(|chunk| Sha256::digest(chunk)[0] as usize)
        .sum();
    std::hint::black_box(digests);
    gb_s(payload.len() as u64, started.elapsed().as_secs_f64())
}

/// Measures `repeats` alternating rounds with a `mib`-MiB model; `verify_threads` overrides
/// the subscriber's default (one per core).
pub fn measure(
    mib: usize,
    repeats: usize,
    chunk_bytes: usize,
    verify_threads: Option<usize>,
) -> Result<WeightsReport> {
    let tensors = model(mib);
    let cookie = Cookie::new(format!("{:x}", rand_seed()));
    let handshake = Handshake::new(RunIdentity::new("bench", "bench"), Some(cookie));
    let mut config = WeightServerConfig::new("127.0.0.1:0".parse()?, handshake.clone());
    config.chunk_bytes = chunk_bytes;
    let server = WeightServer::bind(config)?;
    let mut client_config = WeightClientConfig::new(server.local_addr(), handshake, "bench");
    if let Some(threads) = verify_threads {
        client_config.limits.verify_threads = threads;
    }
    let verify_threads = client_config.limits.verify_threads;
    let client = WeightClient::connect(client_config)?;
    let (encoded, encode_first_s, encode_s, hash_s) = encode_versions(&tensors, chunk_bytes)?;
    let bytes = encoded.header.total_bytes;
    let payload = encoded.payload;
    let sha256_gb_s_per_thread = sha256_rate(&payload, chunk_bytes);
    let mut rounds = Vec::new();
    let mut raw_buffer = vec![1u8; payload.len()];
    // Version 0 is a warm-up (first touch of the client's pages); versions 1.. are measured.
    for version in 0..=repeats as u64 {
        let raw = raw_tcp(&payload, &mut raw_buffer)?;
        let encoded = EncodedWeights::from_bytes(version, payload.clone(), chunk_bytes);
        let started = Instant::now();
        server.publish_encoded(encoded);
        let received = client
            .recv_timeout(Duration::from_secs(600))
            .context("no version arrived within 10 minutes")??;
        let end_to_end = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            received.version == version,
            "got version {}",
            received.version
        );
        if version > 0 {
            rounds.push(WeightsRepeat {
                raw_tcp_gb_s: raw,
                plane_wire_gb_s: gb_s(bytes, received.receive_s),
                plane_end_to_end_gb_s: gb_s(bytes, end_to_end),
                decode_s: received.decode_s,
            });
        }
    }
    let raw = median(rounds.iter().map(|r| r.raw_tcp_gb_s).collect());
    let wire = median(rounds.iter().map(|r| r.plane_wire_gb_s).collect());
    Ok(WeightsReport {
        machine: grlhf::machine::machine_name("cpu"),
        bytes,
        chunk_bytes,
        verify_threads,
        sha256_gb_s_per_thread,
        encode_first_s,
        encode_s,
        hash_s,
        median_plane_end_to_end_gb_s: median(
            rounds.iter().map(|r| r.plane_end_to_end_gb_s).collect(),
        ),
        repeats: rounds,
        median_raw_tcp_gb_s: raw,
        median_plane_wire_gb_s: wire,
        wire_ratio: wire / raw,
    })
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The report as a Markdown table.
pub fn table(report: &WeightsReport) -> String {
    let mut s = format!(
        "Weight data plane vs raw loopback TCP — {}\n\n{:.0} MiB of f32 weights, chunks of {} MiB, {} verify thread(s) (SHA-256 on one thread: {:.2} GB/s)\n\nencode + hash once per version: {:.3} s (of which hashing {:.3} s); the first version: {:.3} s\n\n",
        report.machine,
        report.bytes as f64 / (1u64 << 20) as f64,
        report.chunk_bytes >> 20,
        report.verify_threads,
        report.sha256_gb_s_per_thread,
        report.encode_s,
        report.hash_s,
        report.encode_first_s
    );
    s += "| repeat | raw TCP GB/s | plane wire GB/s | ratio | plane end-to-end GB/s | decode s |\n|---:|---:|---:|---:|---:|---:|\n";
    for (i, r) in report.repeats.iter().enumerate() {
        s += &format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |\n",
            i + 1,
            r.raw_tcp_gb_s,
            r.plane_wire_gb_s,
            r.plane_wire_gb_s / r.raw_tcp_gb_s,
            r.plane_end_to_end_gb_s,
            r.decode_s
        );
    }
    s += &format!(
        "| median | {:.2} | {:.2} | **{:.2}** | {:.2} | |\n",
        report.median_raw_tcp_gb_s,
        report.median_plane_wire_gb_s,
        report.wire_ratio,
        report.median_plane_end_to_end_gb_s
    );
    s
}
