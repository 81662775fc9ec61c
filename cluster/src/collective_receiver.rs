//! A worker's end of collective weight broadcasts: the communicator it joined for its role and
//! the buckets it receives into (kept between versions while the layout stays the same), so a
//! role host only asks it to join and to receive a version.

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
        let buffer = reusable(&mut self.buffer, layout.largest(), device);
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

/// `kept` if it is a `u8` buffer of at least `bytes` on `device`, else a new one kept there.
pub fn reusable(kept: &mut Option<Tensor>, bytes: u64, device: Device) -> Tensor {
    let fits = kept
        .as_ref()
        .is_some_and(|b| b.numel() as u64 >= bytes && b.device() == device);
    if !fits {
        *kept = Some(Tensor::empty([bytes as i64], (tch::Kind::Uint8, device)));
    }
    kept.as_ref().expect("set above").shallow_clone()
}
