//! `grlhf run` across processes: the head (`--listen ADDR:PORT`) and its workers
//! (`--join HEAD:PORT --node NAME`), on ractor_cluster (docs/distributed.md).
//!
//! The head runs the whole topology as a one-process run does — prompt source, ledger, replay
//! buffer, learner, supervisor, checkpoints, and an actor for every generator and judge. A
//! generator that `[generator] nodes` places on a worker gets a remote engine
//! (`grlhf_cluster::remote_engine`) instead of a model, a judge whose `[[judge]]` table names a
//! `node` a remote judge (`grlhf_cluster::remote_judge`); the worker hosts the models
//! (`grlhf_cluster::role_host`) and does the work. Both sides read the same config file,
//! and its SHA-256, the grlhf version and the wire protocol must agree before a worker serves.
//! A worker exits when the head's session ends (the run finished, or the head died).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::eval_engine::EvalEngineBuilder;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::registry::Registry;
use grlhf_actors::rollout_engine::{vl_rollout_engine, RolloutEngineBuilder};
use grlhf_actors::supervisor::JudgeRebuild;
use grlhf_cluster::bucket_broadcast::Collectives;
use grlhf_cluster::collective_sender::CollectiveChoice;
use grlhf_cluster::incarnations::Incarnations;
use grlhf_cluster::nccl::{Nccl, NcclCollectives};
use grlhf_cluster::node::{ClusterNode, NodeEvent};
use grlhf_cluster::remote_call::{RemoteRole, RemoteTimeouts};
use grlhf_cluster::remote_engine::remote_rollout_engine;
use grlhf_cluster::remote_evaluator::remote_eval_engine;
use grlhf_cluster::remote_judge::{remote_judge, RemoteJudgeSpec};
use grlhf_cluster::remote_model::RemoteModelSpec;
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::role_host::{HostedRole, RoleHost, RoleHostArgs, RoleHostMsg};
use grlhf_cluster::transport::{TransportChoice, WeightTransport};
use grlhf_cluster::{Cookie, RunIdentity};
use ractor::{Actor, ActorRef};

use crate::cluster_config::{node_of, worker_node, HEAD_NODE};
use crate::model_source::ModelSource;
use crate::run_config::RunConfig;
use crate::topology::{evaluator_engine, judges_on, Devices, RemoteRoles};

/// The evaluator's role name (its process group on a worker).
const EVALUATOR_ROLE: &str = "evaluator";

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

/// The head's node: listening for workers, and building the stand-ins of the roles placed on
/// them.
pub struct HeadCluster {
    node: ClusterNode,
    factory: Arc<RemoteFactory>,
    /// How weights reach workers, and why (`summary.json`'s `weights_transport`).
    pub transport: TransportChoice,
}

/// Builds remote engines and judges (`crate::topology::RemoteRoles`).
struct RemoteFactory {
    run: ClusterRun,
    weights_ip: IpAddr,
    timeouts: RemoteTimeouts,
    runtime: tokio::runtime::Handle,
    stats: RemoteStats,
    /// Broadcast weights to workers that can take them (NCCL).
    collective: Option<CollectiveChoice>,
}

impl RemoteFactory {
    fn link(&self, role: &str, node: &str) -> Arc<RemoteRole> {
        Arc::new(RemoteRole {
            role: role.to_string(),
            node: node.to_string(),
            identity: self.run.identity.clone(),
            incarnation: self.run.incarnation,
            cookie: self.run.cookie.clone(),
            timeouts: self.timeouts,
            runtime: self.runtime.clone(),
            hosts_seen: Incarnations::default(),
        })
    }
}

impl RemoteRoles for RemoteFactory {
    fn engine(&self, generator: &str, node: &str) -> RolloutEngineBuilder {
        remote_rollout_engine(RemoteModelSpec {
            link: self.link(generator, node),
            weights_ip: self.weights_ip,
            stats: self.stats.clone(),
            collective: self.collective.clone(),
        })
    }

    fn evaluator(&self, node: &str) -> EvalEngineBuilder {
        remote_eval_engine(RemoteModelSpec {
            link: self.link(EVALUATOR_ROLE, node),
            weights_ip: self.weights_ip,
            stats: self.stats.clone(),
            collective: self.collective.clone(),
        })
    }

