//! Weight synchronisation: the learner snapshots its parameters as deep copies on a receiver's
//! device; the receiver copies them into its own parameters in place. Both sides are plain
//! tensor copies — `benchmarks/benches/weight_sync.rs` compares them with one raw copy of the
//! same bytes.

use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Deep copies of every parameter of `vars` on `device`, sorted by name, and their total bytes.
pub fn snapshot(vars: &VarStore, device: Device) -> (Vec<(String, Tensor)>, u64) {
    let mut bytes = 0u64;
    let mut tensors: Vec<(String, Tensor)> = vars
        .variables()
        .into_iter()
        .map(|(name, t)| {
            bytes += (t.numel() * t.kind().elt_size_in_bytes()) as u64;
            (name, tch::no_grad(|| t.detach().to_device(device).copy()))
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, bytes)
}

/// Copies `tensors` into the parameters of `vars` in place (every name must exist).
pub fn apply(vars: &VarStore, tensors: &[(String, Tensor)]) -> Result<(), String> {
    let variables = vars.variables();
    tch::no_grad(|| {
        for (name, tensor) in tensors {
            match variables.get(name) {
                Some(var) => {
                    let mut var = var.shallow_clone();
                    var.copy_(tensor);
                }
                None => return Err(format!("weight update names unknown parameter {name}")),
            }
        }
        Ok(())
    })
}
