//! Collectives between ranks of one process, over channels: what the collective weight path
//! (`crate::remote_model`, `crate::role_host`) is tested with where there is no GPU, or only
//! one (NCCL refuses two ranks on one GPU). A broadcast's root sends a copy of its bucket to
//! every other rank; a receiver's `progress` copies it in when it arrives. Aborting one rank
//! fails the others' pending and later operations, as a remote error does in NCCL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::bucket_broadcast::{Collective, Collectives, Progress};

/// One communicator: a channel into each rank, and whether any rank aborted.
struct Group {
    nranks: i32,
    joined: Vec<i32>,
    senders: HashMap<i32, flume::Sender<Vec<u8>>>,
    aborted: Arc<AtomicBool>,
}

/// Makes in-process communicators; clones share them.
#[derive(Clone, Default)]
pub struct LoopbackCollectives {
    groups: Arc<Mutex<HashMap<String, Group>>>,
    next: Arc<AtomicU64>,
    /// No broadcast completes while set (a frozen link): for deadline tests.
    pub stall: Arc<AtomicBool>,
}

impl Collectives for LoopbackCollectives {
    fn about(&self) -> String {
        "loopback".into()
    }

    fn supports(&self, _device: Device) -> Result<(), String> {
        Ok(())
    }

    fn new_id(&self) -> Result<String, String> {
        Ok(format!(
            "loopback-{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn join(
        &self,
        id: &str,
        nranks: i32,
        rank: i32,
        _device: Device,
        deadline: Duration,
    ) -> Result<Box<dyn Collective + Send>, String> {
        let (tx, rx) = flume::unbounded();
        let aborted = {
            let mut groups = self.groups.lock().expect("loopback groups");
            let group = groups.entry(id.to_string()).or_insert_with(|| Group {
                nranks,
                joined: Vec::new(),
                senders: HashMap::new(),
                aborted: Arc::new(AtomicBool::new(false)),
            });
            if group.nranks != nranks || group.joined.contains(&rank) || rank >= nranks {
                return Err(format!("rank {rank} of {nranks} cannot join {id}"));
            }
            group.joined.push(rank);
            group.senders.insert(rank, tx);
            group.aborted.clone()
        };
        let until = Instant::now() + deadline;
        loop {
            let everyone = {
                let groups = self.groups.lock().expect("loopback groups");
                groups[id].joined.len() as i32 == nranks
            };
            if everyone {
                break;
            }
            if Instant::now() >= until {
                aborted.store(true, Ordering::Relaxed);
                return Err(format!("{id}: not every rank joined within {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let peers = {
            let groups = self.groups.lock().expect("loopback groups");
            groups[id]
                .senders
                .iter()
                .filter(|(r, _)| **r != rank)
                .map(|(_, s)| s.clone())
                .collect()
        };
        Ok(Box::new(LoopbackRank {
            rank,
            peers,
            inbox: rx,
            aborted,
            stall: self.stall.clone(),
            receiving: None,
        }))
    }
}

struct LoopbackRank {
    rank: i32,
    peers: Vec<flume::Sender<Vec<u8>>>,
    inbox: flume::Receiver<Vec<u8>>,
    aborted: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
    /// The bucket a receive writes into (sharing the caller's storage).
    receiving: Option<Tensor>,
}

impl Collective for LoopbackRank {
    fn start_broadcast(&mut self, bucket: &mut Tensor, root: i32) -> Result<(), String> {
        if self.aborted.load(Ordering::Relaxed) {
            return Err("a rank aborted the communicator".into());
        }
        if root == self.rank {
            let bytes = Vec::<u8>::try_from(&*bucket).map_err(|e| e.to_string())?;
            for peer in &self.peers {
                peer.send(bytes.clone())
                    .map_err(|_| "a rank left".to_string())?;
            }
            self.receiving = None;
        } else {
            self.receiving = Some(bucket.shallow_clone());
        }
        Ok(())
    }

    fn progress(&mut self) -> Progress {
        if self.aborted.load(Ordering::Relaxed) {
            return Progress::Failed("a rank aborted the communicator".into());
        }
        if self.stall.load(Ordering::Relaxed) {
            return Progress::Pending;
        }
        let Some(bucket) = &mut self.receiving else {
            return Progress::Done;
        };
        match self.inbox.try_recv() {
            Ok(bytes) if bytes.len() as i64 == bucket.numel() as i64 => {
                bucket.copy_(&Tensor::from_slice(&bytes));
                self.receiving = None;
                Progress::Done
            }
            Ok(bytes) => Progress::Failed(format!(
                "{} bytes broadcast into a bucket of {}",
                bytes.len(),
                bucket.numel()
            )),
            Err(flume::TryRecvError::Empty) => Progress::Pending,
            Err(flume::TryRecvError::Disconnected) => Progress::Failed("the root left".into()),
        }
    }

    fn abort(&mut self) {
        self.aborted.store(true, Ordering::Relaxed);
    }
}
