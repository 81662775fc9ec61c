//! Worker processes started on this machine: `grlhf launch` and a multi-process `grlhf bench`
//! start copies of this program as the workers of a run (`run CONFIG --join ADDR --node NAME`)
//! and stop them after the head. Workers exit by themselves when the head's session ends; one
//! that does not is killed after a grace period, and dropping the set kills whatever is left,
//! so an error on the head's side never leaves workers behind.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Workers of one run, by node name.
pub struct WorkerProcesses {
    children: Vec<(String, Child)>,
}

impl WorkerProcesses {
    /// Starts `program` once per node with `args(node)`. With `logs`, each worker's output goes
    /// to `logs/worker-NODE.log` instead of this terminal.
    pub fn start(
        program: &Path,
        nodes: &[String],
        args: impl Fn(&str) -> Vec<OsString>,
        logs: Option<&Path>,
    ) -> Result<WorkerProcesses> {
        let mut workers = WorkerProcesses {
            children: Vec::new(),
        };
        for node in nodes {
            let mut command = Command::new(program);
            command.args(args(node));
            if let Some(dir) = logs {
                let path = dir.join(format!("worker-{node}.log"));
                let log = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            command.stdin(Stdio::null());
            // On error the workers started so far are killed when `workers` drops.
            let child = command
                .spawn()
                .with_context(|| format!("starting worker {node} ({})", program.display()))?;
            workers.children.push((node.clone(), child));
        }
        Ok(workers)
    }

    /// Waits up to `grace` for the workers to exit by themselves, then kills the rest; returns
    /// what went wrong with each (a failed exit, a kill).
    pub fn stop(&mut self, grace: Duration) -> Vec<String> {
        let deadline = Instant::now() + grace;
        let mut problems = Vec::new();
        for (node, child) in self.children.iter_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        problems.push(format!("worker {node} exited with {status}"));
                        break;
                    }
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        problems.push(format!("worker {node} did not exit; stopped it"));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.children.clear();
        problems
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
