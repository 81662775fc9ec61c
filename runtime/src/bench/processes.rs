//! Bench runs across processes: a config that places generators or judges on worker nodes is
//! measured as a real multi-process run on this machine — the bench is the head, listening on
//! a free loopback port, and starts one worker process per node (copies of this program, as
//! `grlhf launch` does). Simulated workers host cost-model engines (`run --simulate`), and the
//! simulated learner then publishes a real tensor of the cost model's `weight_bytes`, so the
//! actor link, the wire codec and the TCP weight plane are all in the measurement.
//!
//! Both sides read one file, `RUN_DIR/bench-config.toml` (the variant as the bench changed it):
//! its SHA-256 is the run's config hash, checked when a worker attaches. Workers' output goes to
//! `RUN_DIR/worker-NODE.log`.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use grlhf_actors::simulated::CostModel;
use indicatif::ProgressBar;

use super::simulated_run::run_simulated;
use super::BenchRequest;
use crate::node_placement::worker_nodes;
use crate::run::RunOutcome;
use crate::run_config::RunConfig;
use crate::worker_processes::WorkerProcesses;

/// How long workers get to exit by themselves after the head's run ends.
const WORKER_GRACE: Duration = Duration::from_secs(30);

/// Whether `config` is measured across processes.
pub fn spans_processes(config: &RunConfig) -> bool {
    !worker_nodes(config).is_empty()
}

/// `config` with every role on the head: the same topology in one process, for comparison.
pub fn in_one_process(config: &RunConfig) -> RunConfig {
    let mut one = config.clone();
    one.generator.nodes.clear();
    for judge in &mut one.judges {
        judge.node = None;
    }
    if let Some(eval) = &mut one.evaluator {
        eval.node = None;
    }
    one
}

/// Runs `config` as a head on loopback with its workers as processes of `request.program`.
pub fn run_across_processes(
    request: &BenchRequest,
    config: &RunConfig,
    cost: Option<&CostModel>,
    bar: ProgressBar,
) -> Result<RunOutcome> {
    let dir = &config.run_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_file = dir.join("bench-config.toml");
    let text = toml::to_string_pretty(config).context("serialising the bench's config")?;
    std::fs::write(&config_file, text)
        .with_context(|| format!("writing {}", config_file.display()))?;
    // Read back, so head and workers hold exactly what the file says.
    let parsed = RunConfig::from_file(&config_file)?;
    let listen = SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    );
    let cost_file = dir.join("cost-model.json");
    if let Some(cost) = cost {
        std::fs::write(&cost_file, serde_json::to_string_pretty(cost)?)
            .with_context(|| format!("writing {}", cost_file.display()))?;
    }
    let join = |node: &str| -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "run".into(),
            config_file.clone().into(),
            "--join".into(),
            listen.to_string().into(),
            "--node".into(),
            node.into(),
        ];
        if cost.is_some() {
            args.extend(["--simulate".into(), cost_file.clone().into()]);
        }
        args
    };
    let nodes = worker_nodes(&parsed);
    let mut workers = WorkerProcesses::start(&request.program, &nodes, join, Some(dir))?;
    let registry = (request.registry)();
    let outcome = match cost {
        Some(cost) => run_simulated(&parsed, &config_file, &registry, cost, bar, Some(listen)),
        None => crate::run::run_as_head(parsed, &config_file, registry, false, None, listen),
    };
    let problems = workers.stop(WORKER_GRACE);
    let outcome = outcome.with_context(|| {
        format!(
            "the head of a multi-process bench run (workers' logs: {}/worker-*.log)",
            dir.display()
        )
    })?;
    if !problems.is_empty() {
        bail!(
            "{} (logs: {}/worker-*.log)",
            problems.join("; "),
            dir.display()
        );
    }
    Ok(outcome)
}
