//! A dedicated OS thread that owns a model and runs jobs on it.
//!
//! libtorch keeps grad mode and CUDA streams per thread, and a forward pass must never block
//! tokio's shared workers, so every model-owning actor keeps its model here and awaits jobs
//! through a channel. A job that panics is reported as an error; the thread and its model
//! survive it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

use crate::error::ActorError;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A thread owning a value of type `S` (a model and its companions).
pub struct DeviceWorker<S> {
    jobs: Option<flume::Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
    name: String,
}

impl<S: 'static> DeviceWorker<S> {
    /// Starts the thread and builds its state there with `init`; returns once `init` is done.
    pub fn spawn<E: Into<ActorError> + 'static>(
        name: &str,
        init: impl FnOnce() -> Result<S, E> + Send + 'static,
    ) -> Result<DeviceWorker<S>, ActorError> {
        let (jobs, queue) = flume::unbounded::<Job<S>>();
        let (ready_tx, ready_rx) = flume::bounded::<Result<(), ActorError>>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut state = match catch_unwind(AssertUnwindSafe(init)) {
                    Ok(Ok(state)) => {
                        let _ = ready_tx.send(Ok(()));
                        state
                    }
                    Ok(Err(e)) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                    Err(panic) => {
                        let _ = ready_tx.send(Err(ActorError::Thread(panic_message(&panic))));
                        return;
                    }
                };
                for job in queue.iter() {
                    job(&mut state);
                }
            })
            .map_err(|e| ActorError::Thread(format!("starting thread {name}: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| ActorError::Thread(format!("thread {name} ended during start-up")))??;
        Ok(DeviceWorker {
            jobs: Some(jobs),
            thread: Some(thread),
            name: name.to_string(),
        })
    }

    /// Runs `job` on the thread and awaits its result.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ActorError> {
        let (tx, rx) = flume::bounded::<Result<R, String>>(1);
        let wrapped: Job<S> = Box::new(move |state: &mut S| {
            let result =
                catch_unwind(AssertUnwindSafe(|| job(state))).map_err(|p| panic_message(&p));
            let _ = tx.send(result);
        });
        self.jobs
            .as_ref()
            .expect("jobs are open until drop")
            .send(wrapped)
            .map_err(|_| ActorError::Thread(format!("thread {} has stopped", self.name)))?;
        rx.recv_async()
            .await
            .map_err(|_| ActorError::Thread(format!("thread {} dropped a job", self.name)))?
            .map_err(|panic| ActorError::Thread(format!("thread {} panicked: {panic}", self.name)))
    }
}

impl<S> Drop for DeviceWorker<S> {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            // Joined to free the model before a restarted actor loads another. Dropped on a
            // worker of a multi-threaded tokio runtime (an actor's state), the wait moves that
            // worker's other tasks elsewhere first: a job still running may itself need the
            // runtime (a remote engine awaiting its worker's reply), and two joins on a
            // two-worker runtime would otherwise leave nothing to drive it.
            block_in_place_if_possible(|| thread.join().ok());
        }
    }
}

/// Runs a blocking `f`. On a worker of a multi-threaded tokio runtime, the worker's other tasks
/// move elsewhere first ([`tokio::task::block_in_place`]), so what `f` waits for can still run;
/// anywhere else (a plain thread, a current-thread runtime, where `block_in_place` would panic)
/// `f` just runs.
pub fn block_in_place_if_possible<R>(f: impl FnOnce() -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// What a caught panic said.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
