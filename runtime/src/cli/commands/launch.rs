//! `grlhf launch CONFIG`: a multi-process run on one machine, for trying a cluster config and
//! for single-box multi-process runs. It starts this same binary as the head
//! (`run CONFIG --listen 127.0.0.1:PORT`) and as one worker per node the config names
//! (`run CONFIG --join 127.0.0.1:PORT --node NAME`), waits for the head, then gives the
//! workers (which exit when the head's session ends) a moment before stopping them.
//! A user's own binary (docs/plugins.md) launches itself, so its kinds are there too.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::LaunchArgs;
use crate::cluster_config::HEAD_NODE;
use crate::run_config::RunConfig;

/// Starts the head and the workers, and ends with the head's status.
pub fn launch(args: LaunchArgs) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let generator_nodes = config.generator.nodes.iter().map(String::as_str);
    let judge_nodes = config.judges.iter().filter_map(|j| j.node.as_deref());
    let evaluator_node = config.evaluator.iter().filter_map(|e| e.node.as_deref());
    let nodes: BTreeSet<&str> = generator_nodes
        .chain(judge_nodes)
        .chain(evaluator_node)
        .filter(|n| *n != HEAD_NODE)
        .collect();
    if nodes.is_empty() {
        bail!(
            "{}: neither generator.nodes nor a [[judge]] or [evaluator] node places anything on a worker, so there is nothing to launch; `grlhf run {}` runs it in one process",
            args.config.display(),
            args.config.display()
        );
    }
    let port = match args.port {
        Some(port) => port,
        None => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let addr = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe().context("finding this program to start its processes")?;
    let config_path = args.config.to_string_lossy().into_owned();
    let mut head_args = vec!["run", &config_path, "--listen", &addr];
    if args.no_progress {
        head_args.push("--no-progress");
    }
    println!(
        "launching the head on {addr} and {} worker(s): {}",
        nodes.len(),
        nodes.iter().copied().collect::<Vec<_>>().join(", ")
    );
    let mut head = Command::new(&exe)
        .args(&head_args)
        .spawn()
        .context("starting the head")?;
    let mut workers = Vec::new();
    for node in &nodes {
        let worker = Command::new(&exe)
            .args(["run", &config_path, "--join", &addr, "--node", node])
            .spawn()
            .with_context(|| format!("starting worker {node}"));
        match worker {
            Ok(child) => workers.push((node.to_string(), child)),
            Err(e) => {
                let _ = head.kill();
                stop(&mut workers, Duration::ZERO);
                return Err(e);
            }
        }
    }
    let status = head.wait().context("waiting for the head")?;
    stop(&mut workers, Duration::from_secs(30));
    if !status.success() {
        bail!("the head exited with {status}");
    }
    Ok(())
}

/// Waits up to `grace` for the workers to exit by themselves, then kills the rest.
fn stop(workers: &mut [(String, Child)], grace: Duration) {
    let deadline = Instant::now() + grace;
    for (node, child) in workers.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    eprintln!("worker {node} exited with {status}");
                    break;
                }
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!("worker {node} did not exit; stopping it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}
