//! Worker processes started on this machine: `grlhf launch` and a multi-process `grlhf bench`
//! start copies of this program as the workers of a run (`run CONFIG --join ADDR --node NAME`)
//! and stop them after the head. Workers exit by themselves when the head's session ends; one
//! that does not is killed after a grace period, and dropping the set kills whatever is left,
//! so an error on the head's side never leaves workers behind. Workers whose output goes to log
//! files are watched: one that fails during the run is reported at once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Workers of one run, by node name, and (with logs) a watcher that reports a worker that
/// fails while the run goes on.
pub struct WorkerProcesses {
    children: Arc<Mutex<Vec<(String, Child)>>>,
    watching: Arc<AtomicBool>,
    /// What the watcher reported.
    failures: Arc<Mutex<Vec<String>>>,
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
        let workers = WorkerProcesses {
            children: Arc::new(Mutex::new(Vec::new())),
            watching: Arc::new(AtomicBool::new(true)),
            failures: Arc::new(Mutex::new(Vec::new())),
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
            workers.lock().push((node.clone(), child));
        }
        if let Some(dir) = logs {
            workers.watch(dir.to_path_buf());
        }
        Ok(workers)
    }

    /// What the watcher reported so far.
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Child)>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports on this terminal, as soon as it happens, a worker that exits with a failure
    /// while the run goes on (its output is in a log file, not here): the head only notices
    /// when the worker's roles miss their attach deadline.
    fn watch(&self, logs: PathBuf) {
        let (children, watching) = (self.children.clone(), self.watching.clone());
        let failures = self.failures.clone();
        std::thread::spawn(move || {
            let mut reported = std::collections::BTreeSet::new();
            while watching.load(Ordering::Relaxed) {
                {
                    let mut children = children.lock().unwrap_or_else(|e| e.into_inner());
                    for (node, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            if !status.success() && reported.insert(node.clone()) {
                                let log = logs.join(format!("worker-{node}.log"));
                                let report = format!(
                                    "worker {node} exited with {status} while the run goes on (see {}); the head stops once its roles miss [cluster] attach_timeout_s",
                                    log.display()
                                );
                                eprintln!("{report}");
                                failures
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(report);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
    }

    /// Waits up to `grace` for the workers to exit by themselves, then kills the rest; returns
    /// what went wrong with each (a failed exit, a kill).
    pub fn stop(&mut self, grace: Duration) -> Vec<String> {
        self.watching.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + grace;
        let mut problems = Vec::new();
        let mut children = self.lock();
        for (node, child) in children.iter_mut() {
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
        children.clear();
        problems
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        self.watching.store(false, Ordering::Relaxed);
        for (_, child) in self.lock().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_fails_during_the_run_is_reported_at_once_and_on_stop() {
        let logs = tempfile::tempdir().unwrap();
        let nodes = ["w1".to_string(), "w2".to_string()];
        let script = |node: &str| -> Vec<OsString> {
            let code = if node == "w1" { "exit 3" } else { "sleep 30" };
            vec!["-c".into(), code.into()]
        };
        let mut workers =
            WorkerProcesses::start(Path::new("/bin/sh"), &nodes, script, Some(logs.path()))
                .unwrap();
        let started = Instant::now();
        while workers.failures().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "not reported");
            std::thread::sleep(Duration::from_millis(20));
        }
        let reported = workers.failures();
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(
            reported[0].starts_with("worker w1 exited with exit status: 3"),
            "{reported:?}"
        );
        assert!(reported[0].contains("worker-w1.log"), "{reported:?}");
        // w2 does not exit by itself: stopped after the grace period, and both are said.
        let problems = workers.stop(Duration::from_millis(100));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].contains("worker w2 did not exit; stopped it"),
            "{problems:?}"
        );
    }
}
