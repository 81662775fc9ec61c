//! What crossing processes cost a run, per remote role (generator or judge): its node, calls,
//! and how the head's wall time of a call splits into the worker's own work (waiting for
//! weights, generating or scoring) and the rest — serialisation, the actor link, scheduling:
//! the control plane's overhead — and what the weight data plane moved. The head writes it into
//! `summary.json` (`remote_roles`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::weight_server::SubscriberStats;

/// One remote role over a run (summed over its engines or judges: a restart builds a new one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteRoleStats {
    pub node: String,
    /// Attaches to a worker (1, plus one per restart that reached a worker).
    pub attaches: u64,
    /// Requests served: generation batches, or groups scored.
    pub calls: u64,
    pub groups: u64,
    /// Head side: from sending a request to its reply decoded.
    pub call_s: f64,
    /// Worker side: waiting for the weights version a batch named, and applying it.
    pub worker_weights_s: f64,
    /// Worker side: generating or scoring.
    pub worker_compute_s: f64,
    /// `call_s` minus the worker's time, per group: what the process boundary costs.
    pub overhead_ms_per_group: f64,
    /// Weight versions sent to the worker, their bytes, the time writing them, and the rate.
    pub weight_versions: u64,
    pub weight_bytes: u64,
    pub weight_send_s: f64,
    pub weight_gb_per_s: f64,
    /// What carried the weights: `tcp`, or the collective (`NCCL 2.28.9 on Cuda(1)`); with
    /// `auto`, why a worker got TCP.
    #[serde(default)]
    pub weights_via: String,
}

#[derive(Default)]
struct Entry {
    stats: RemoteRoleStats,
    /// Each engine's weight server's cumulative figures, by engine.
    weights: BTreeMap<u64, (u64, u64, f64)>,
    /// Broadcast versions: count, bytes, seconds (head side, from packing to applied).
    broadcasts: (u64, u64, f64),
}

/// Shared by a head's remote engines; read once the run is over.
#[derive(Clone, Default)]
pub struct RemoteStats(Arc<Mutex<BTreeMap<String, Entry>>>);

/// One call as the head saw it.
pub struct CallTiming {
    pub groups: u64,
    pub call_s: f64,
    pub worker_weights_s: f64,
    pub worker_compute_s: f64,
}

impl RemoteStats {
    fn with(&self, role: &str, node: &str, update: impl FnOnce(&mut Entry)) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = all.entry(role.to_string()).or_default();
        entry.stats.node = node.to_string();
        update(entry);
    }

    pub fn attached(&self, role: &str, node: &str) {
        self.with(role, node, |e| e.stats.attaches += 1);
    }

    pub fn call(&self, role: &str, node: &str, t: CallTiming) {
        self.with(role, node, |e| {
            let s = &mut e.stats;
            s.calls += 1;
            s.groups += t.groups;
            s.call_s += t.call_s;
            s.worker_weights_s += t.worker_weights_s;
            s.worker_compute_s += t.worker_compute_s;
        });
    }

    /// The cumulative figures of engine `engine`'s weight server.
    pub fn weights(&self, role: &str, node: &str, engine: u64, subs: &[SubscriberStats]) {
        let versions = subs.iter().map(|s| s.versions_sent).sum();
        let bytes = subs.iter().map(|s| s.bytes_sent).sum();
        let send_s = subs.iter().map(|s| s.send_s).sum();
        self.with(role, node, |e| {
            e.weights.insert(engine, (versions, bytes, send_s));
        });
    }

    /// What carries role `role`'s weights.
    pub fn transport(&self, role: &str, node: &str, via: &str) {
        self.with(role, node, |e| e.stats.weights_via = via.to_string());
    }

    /// One version broadcast to role `role`'s worker.
    pub fn broadcast(&self, role: &str, node: &str, bytes: u64, seconds: f64) {
        self.with(role, node, |e| {
            e.broadcasts.0 += 1;
            e.broadcasts.1 += bytes;
            e.broadcasts.2 += seconds;
        });
    }

    /// Every remote role's figures, derived rates filled in.
    pub fn snapshot(&self) -> BTreeMap<String, RemoteRoleStats> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|(name, entry)| {
                let mut s = entry.stats.clone();
                let broadcast = std::iter::once(&entry.broadcasts);
                for (versions, bytes, send_s) in entry.weights.values().chain(broadcast) {
                    s.weight_versions += versions;
                    s.weight_bytes += bytes;
                    s.weight_send_s += send_s;
                }
                if s.weights_via.is_empty() && s.weight_versions > 0 {
                    s.weights_via = "tcp".into();
                }
                let worker_s = s.worker_weights_s + s.worker_compute_s;
                if s.groups > 0 {
                    s.overhead_ms_per_group = (s.call_s - worker_s) * 1e3 / s.groups as f64;
                }
                if s.weight_send_s > 0.0 {
                    s.weight_gb_per_s = s.weight_bytes as f64 / s.weight_send_s / 1e9;
                }
                (name.clone(), s)
            })
            .collect()
    }
}
