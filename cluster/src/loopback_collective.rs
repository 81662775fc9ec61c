//! Collectives between ranks of one process, over channels: what the collective weight path
//! (`crate::remote_model`, `crate::role_host`) is tested with where there is no GPU, or only
//! one (NCCL refuses two ranks on one GPU). Like NCCL: a broadcast's root completes only once
//! every other rank took the bucket; aborting is local (a peer learns nothing and waits until
//! its own deadline, or until its side is told to give up).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::bucket_broadcast::{Collective, Collectives, Progress};

/// A bucket on its way to one rank, and its sender's acknowledgement.
type Delivery = (Vec<u8>, flume::Sender<()>);

/// One communicator: the ranks that joined and a channel into each.
struct Group {
    nranks: i32,
    senders: HashMap<i32, flume::Sender<Delivery>>,
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
        peer_failed: &dyn Fn() -> Option<String>,
    ) -> Result<Box<dyn Collective + Send>, String> {
        let (tx, rx) = flume::unbounded();
        {
            let mut groups = self.groups.lock().expect("loopback groups");
            let group = groups.entry(id.to_string()).or_insert_with(|| Group {
                nranks,
                senders: HashMap::new(),
            });
            if group.nranks != nranks || group.senders.contains_key(&rank) || rank >= nranks {
                return Err(format!("rank {rank} of {nranks} cannot join {id}"));
            }
            group.senders.insert(rank, tx);
        }
        let member = Member {
            groups: self.groups.clone(),
            id: id.to_string(),
            rank,
        };
        let until = Instant::now() + deadline;
        // On an early return `member` drops and leaves the group, as a failed NCCL join does.
        let peers = loop {
            {
                let groups = self.groups.lock().expect("loopback groups");
                let group = &groups[id];
                if group.senders.len() as i32 == nranks {
                    break group
                        .senders
                        .iter()
                        .filter(|(r, _)| **r != rank)
                        .map(|(_, s)| s.clone())
                        .collect();
                }
            }
            if let Some(why) = peer_failed() {
                return Err(format!("{id}: the peer gave up ({why})"));
            }
            if Instant::now() >= until {
                return Err(format!("{id}: not every rank joined within {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        Ok(Box::new(LoopbackRank {
            _member: member,
            rank,
            peers,
            inbox: rx,
            aborted: false,
            stall: self.stall.clone(),
            pending: None,
        }))
    }
}

/// What a started broadcast waits for.
enum Pending {
    /// The root: every receiver's acknowledgement.
    Acks(flume::Receiver<()>, usize),
    /// A receiver: the bucket, into this tensor (sharing the caller's storage).
    Bucket(Tensor),
}

/// A rank's place in its group, given up when dropped: a peer joining later waits for a rank
/// that is gone and fails at its deadline, as in NCCL; an empty group is removed.
struct Member {
    groups: Arc<Mutex<HashMap<String, Group>>>,
    id: String,
    rank: i32,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(group) = groups.get_mut(&self.id) {
            group.senders.remove(&self.rank);
            if group.senders.is_empty() {
                groups.remove(&self.id);
            }
        }
    }
}

struct LoopbackRank {
    _member: Member,
    rank: i32,
    peers: Vec<flume::Sender<Delivery>>,
    inbox: flume::Receiver<Delivery>,
    aborted: bool,
    stall: Arc<AtomicBool>,
    pending: Option<Pending>,
}

impl Collective for LoopbackRank {
    fn start_broadcast(&mut self, bucket: &mut Tensor, root: i32) -> Result<(), String> {
        if self.aborted {
            return Err("the communicator was aborted".into());
        }
        if root == self.rank {
            let bytes = Vec::<u8>::try_from(&*bucket).map_err(|e| e.to_string())?;
            let (ack, acks) = flume::unbounded();
            for peer in &self.peers {
                peer.send((bytes.clone(), ack.clone()))
                    .map_err(|_| "a rank left".to_string())?;
            }
            self.pending = Some(Pending::Acks(acks, self.peers.len()));
        } else {
            self.pending = Some(Pending::Bucket(bucket.shallow_clone()));
        }
        Ok(())
    }

    fn progress(&mut self) -> Progress {
        if self.aborted {
            return Progress::Failed("the communicator was aborted".into());
        }
        if self.stall.load(Ordering::Relaxed) {
            return Progress::Pending;
        }
        match self.pending.take() {
            None => Progress::Done,
            Some(Pending::Acks(acks, left)) => {
                let left = left - acks.try_iter().count().min(left);
                if left == 0 {
                    return Progress::Done;
                }
                self.pending = Some(Pending::Acks(acks, left));
                Progress::Pending
            }
            Some(Pending::Bucket(mut bucket)) => match self.inbox.try_recv() {
                Ok((bytes, ack)) if bytes.len() == bucket.numel() => {
                    bucket.copy_(&Tensor::from_slice(&bytes));
                    let _ = ack.send(());
                    Progress::Done
                }
                Ok((bytes, _)) => Progress::Failed(format!(
                    "{} bytes broadcast into a bucket of {}",
                    bytes.len(),
                    bucket.numel()
                )),
                Err(flume::TryRecvError::Empty) => {
                    self.pending = Some(Pending::Bucket(bucket));
                    Progress::Pending
                }
                Err(flume::TryRecvError::Disconnected) => Progress::Failed("the root left".into()),
            },
        }
    }

    fn abort(&mut self) {
        self.aborted = true;
        self.pending = None;
    }
}
