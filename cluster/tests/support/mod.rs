//! What the in-process head-and-host tests share: a runtime, a run identity, and the head's
//! link to a role on worker `w1`.

use std::sync::Arc;
use std::time::Duration;

use grlhf_cluster::incarnations::Incarnations;
use grlhf_cluster::remote_call::{RemoteRole, RemoteTimeouts};
use grlhf_cluster::RunIdentity;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `run` with a config whose text is `config` (hosts compare the hash).
pub fn identity(run: &str, config: &str) -> RunIdentity {
    RunIdentity::new(run, RunIdentity::hash_config(config))
}

/// The head's link to `role` on worker `w1`: it gives up attaching after `attach`, and
/// heartbeats every 100 ms (3 misses are a dead worker).
pub fn link(
    role: &str,
    identity: RunIdentity,
    attach: Duration,
    runtime: &tokio::runtime::Runtime,
) -> Arc<RemoteRole> {
    Arc::new(RemoteRole {
        role: role.into(),
        node: "w1".into(),
        identity,
        incarnation: 1,
        cookie: None,
        timeouts: RemoteTimeouts {
            attach,
            batch: Duration::from_secs(30),
            heartbeat_every: Duration::from_millis(100),
            heartbeat_misses: 3,
        },
        runtime: runtime.handle().clone(),
        hosts_seen: Incarnations::default(),
    })
}