    fn judge(&self, judge: &str, node: &str) -> JudgeRebuild {
        remote_judge(RemoteJudgeSpec {
            link: self.link(judge, node),
            stats: self.stats.clone(),
        })
    }
}

impl HeadCluster {
    /// Starts the head's node server on `listen` (a non-loopback address needs
    /// `GRLHF_CLUSTER_COOKIE`). Call within the run's tokio runtime.
    pub async fn start(run: ClusterRun, listen: SocketAddr, config: &RunConfig) -> Result<Self> {
        let tls = config.cluster.tls()?;
        let node = ClusterNode::start("head", listen, run.cookie.as_ref(), tls.as_ref())
            .await
            .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
        let learner = Devices::parse(config)?.learner;
        let (transport, nccl) = config
            .weights
            .transport
            .choose(learner)
            .map_err(|e| anyhow!("{e}"))?;
        let collective = nccl.map(|nccl| CollectiveChoice {
            collectives: Arc::new(NcclCollectives { nccl }) as Arc<dyn Collectives>,
            device: learner,
            bucket_bytes: config.weights.bucket_mib << 20,
            per_bucket: Duration::from_secs_f64(config.cluster.weights_timeout_s),
            required: config.weights.transport == WeightTransport::Nccl,
        });
        tracing::info!(%listen, transport = ?transport.chosen, reason = %transport.reason, "head listening for workers");
        let factory = Arc::new(RemoteFactory {
            run,
            weights_ip: listen.ip(),
            timeouts: config.cluster.remote_timeouts(),
            runtime: tokio::runtime::Handle::current(),
            stats: RemoteStats::default(),
            collective,
        });
        Ok(HeadCluster {
            node,
            factory,
            transport,
        })
    }

    /// The stand-ins of remote roles, for the topology plan.
    pub fn remote_roles(&self) -> Arc<dyn RemoteRoles> {
        self.factory.clone()
    }

    /// What the remote roles cost (`summary.json`'s `remote_roles`).
    pub fn stats(&self) -> RemoteStats {
        self.factory.stats.clone()
    }
}

impl Drop for HeadCluster {
    fn drop(&mut self) {
        // Workers hear the session end and exit.
        self.node.stop();
    }
}

/// What worker `node` hosts: generators' engines, judges and the evaluator, by role name.
/// `eval_prompts`: the evaluator's held-out prompts, built from the config as the head builds
/// them.
pub fn hosted_on(
    config: &RunConfig,
    config_path: &Path,
    registry: Registry,
    node: &str,
    eval_prompts: Vec<PromptSpec>,
) -> Result<Vec<(String, HostedRole, tch::Device)>> {
    let kind = config.model.dtype.kind()?;
    let devices = Devices::parse(config)?;
    let mut hosted = Vec::new();
    let generators: Vec<usize> = (0..config.generator.count)
        .filter(|&g| node_of(&config.generator.nodes, g) == Some(node))
        .collect();
    let evaluator = (config.evaluator.as_ref()).filter(|e| worker_node(&e.node) == Some(node));
    let policy = if generators.is_empty() && evaluator.is_none() {
        None
    } else {
        let fresh = config.run_dir.join("nodes").join(node).join("init-policy");
        let source = ModelSource::parse("model.policy", &config.model.policy)?;
        Some(source.materialise(&fresh, config.seed)?)
    };
    for g in generators {
        let device = devices.generators[g];
        let policy = policy.clone().expect("materialised above");
        let engine = vl_rollout_engine(policy, device, kind);
        hosted.push((format!("generator-{g}"), HostedRole::Engine(engine), device));
    }
    if let (Some(eval), Some(policy), Some(device)) = (evaluator, &policy, devices.evaluator) {
        let local = (eval, config_path, &registry, eval_prompts);
        let engine = evaluator_engine(local, policy, device, kind)?;
        hosted.push((EVALUATOR_ROLE.into(), HostedRole::Evaluator(engine), device));
    }
    let registry = Arc::new(registry);
    for (name, rebuild, device) in judges_on(config, config_path, &registry, &devices, kind, node)?
    {
        hosted.push((name, HostedRole::Judge(rebuild), device));
    }
    Ok(hosted)
}

