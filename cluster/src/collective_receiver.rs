//! A worker's end of collective weight broadcasts: the communicator it joined for its role and
//! the buckets it receives into (kept between versions while the layout stays the same), so a
//! role host only asks it to join and to receive a version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::bucket_broadcast::{broadcast_each, Collective, Collectives};
use crate::weight_buckets::BucketLayout;

/// The worker side of one role's collective.
#[derive(Default)]
pub struct CollectiveReceiver {
    collective: Option<Box<dyn Collective + Send>>,
    /// One bucket's worth of device memory, reused for every bucket of every version.
    buffer: Option<Tensor>,
}

impl CollectiveReceiver {
    /// Joins `id` as `rank` of `nranks` on `device`, replacing any earlier communicator.
    pub fn join(
        &mut self,
        collectives: &Arc<dyn Collectives>,
        (id, nranks, rank): (&str, i32, i32),
        device: Device,
        deadline: Duration,
        gave_up: &dyn Fn() -> Option<String>,
    ) -> Result<(), String> {
        // The old communicator (a restarted head role's) is finalised or aborted first; that
        // may take up to 10 s when its peer is gone.
        self.collective = None;
        let joined = collectives.join(id, nranks, rank, device, deadline, gave_up)?;
        self.collective = Some(joined);
        Ok(())
    }

    /// Receives one version laid out as `layout` from rank 0 onto `device`, bucket by bucket
    /// through one reused buffer, each within `per_bucket` (or until `gave_up` reports the head
    /// abandoned it); returns its tensors and the seconds it took. A failure drops the
    /// communicator (it was aborted): the head joins a new one.
    pub fn receive(
        &mut self,
        layout: &BucketLayout,
        (device, per_bucket): (Device, Duration),
        gave_up: &dyn Fn() -> Option<String>,
    ) -> Result<(Vec<(String, Tensor)>, f64), String> {
        let started = Instant::now();
        let Some(collective) = self.collective.as_mut() else {
            return Err("weights broadcast before a communicator was joined".into());
        };
        // The layout came over the wire: checked before a byte is allocated for it. A bad one
        // fails this version; the head is waiting in the broadcast, so it is aborted too.
        let buffer = match layout
            .validate()
            .and_then(|()| reusable(&mut self.buffer, layout.largest(), device))
        {
            Ok(buffer) => buffer,
            Err(why) => {
                collective.abort();
                self.collective = None;
                return Err(format!("weights layout: {why}"));
            }
        };
        let mut tensors = Vec::with_capacity(layout.entries.len());
        let count = layout.buckets.len();
        let received = broadcast_each(
            collective.as_mut(),
            (count, 0, per_bucket),
            gave_up,
            |i| Ok(buffer.narrow(0, 0, layout.buckets[i] as i64)),
            |i, view| {
                tensors.extend(layout.unpack_bucket(i, view)?);
                Ok(())
            },
        );
        if let Err(e) = received {
            self.collective = None;
            return Err(e.to_string());
        }
        Ok((tensors, started.elapsed().as_secs_f64()))
    }
}

/// `kept` if it is a `u8` buffer of at least `bytes` on `device`, else a new one kept there
/// (`Err` when it cannot be allocated).
pub fn reusable(kept: &mut Option<Tensor>, bytes: u64, device: Device) -> Result<Tensor, String> {
    let fits = kept
        .as_ref()
        .is_some_and(|b| b.numel() as u64 >= bytes && b.device() == device);
    if !fits {
        *kept = None;
        let size = i64::try_from(bytes).map_err(|_| format!("a buffer of {bytes} bytes"))?;
        let made = Tensor::f_empty([size], (tch::Kind::Uint8, device))
            .map_err(|e| format!("allocating a {bytes}-byte buffer on {device:?}: {e}"))?;
        *kept = Some(made);
    }
    Ok(kept.as_ref().expect("set above").shallow_clone())
}

/// The worker's record of the head's collective requests: the newest one seen and the newest
/// one abandoned.
#[derive(Default)]
pub struct CollectiveSeqs {
    latest: AtomicU64,
    abandoned_upto: AtomicU64,
}

impl CollectiveSeqs {
    /// A request numbered `seq` arrived.
    pub fn arrived(&self, seq: u64) {
        self.latest.fetch_max(seq, Ordering::Relaxed);
    }

    /// The head abandoned request `seq` (and so every older one).
    pub fn abandon(&self, seq: u64) {
        self.abandoned_upto.fetch_max(seq, Ordering::Relaxed);
    }

    /// Whether operation `seq` should stop waiting, and why.
    pub fn given_up(self: &Arc<Self>, seq: u64) -> impl Fn() -> Option<String> {
        let seqs = self.clone();
        move || {
            if seqs.abandoned_upto.load(Ordering::Relaxed) >= seq {
                Some("the head abandoned it".into())
            } else if seqs.latest.load(Ordering::Relaxed) > seq {
                Some("a newer request from the head replaced it".into())
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandon_holds_whatever_order_it_arrives_in_and_newer_requests_replace_older() {
        let seqs = Arc::new(CollectiveSeqs::default());
        // The abandon of request 5 overtakes the request itself.
        seqs.abandon(5);
        seqs.arrived(5);
        assert!(seqs.given_up(5)().unwrap().contains("abandoned"));
        // A newer request is not affected by an older abandon…
        seqs.arrived(6);
        assert_eq!(seqs.given_up(6)(), None);
        // …and a newer arrival ends a still-running older one.
        let fresh = Arc::new(CollectiveSeqs::default());
        fresh.arrived(7);
        let older = fresh.given_up(7);
        assert_eq!(older(), None);
        fresh.arrived(8);
        assert!(older().unwrap().contains("newer request"));
        seqs.abandon(3);
        assert_eq!(seqs.given_up(6)(), None, "abandons only go forward");
    }
}
