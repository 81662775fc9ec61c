//! `grlhf-bench control-plane`: what a batch pays for crossing processes, per group.
//!
//! This process is a head; it starts a copy of itself as a worker (`--worker-of`) that hosts an
//! engine answering instantly over ractor_cluster on 127.0.0.1. Each repeat sends the same
//! batch of embedded-world prompts (rendered scenes as PNG, chat turns) to the worker and
//! times the head's call, alternating with a direct call of the same instant engine in this
//! process. The difference per group is the control plane's cost: envelopes, PNG, JSON, the
//! actor link, the worker's threads. The goal is under 1 ms per group.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::Rollout;
use grlhf_actors::rollout_engine::{
    GeneratedGroup, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use grlhf_cluster::incarnations::Incarnations;
use grlhf_cluster::node::{ClusterNode, NodeEvent};
use grlhf_cluster::remote_call::{RemoteRole, RemoteTimeouts};
use grlhf_cluster::remote_engine::remote_rollout_engine;
use grlhf_cluster::remote_model::RemoteModelSpec;
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::role_host::{HostedRole, RoleHost, RoleHostArgs};
use grlhf_cluster::wire::{Envelope, HostRequest, WirePrompt};
use grlhf_cluster::RunIdentity;
use grlhf_models::generation::FinishReason;
use serde::Serialize;
use tch::Tensor;

const GENERATOR: &str = "bench-generator";
const NODE: &str = "bench-worker";

fn identity() -> RunIdentity {
    RunIdentity::new("control-plane-bench", RunIdentity::hash_config("bench"))
}

/// Answers at once with `n` responses of `tokens` tokens per prompt: only the protocol costs.
struct InstantEngine {
    tokens: usize,
}

impl RolloutEngine for InstantEngine {
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        _config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        Ok(prompts
            .iter()
            .map(|p| {
                let rollout = |k: usize| Rollout {
                    tokens: (0..self.tokens as i64)
                        .map(|t| t + seed as i64 + k as i64)
                        .collect(),
                    logprobs: vec![-1.25; self.tokens],
                    finish_reason: FinishReason::Stop,
                    text: format!("{} answer {k}", p.id),
                    policy_mask: None,
                };
                (vec![1; 64], (0..n).map(rollout).collect())
            })
            .collect())
    }

    fn apply_weights(&mut self, _: &[(String, Tensor)]) -> Result<(), ActorError> {
        Ok(())
    }
}

fn instant(tokens: usize) -> RolloutEngineBuilder {
    Arc::new(move |_: Option<&Path>| {
        Ok(Box::new(InstantEngine { tokens }) as Box<dyn RolloutEngine>)
    })
}

/// The worker side: host the instant engine until the head's session ends.
pub fn worker(head: SocketAddr, tokens: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let node = ClusterNode::start(NODE, "127.0.0.1:0".parse()?, None, None).await?;
        node.join(head, Duration::from_secs(30)).await?;
        let args = RoleHostArgs {
            role: GENERATOR.into(),
            node: NODE.into(),
            incarnation: 1,
            identity: identity(),
            cookie: None,
            hosted: HostedRole::Engine(instant(tokens)),
            device: tch::Device::Cpu,
            head_ip: head.ip(),
            weights_timeout: Duration::from_secs(30),
            collectives: None,
        };
        let _host = ractor::Actor::spawn(None, RoleHost, args)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        while let Some(event) = node.next_event().await {
            if matches!(event, NodeEvent::Disconnected { .. }) {
                break;
            }
        }
        Ok(())
    })
}

