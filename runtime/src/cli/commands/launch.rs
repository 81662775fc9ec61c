//! `grlhf launch CONFIG`: a multi-process run on one machine, for trying a cluster config and
//! for single-box multi-process runs. It starts this same binary as the head
//! (`run CONFIG --listen 127.0.0.1:PORT`) and as one worker per node the config names
//! (`run CONFIG --join 127.0.0.1:PORT --node NAME`), waits for the head, then gives the
//! workers (which exit when the head's session ends) a moment before stopping them.
//! A user's own binary (docs/plugins.md) launches itself, so its kinds are there too.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::LaunchArgs;
use crate::node_placement::worker_nodes;
use crate::run_config::RunConfig;
use crate::worker_processes::WorkerProcesses;

/// Starts the head and the workers, and ends with the head's status.
pub fn launch(args: LaunchArgs) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let nodes = worker_nodes(&config);
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
        nodes.join(", ")
    );
    let mut head = Command::new(&exe)
        .args(&head_args)
        .spawn()
        .context("starting the head")?;
    let join = |node: &str| -> Vec<OsString> {
        ["run", &config_path, "--join", &addr, "--node", node]
            .map(OsString::from)
            .into()
    };
    let mut workers = match WorkerProcesses::start(&exe, &nodes, join, None) {
        Ok(workers) => workers,
        Err(e) => {
            let _ = head.kill();
            let _ = head.wait();
            return Err(e);
        }
    };
    let status = head.wait().context("waiting for the head")?;
    for problem in workers.stop(Duration::from_secs(30)) {
        eprintln!("{problem}");
    }
    if !status.success() {
        bail!("the head exited with {status}");
    }
    Ok(())
}
