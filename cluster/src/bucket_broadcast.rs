//! Broadcasting a snapshot's buckets with a deadline per bucket: each bucket's broadcast is
//! started, then polled until it completes, fails, or runs past its deadline, when the
//! communicator is aborted — a peer that died or froze mid-broadcast must cost one deadline, not
//! hang the learner. The collective is a trait so this logic is tested without a GPU; the
//! NCCL communicator (`crate::nccl`) is the real one.

use std::time::{Duration, Instant};

use grlhf_actors::device_worker::panic_message;
use tch::{Device, Tensor};

/// Where a started collective stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Done,
    Pending,
    Failed(String),
}

/// A communicator that can broadcast one byte buffer at a time.
pub trait Collective {
    /// Starts broadcasting `bucket` from rank `root` (in place: the root sends it, the others
    /// receive into it). Returns once the work is queued.
    fn start_broadcast(&mut self, bucket: &mut Tensor, root: i32) -> Result<(), String>;
    /// Whether the started broadcast has completed; never blocks.
    fn progress(&mut self) -> Progress;
    /// Abandons the communicator: pending work is cancelled, later calls fail.
    fn abort(&mut self);
}

/// Makes communicators: the NCCL library (`crate::nccl::NcclCollectives`), or in-process
/// channels (`crate::loopback_collective`, for tests). The head makes an id per remote model;
/// it and the worker join it as ranks 0 and 1.
pub trait Collectives: Send + Sync {
    /// What carries the bytes (`NCCL 2.28.9`), for `summary.json`.
    fn about(&self) -> String;
    /// Whether a rank on `device` can join; `Err` says why not.
    fn supports(&self, device: Device) -> Result<(), String>;
    /// A new communicator's id, as text for a control message.
    fn new_id(&self) -> Result<String, String>;
    /// Joins communicator `id` as `rank` of `nranks` on `device`, waiting at most `deadline`
    /// for every rank, or until `peer_failed` reports why the other side gave up.
    fn join(
        &self,
        id: &str,
        nranks: i32,
        rank: i32,
        device: Device,
        deadline: Duration,
        peer_failed: &dyn Fn() -> Option<String>,
    ) -> Result<Box<dyn Collective + Send>, String>;
}

/// Why a broadcast did not complete. The communicator has been aborted either way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BroadcastError {
    #[error("weight bucket {bucket} of {buckets} ({bytes} bytes) did not arrive within {deadline:?}; the communicator was aborted")]
    Timeout {
        bucket: usize,
        buckets: usize,
        bytes: i64,
        deadline: Duration,
    },
    #[error("weight bucket {bucket} of {buckets}: {why}; the communicator was aborted")]
    Failed {
        bucket: usize,
        buckets: usize,
        why: String,
    },
}

/// What a completed broadcast moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BroadcastStats {
    pub buckets: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Broadcasts every bucket from `root`, one after another, each within `per_bucket`.
pub fn broadcast_buckets(
    collective: &mut dyn Collective,
    buckets: &mut [Tensor],
    root: i32,
    per_bucket: Duration,
) -> Result<BroadcastStats, BroadcastError> {
    let count = buckets.len();
    let views: Vec<Tensor> = buckets.iter().map(Tensor::shallow_clone).collect();
    let mut views = views.into_iter();
    broadcast_each(
        collective,
        (count, root, per_bucket),
        &|| None,
        |_| Ok(views.next().expect("one view per bucket")),
        |_, _| Ok(()),
    )
}

/// Broadcasts `count` buckets from `root`, one at a time, each within `per_bucket`:
/// `bucket(i)` gives the buffer to broadcast (the root fills it first; a reused buffer keeps
/// memory at one bucket), and `done(i, buffer)` runs once it completed (a receiver unpacks).
/// A failure in either, like the collective's own, aborts the communicator: the peers are
/// waiting in the same broadcast. So does `peer_failed` reporting that the other side gave up
/// (its answer came back a failure): an abort is not guaranteed to reach a peer, and waiting
/// out every bucket's deadline for one that left would cost each of them.
pub fn broadcast_each(
    collective: &mut dyn Collective,
    (count, root, per_bucket): (usize, i32, Duration),
    peer_failed: &dyn Fn() -> Option<String>,
    mut bucket: impl FnMut(usize) -> Result<Tensor, String>,
    mut done: impl FnMut(usize, &Tensor) -> Result<(), String>,
) -> Result<BroadcastStats, BroadcastError> {
    let started = Instant::now();
    let mut bytes = 0u64;
    for i in 0..count {
        let fail = |collective: &mut dyn Collective, why: String| {
            collective.abort();
            BroadcastError::Failed {
                bucket: i,
                buckets: count,
                why,
            }
        };
        let mut buffer = match caught(|| bucket(i)) {
            Ok(buffer) => buffer,
            Err(why) => return Err(fail(collective, why)),
        };
        let size = buffer.numel() as i64;
        if let Err(why) = collective.start_broadcast(&mut buffer, root) {
            return Err(fail(collective, why));
        }
        let deadline = Instant::now() + per_bucket;
        let mut spins = 0u32;
        loop {
            match collective.progress() {
                Progress::Done => break,
                Progress::Failed(why) => return Err(fail(collective, why)),
                Progress::Pending if spins >= 64 && peer_failed().is_some() => {
                    let why = peer_failed().unwrap_or_default();
                    return Err(fail(collective, format!("the peer gave up: {why}")));
                }
                Progress::Pending if Instant::now() >= deadline => {
                    collective.abort();
                    return Err(BroadcastError::Timeout {
                        bucket: i,
                        buckets: count,
                        bytes: size,
                        deadline: per_bucket,
                    });
                }
                // Spin briefly (a bucket often completes within microseconds), then sleep.
                Progress::Pending if spins < 64 => {
                    spins += 1;
                    std::thread::yield_now();
                }
                Progress::Pending => std::thread::sleep(Duration::from_micros(100)),
            }
        }
        if let Err(why) = caught(|| done(i, &buffer)) {
            return Err(fail(collective, why));
        }
        bytes += size as u64;
    }
    Ok(BroadcastStats {
        buckets: count,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `f()`, with a panic turned into an error: the communicator must still be aborted (a peer is
/// waiting in the same broadcast), and torch panics on what it cannot do.
fn caught<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&panic))))
}
