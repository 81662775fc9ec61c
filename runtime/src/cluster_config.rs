//! `[cluster]`, `[generator] nodes` and `[[judge]] node`: which generators and judges run on
//! which worker node, and the deadlines of the calls between a head and its workers
//! (docs/distributed.md).
//!
//! A config places generator `g` on node `nodes[g]` (one entry for all, or one per generator;
//! `head`, or no `nodes` at all, keeps it in the head's process), and every judge of a
//! `[[judge]]` table on its `node`. The head is started with
//! `grlhf run CONFIG --listen ADDR:PORT`, each worker with
//! `grlhf run CONFIG --join HEAD:PORT --node NAME`, from the same config file: its SHA-256 is
//! part of the identity both sides check.

use std::time::Duration;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use grlhf_cluster::remote_call::RemoteTimeouts;
use grlhf_cluster::tls::{ClusterTls, TlsFiles};
use grlhf_cluster::transport::WeightTransport;
use serde::{Deserialize, Serialize};

/// `[weights]`: how weights reach generators on workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightsConfig {
    /// `auto` (default), `tcp` or `nccl` (`grlhf_cluster::transport`): NCCL broadcasts from the
    /// learner's GPU to each worker that can join, TCP streams otherwise; `summary.json` says
    /// which each remote role got (`remote_roles.*.weights_via`) and why.
    pub transport: WeightTransport,
    /// Largest broadcast bucket, MiB (NCCL): a snapshot is sent as this many bytes at a time,
    /// each within `[cluster] weights_timeout_s`.
    pub bucket_mib: u64,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig {
            transport: WeightTransport::Auto,
            bucket_mib: 256,
        }
    }
}

/// The node name that means "in the head's own process".
pub const HEAD_NODE: &str = "head";

/// `[cluster]`: deadlines of remote calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// While a remote batch runs, the head pings its worker this often...
    pub heartbeat_every_s: f64,
    /// ...and this many unanswered pings in a row declare the worker dead (frozen or gone):
    /// its generator fails and restarts, and its prompts are issued again.
    pub heartbeat_misses: u32,
    /// How long a (re)starting remote role waits for its worker to join and load its model
    /// (a generator's first batch, a judge's first group).
    pub attach_timeout_s: f64,
    /// The longest one remote generation batch may take.
    pub batch_timeout_s: f64,
    /// How long a worker waits for the weights version a batch needs.
    pub weights_timeout_s: f64,
    /// How long a worker keeps trying to reach the head (it may start first) and waits for
    /// its session to be authenticated.
    pub join_timeout_s: f64,
    /// Mutual TLS for the actor link: this node's certificate chain and key, and the cluster's
    /// CA (PEM files; all three or none; `grlhf_cluster::tls`). Every node reads the same config
    /// text (its hash is checked), so write node-specific files as `env:NAME` paths.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// The name the head's certificate must carry (default: the IP address workers dial).
    pub tls_server_name: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat_every_s: 2.0,
            heartbeat_misses: 3,
            attach_timeout_s: 300.0,
            batch_timeout_s: 1800.0,
            weights_timeout_s: 120.0,
            join_timeout_s: 30.0,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<()> {
        let seconds = [
            ("cluster.heartbeat_every_s", self.heartbeat_every_s),
            ("cluster.attach_timeout_s", self.attach_timeout_s),
            ("cluster.batch_timeout_s", self.batch_timeout_s),
            ("cluster.weights_timeout_s", self.weights_timeout_s),
            ("cluster.join_timeout_s", self.join_timeout_s),
        ];
        for (field, value) in seconds {
            // Bounded both ways: a zero interval makes no timer, and beyond ~115 days a
            // deadline overflows the clock's arithmetic.
            if !(1e-3..=1e7).contains(&value) {
                bail!("{field} = {value}: give a number of seconds between 0.001 and 10000000");
            }
        }
        if self.heartbeat_misses == 0 {
            bail!("cluster.heartbeat_misses = 0: at least one ping must go unanswered");
        }
        let tls = [&self.tls_cert, &self.tls_key, &self.tls_ca];
        if tls.iter().any(|f| f.is_some()) && !tls.iter().all(|f| f.is_some()) {
            bail!("cluster.tls_cert, tls_key, tls_ca: give all three (TLS) or none");
        }
        if self.tls_server_name.is_some() && self.tls_cert.is_none() {
            bail!("cluster.tls_server_name: set without TLS (tls_cert, tls_key, tls_ca)");
        }
        Ok(())
    }

    /// The TLS settings, loaded (files read and checked), when configured.
    pub fn tls(&self) -> Result<Option<ClusterTls>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        let tls = ClusterTls::load(&files, self.tls_server_name.clone())
            .map_err(|e| anyhow!("[cluster] TLS: {e}"))?;
        Ok(Some(tls))
    }

    pub fn remote_timeouts(&self) -> RemoteTimeouts {
        RemoteTimeouts {
            attach: Duration::from_secs_f64(self.attach_timeout_s),
            batch: Duration::from_secs_f64(self.batch_timeout_s),
            heartbeat_every: Duration::from_secs_f64(self.heartbeat_every_s),
            heartbeat_misses: self.heartbeat_misses,
        }
    }
}

/// Checks `[generator] nodes` against the generator count: one entry, or one per generator,
/// each a plain name.
pub fn validate_nodes(nodes: &[String], count: usize) -> Result<()> {
    if !nodes.is_empty() && nodes.len() != 1 && nodes.len() != count {
        bail!("generator.nodes: give one node, or one per generator ({count})");
    }
    for node in nodes {
        validate_node("generator.nodes", node)?;
    }
    Ok(())
}

/// A node name: letters, digits, `-`, `_`, `.` (`head` for the head).
pub fn validate_node(field: &str, node: &str) -> Result<()> {
    let plain = !node.is_empty()
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !plain {
        bail!("{field}: `{node}` is not a node name (letters, digits, `-`, `_`, `.`; `{HEAD_NODE}` for the head)");
    }
    Ok(())
}

/// The worker a role's `node` setting names (a `[[judge]]` table's, the evaluator's); `None`:
/// the head's process.
pub fn worker_node(node: &Option<String>) -> Option<&str> {
    node.as_deref().filter(|n| *n != HEAD_NODE)
}

/// The `[[judge]]` table a judge came from, by its name (`judge-{table}-{copy}`).
pub fn judge_table(name: &str) -> Option<usize> {
    name.strip_prefix("judge-")?.split('-').next()?.parse().ok()
}

/// The node generator `index` runs on; `None`: the head's process.
pub fn node_of(nodes: &[String], index: usize) -> Option<&str> {
    let node = match nodes.len() {
        0 => return None,
        1 => &nodes[0],
        _ => &nodes[index],
    };
    (node != HEAD_NODE).then_some(node.as_str())
}