/// One batch size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ControlPlanePoint {
    pub prompts: usize,
    pub group_size: usize,
    pub tokens: usize,
    /// Median head-side wall time of one remote batch call.
    pub remote_ms: f64,
    /// Median wall time of the same batch on the engine in this process.
    pub local_ms: f64,
    /// (remote − local) / prompts.
    pub overhead_ms_per_group: f64,
    /// Encoding the request envelope alone (PNG + JSON), median.
    pub encode_request_ms: f64,
    /// The request's size on the actor link.
    pub request_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlPlaneReport {
    pub machine: String,
    pub repeats: usize,
    pub points: Vec<ControlPlanePoint>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

fn world_prompts(count: usize) -> Result<Vec<PromptSpec>> {
    let records = grlhf::run::world_eval_records(0, count.div_ceil(7))?;
    records
        .into_iter()
        .take(count)
        .map(|r| grlhf::run::policy_spec(r, "You are a careful visual assistant."))
        .collect()
}

fn measure_point(
    engine: &mut dyn RolloutEngine,
    prompts: &[PromptSpec],
    group_size: usize,
    tokens: usize,
    repeats: usize,
) -> Result<ControlPlanePoint> {
    let config = GeneratorConfig::default();
    let mut local = InstantEngine { tokens };
    let (mut remote_ms, mut local_ms, mut encode_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut request_bytes = 0;
    for repeat in 0..=repeats {
        let t = Instant::now();
        engine.generate(prompts, group_size, &config, repeat as u64)?;
        let remote = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        local.generate(prompts, group_size, &config, repeat as u64)?;
        let here = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let request = HostRequest::Generate {
            prompts: prompts
                .iter()
                .map(WirePrompt::from_spec)
                .collect::<Result<_, _>>()?,
            n: group_size as u32,
            config: config.clone(),
            seed: repeat as u64,
            weights_version: 0,
            weights_digest: None,
        };
        request_bytes = Envelope::new("control-plane-bench", 1, request)
            .encode()
            .len();
        let encode = t.elapsed().as_secs_f64() * 1e3;
        if repeat > 0 {
            // The first call attaches the host and warms caches.
            remote_ms.push(remote);
            local_ms.push(here);
            encode_ms.push(encode);
        }
    }
    let (remote_ms, local_ms) = (median(remote_ms), median(local_ms));
    Ok(ControlPlanePoint {
        prompts: prompts.len(),
        group_size,
        tokens,
        remote_ms,
        local_ms,
        overhead_ms_per_group: (remote_ms - local_ms) / prompts.len() as f64,
        encode_request_ms: median(encode_ms),
        request_bytes,
    })
}

/// Runs the head side, starting the worker as a child process.
pub fn measure(
    batches: &[usize],
    group_size: usize,
    tokens: usize,
    repeats: usize,
) -> Result<ControlPlaneReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let head = runtime.block_on(ClusterNode::start("head", listen, None, None))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "control-plane",
            "--worker-of",
            &listen.to_string(),
            "--tokens",
            &tokens.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the worker process")?;
    let link = RemoteRole {
        role: GENERATOR.into(),
        node: NODE.into(),
        identity: identity(),
        incarnation: 1,
        cookie: None,
        timeouts: RemoteTimeouts::default(),
        runtime: runtime.handle().clone(),
        hosts_seen: Incarnations::default(),
    };
    let spec = RemoteModelSpec {
        link: Arc::new(link),
        weights_ip: listen.ip(),
        stats: RemoteStats::default(),
        collective: None,
    };
    let mut engine = remote_rollout_engine(spec)(None).map_err(|e| anyhow!("{e}"))?;
    let all = world_prompts(*batches.iter().max().unwrap_or(&1))?;
    let mut points = Vec::new();
    for &b in batches {
        let point = measure_point(engine.as_mut(), &all[..b], group_size, tokens, repeats)?;
        eprintln!(
            "{b:>3} prompts: remote {:.2} ms, local {:.3} ms → {:.3} ms per group",
            point.remote_ms, point.local_ms, point.overhead_ms_per_group
        );
        points.push(point);
    }
    drop(engine);
    head.stop();
    let _ = child.wait_timeout_or_kill(Duration::from_secs(10));
    Ok(ControlPlaneReport {
        machine: grlhf::machine::machine_name("cpu"),
        repeats,
        points,
    })
}

trait WaitOrKill {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::io::Result<()>;
}

impl WaitOrKill for std::process::Child {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill()?;
        self.wait().map(|_| ())
    }
}

/// The report as a Markdown table.
pub fn table(report: &ControlPlaneReport) -> String {
    let mut s = format!(
        "Control plane across processes (127.0.0.1, ractor_cluster) — {}\n\nmedian of {} calls per point, group size {}, {} tokens per response\n\n| prompts per batch | request | encode request ms | remote call ms | same engine in-process ms | overhead ms per group |\n|---:|---:|---:|---:|---:|---:|\n",
        report.machine,
        report.repeats,
        report.points.first().map_or(0, |p| p.group_size),
        report.points.first().map_or(0, |p| p.tokens),
    );
    for p in &report.points {
        s += &format!(
            "| {} | {:.0} KiB | {:.2} | {:.2} | {:.3} | **{:.3}** |\n",
            p.prompts,
            p.request_bytes as f64 / 1024.0,
            p.encode_request_ms,
            p.remote_ms,
            p.local_ms,
            p.overhead_ms_per_group
        );
    }
    s
}
