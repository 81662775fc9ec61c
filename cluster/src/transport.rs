//! Which transport carries weights to workers (`[weights] transport`), decided on the head.
//!
//! - `tcp`: every remote model's own weight stream (`crate::weight_server`).
//! - `nccl`: a broadcast from the learner's GPU to each worker's (`crate::collective_sender`),
//!   through the wheel's `libnccl.so.2` opened at run time (`crate::nccl`; no CUDA toolkit;
//!   `GRLHF_NCCL_LIBRARY` names another file). The head needs a CUDA learner device and NCCL,
//!   and every worker must be able to join, or the run stops naming the setting.
//! - `auto` (default): NCCL where the head can and a worker can (its device a GPU, NCCL opens,
//!   the join succeeds — NCCL refuses two ranks on one GPU), TCP for the others; each remote
//!   role's `weights_via` in `summary.json` says which, and why not NCCL.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Device;

/// `[weights] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightTransport {
    /// NCCL where both ends have CUDA and the library loads, else TCP.
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
    /// What this setting means on a head whose learner is on `head_device`: the choice (for
    /// `summary.json`) and, when broadcasts may be used, NCCL opened. `nccl` where it cannot
    /// be used is an error naming the setting.
    pub fn choose(
        self,
        head_device: Device,
    ) -> Result<(TransportChoice, Option<Arc<Nccl>>), String> {
        let choice = |chosen, reason: String| TransportChoice {
            setting: self,
            chosen,
            reason,
        };
        if self == WeightTransport::Tcp {
            return Ok((choice(WeightTransport::Tcp, "asked for".into()), None));
        }
        let setting = match self {
            WeightTransport::Nccl => "nccl",
            _ => "auto",
        };
        let why = if !matches!(head_device, Device::Cuda(_)) {
            format!("the learner is on {head_device:?}, not a CUDA device")
        } else {
            match Nccl::load() {
                Ok(nccl) => {
                    let (a, b, c) = nccl.version;
                    let reason = format!(
                        "{setting}: the learner is on {head_device:?} and NCCL {a}.{b}.{c} opens ({}); each worker that can join gets broadcasts",
                        nccl.opened
                    );
                    return Ok((choice(WeightTransport::Nccl, reason), Some(Arc::new(nccl))));
                }
                Err(e) => format!("NCCL is not available: {e}"),
            }
        };
        if self == WeightTransport::Nccl {
            return Err(format!(
                "weights.transport = \"nccl\": {why}; use \"auto\" or \"tcp\""
            ));
        }
        Ok((choice(WeightTransport::Tcp, format!("auto: {why}")), None))
    }
}