/// Starts a role host for each of `hosted`, all at once (each loads its model on its own
/// thread, so a worker hosting several large ones is ready in the time of the slowest).
async fn spawn_hosts(
    hosted: Vec<(String, HostedRole, tch::Device)>,
    node: &str,
    head: SocketAddr,
    run: &ClusterRun,
    weights_timeout: Duration,
) -> Result<Vec<(String, ActorRef<RoleHostMsg>, tokio::task::JoinHandle<()>)>> {
    // Offered to the head, which decides; a worker on the CPU says it cannot join.
    let collectives = Nccl::load().ok().map(|nccl| {
        Arc::new(NcclCollectives {
            nccl: Arc::new(nccl),
        }) as Arc<dyn Collectives>
    });
    let starting: Vec<_> = hosted
        .into_iter()
        .map(|(role, hosted, device)| {
            let args = RoleHostArgs {
                role: role.clone(),
                node: node.to_string(),
                incarnation: run.incarnation,
                identity: run.identity.clone(),
                cookie: run.cookie.clone(),
                hosted,
                device,
                head_ip: head.ip(),
                weights_timeout,
                collectives: collectives.clone(),
            };
            (role, tokio::spawn(Actor::spawn(None, RoleHost, args)))
        })
        .collect();
    let mut hosts = Vec::new();
    for (role, started) in starting {
        let (host, handle) = started
            .await
            .map_err(|e| anyhow!("--node {node}: starting {role}: {e}"))?
            .map_err(|e| anyhow!("--node {node}: starting {role}: {e}"))?;
        hosts.push((role, host, handle));
    }
    Ok(hosts)
}

/// Runs worker `node` of the run `config` describes: joins the head at `head`, hosts `hosted`
/// (the generators' engines, judges and evaluator placed on `node`: [`hosted_on`], or a
/// multi-process bench's simulated ones), and returns when the head's session ends.
pub fn run_worker(
    config: RunConfig,
    config_path: &Path,
    hosted: Vec<(String, HostedRole, tch::Device)>,
    head: SocketAddr,
    node: &str,
) -> Result<()> {
    if hosted.is_empty() {
        bail!(
            "--node {node}: {} places no generator, judge or evaluator there (generator.nodes = {:?}, [[judge]] nodes = {:?})",
            config_path.display(),
            config.generator.nodes,
            config
                .judges
                .iter()
                .map(|j| j.node.as_deref().unwrap_or(HEAD_NODE))
                .collect::<Vec<_>>()
        );
    }
    let run = ClusterRun::new(config_path)?;
    let tls = config.cluster.tls()?;
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
        let cluster = ClusterNode::start(node, listen, run.cookie.as_ref(), tls.as_ref())
            .await
            .map_err(|e| anyhow!("--node {node}: {e}"))?;
        let join_timeout = Duration::from_secs_f64(config.cluster.join_timeout_s);
        let head_peer = cluster
            .join(head, join_timeout)
            .await
            .map_err(|e| anyhow!("--join {head}: {e}"))?;
        let weights_timeout = Duration::from_secs_f64(config.cluster.weights_timeout_s);
        let hosts = spawn_hosts(hosted, node, head, &run, weights_timeout).await?;
        let names: Vec<&str> = hosts.iter().map(|(role, ..)| role.as_str()).collect();
        println!(
            "worker {node}: joined the head at {head}; hosting {}",
            names.join(", ")
        );
        loop {
            tokio::select! {
                event = cluster.next_event() => match event {
                    // Only the head's session: anything else that connects to this worker's
                    // port and fails to authenticate ends a session too.
                    Some(NodeEvent::Disconnected { peer }) if peer == head_peer => {
                        println!("worker {node}: the head's session ended ({peer}); exiting");
                        break;
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    println!("worker {node}: interrupted; exiting");
                    break;
                }
            }
        }
        for (_, host, handle) in hosts {
            host.stop(None);
            let _ = handle.await;
        }
        cluster.stop();
        Ok(())
    })
}
