//! `grlhf run` across processes: the head (`--listen ADDR:PORT`) and its workers
//! (`--join HEAD:PORT --node NAME`), on ractor_cluster (docs/distributed.md).
//!
//! The head runs the whole topology as a one-process run does — prompt source, ledger, replay
//! buffer, judges, learner, supervisor, checkpoints, and a generator actor for every generator.
//! A generator that `[generator] nodes` places on a worker gets a remote engine
//! (`grlhf_cluster::remote_engine`) instead of a model; the worker hosts the model
//! (`grlhf_cluster::engine_host`) and runs the batches. Both sides read the same config file,
//! and its SHA-256, the grlhf version and the wire protocol must agree before a worker serves.
//! A worker exits when the head's session ends (the run finished, or the head died).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::rollout_engine::{vl_rollout_engine, RolloutEngineBuilder};
use grlhf_cluster::engine_host::{EngineHost, EngineHostArgs};
use grlhf_cluster::incarnations::Incarnations;
use grlhf_cluster::node::{ClusterNode, NodeEvent};
use grlhf_cluster::remote_engine::{remote_rollout_engine, RemoteEngineSpec};
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::{Cookie, RunIdentity};
use ractor::Actor;

use crate::cluster_config::node_of;
use crate::model_source::ModelSource;
use crate::run_config::RunConfig;
use crate::topology::Devices;

/// What every process of one run shares, and this process's incarnation.
#[derive(Debug, Clone)]
pub struct ClusterRun {
    pub identity: RunIdentity,
    /// Milliseconds since the epoch at start: a restarted process has a newer one.
    pub incarnation: u64,
    pub cookie: Option<Cookie>,
}

impl ClusterRun {
    /// The identity of the run `config_path` describes: its `run_dir`'s name and the SHA-256
    /// of the file's text.
    pub fn new(config_path: &Path) -> Result<ClusterRun> {
        let text = std::fs::read_to_string(config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config = RunConfig::from_file(config_path)?;
        let run_id = config
            .run_dir
            .file_name()
            .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(ClusterRun {
            identity: RunIdentity::new(run_id, RunIdentity::hash_config(&text)),
            incarnation,
            cookie: Cookie::from_env(),
        })
    }
}

/// The head's node: listening for workers, and building the remote engines of the generators
/// placed on them.
pub struct HeadCluster {
    run: ClusterRun,
    node: ClusterNode,
    listen: SocketAddr,
    config: crate::cluster_config::ClusterConfig,
    runtime: tokio::runtime::Handle,
    /// What the remote generators cost (`summary.json`'s `remote_generators`).
    pub stats: RemoteStats,
}

impl HeadCluster {
    /// Starts the head's node server on `listen` (a non-loopback address needs
    /// `GRLHF_CLUSTER_COOKIE`). Call within the run's tokio runtime.
    pub async fn start(run: ClusterRun, listen: SocketAddr, config: &RunConfig) -> Result<Self> {
        let node = ClusterNode::start("head", listen, run.cookie.as_ref())
            .await
            .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
        tracing::info!(%listen, "head listening for workers");
        Ok(HeadCluster {
            run,
            node,
            listen,
            config: config.cluster.clone(),
            runtime: tokio::runtime::Handle::current(),
            stats: RemoteStats::default(),
        })
    }

    /// Builds the engine of a generator (by name) hosted on a worker node (by name).
    pub fn remote_engines(&self) -> impl Fn(&str, &str) -> RolloutEngineBuilder + 'static {
        let (run, ip) = (self.run.clone(), self.listen.ip());
        let (timeouts, runtime) = (self.config.remote_timeouts(), self.runtime.clone());
        let stats = self.stats.clone();
        move |generator: &str, node: &str| {
            remote_rollout_engine(RemoteEngineSpec {
                generator: generator.to_string(),
                node: node.to_string(),
                identity: run.identity.clone(),
                incarnation: run.incarnation,
                cookie: run.cookie.clone(),
                weights_ip: ip,
                timeouts,
                runtime: runtime.clone(),
                hosts_seen: Incarnations::default(),
                stats: stats.clone(),
            })
        }
    }
}

impl Drop for HeadCluster {
    fn drop(&mut self) {
        // Workers hear the session end and exit.
        self.node.stop();
    }
}

/// Runs worker `node` of the run `config` describes: joins the head at `head`, hosts the
/// engines of the generators placed on `node`, and returns when the head's session ends.
pub fn run_worker(
    config: RunConfig,
    config_path: &Path,
    head: SocketAddr,
    node: &str,
) -> Result<()> {
    let served: Vec<usize> = (0..config.generator.count)
        .filter(|&g| node_of(&config.generator.nodes, g) == Some(node))
        .collect();
    if served.is_empty() {
        bail!(
            "--node {node}: {} places no generator there (generator.nodes = {:?})",
            config_path.display(),
            config.generator.nodes
        );
    }
    let run = ClusterRun::new(config_path)?;
    let kind = config.model.dtype.kind()?;
    let devices = Devices::parse(&config)?;
    let fresh = config.run_dir.join("nodes").join(node).join("init-policy");
    let policy = ModelSource::parse("model.policy", &config.model.policy)?
        .materialise(&fresh, config.seed)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listen = SocketAddr::new(
            match head.ip() {
                ip if ip.is_loopback() => ip,
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
            0,
        );
        let cluster = ClusterNode::start(node, listen, run.cookie.as_ref())
            .await
            .map_err(|e| anyhow!("--node {node}: {e}"))?;
        let join_timeout = Duration::from_secs_f64(config.cluster.join_timeout_s);
        cluster
            .join(head, join_timeout)
            .await
            .map_err(|e| anyhow!("--join {head}: {e}"))?;
        let mut hosts = Vec::new();
        for &g in &served {
            let device = devices.generators[g];
            let args = EngineHostArgs {
                generator: format!("generator-{g}"),
                node: node.to_string(),
                incarnation: run.incarnation,
                identity: run.identity.clone(),
                cookie: run.cookie.clone(),
                engine: vl_rollout_engine(policy.clone(), device, kind),
                device,
                weights_timeout: Duration::from_secs_f64(config.cluster.weights_timeout_s),
            };
            let (host, handle) = Actor::spawn(None, EngineHost, args)
                .await
                .map_err(|e| anyhow!("--node {node}: starting generator-{g}'s engine: {e}"))?;
            hosts.push((host, handle));
        }
        let names: Vec<String> = served.iter().map(|g| format!("generator-{g}")).collect();
        println!(
            "worker {node}: joined the head at {head}; hosting {}",
            names.join(", ")
        );
        loop {
            tokio::select! {
                event = cluster.next_event() => match event {
                    Some(NodeEvent::Disconnected { peer }) => {
                        println!("worker {node}: the head's session ended ({peer}); exiting");
                        break;
                    }
                    Some(NodeEvent::Ready { .. }) => {}
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    println!("worker {node}: interrupted; exiting");
                    break;
                }
            }
        }
        for (host, handle) in hosts {
            host.stop(None);
            let _ = handle.await;
        }
        cluster.stop();
        Ok(())
    })
}
