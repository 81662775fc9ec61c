//! Which transport carries weights to workers (`[weights] transport`).
//!
//! The pip torch wheel ships `libnccl.so.2` (and libtorch_cuda, which grlhf links, loads it), so
//! no CUDA toolkit is needed to open it (`crate::nccl`; `GRLHF_NCCL_LIBRARY` names another
//! file). The NCCL broadcast's pieces are built — bucket layouts (`crate::weight_buckets`), a
//! communicator in non-blocking mode and a per-bucket deadline with abort
//! (`crate::bucket_broadcast`) — but no run moves weights with them yet: only TCP carries weights
//! to workers. `auto` reports `tcp` with the reason (no CUDA device here, NCCL not found, or NCCL
//! found but not wired into runs), and `nccl` is refused when the config is read
//! (docs/distributed.md).

use serde::{Deserialize, Serialize};

/// `[weights] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightTransport {
    /// NCCL when both ends have CUDA and the library loads (once built), else TCP.
    #[default]
    Auto,
    Tcp,
    Nccl,
}

/// The transport a run uses, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransportChoice {
    pub setting: WeightTransport,
    pub chosen: WeightTransport,
    pub reason: String,
}

pub use crate::nccl::Nccl;

impl WeightTransport {
    /// Refuses a transport that cannot be used (`nccl`: not built), naming the setting.
    pub fn check(self) -> Result<(), String> {
        match self {
            WeightTransport::Nccl => Err("weights.transport = \"nccl\": NCCL does not carry weights in runs yet (docs/distributed.md); use \"tcp\" or \"auto\"".into()),
            WeightTransport::Auto | WeightTransport::Tcp => Ok(()),
        }
    }

    /// What this setting means on a head with (`cuda_here`) or without a CUDA device.
    pub fn choose(self, cuda_here: bool) -> Result<TransportChoice, String> {
        self.check()?;
        let reason = match self {
            WeightTransport::Tcp => "asked for".to_string(),
            _ => {
                let nccl = match Nccl::load() {
                    Ok(n) => {
                        let (a, b, c) = n.version;
                        format!("NCCL {a}.{b}.{c} opens ({}), but NCCL does not carry weights in runs yet", n.opened)
                    }
                    Err(e) => format!("NCCL is not available: {e}"),
                };
                let cuda = if cuda_here {
                    "a CUDA device is here"
                } else {
                    "no CUDA device here"
                };
                format!("auto: {cuda}; {nccl}")
            }
        };
        Ok(TransportChoice {
            setting: self,
            chosen: WeightTransport::Tcp,
            reason,
        })
    }
}
