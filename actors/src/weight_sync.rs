//! Weight synchronisation: the learner snapshots its parameters as deep copies on a receiver's
//! device; the receiver copies them into its own parameters in place. Both sides are plain
//! tensor copies — `benchmarks/benches/weight_sync.rs` compares them with one raw copy of the
//! same bytes.

use crate::error::ActorError;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Deep copies of every parameter of `vars` on `device`, sorted by name, and their total bytes.
pub fn snapshot(vars: &VarStore, device: Device) -> (Vec<(String, Tensor)>, u64) {
    snapshot_into(vars, device, None)
}

/// As [`snapshot`], copying into `reuse` (an earlier snapshot handed back by its receiver) when
/// it matches the parameters' names, shapes, kinds and device; otherwise allocating.
pub fn snapshot_into(
    vars: &VarStore,
    device: Device,
    reuse: Option<Vec<(String, Tensor)>>,
) -> (Vec<(String, Tensor)>, u64) {
    let mut variables: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = variables
        .iter()
        .map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
        .sum();
    let fits = |reuse: &[(String, Tensor)]| {
        reuse.len() == variables.len()
            && reuse.iter().zip(&variables).all(|((n, r), (m, v))| {
                n == m && r.size() == v.size() && r.kind() == v.kind() && r.device() == device
            })
    };
    let tensors = match reuse {
        Some(mut reuse) if fits(&reuse) => {
            tch::no_grad(|| {
                for ((_, target), (_, source)) in reuse.iter_mut().zip(&variables) {
                    target.copy_(source);
                }
            });
            reuse
        }
        _ => variables
            .into_iter()
            .map(|(name, t)| (name, tch::no_grad(|| t.detach().to_device(device).copy())))
            .collect(),
    };
    (tensors, bytes)
}

/// Copies `tensors` into the parameters of `vars` in place (every name must exist).
pub fn apply(vars: &VarStore, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
    let variables = vars.variables();
    tch::no_grad(|| {
        for (name, tensor) in tensors {
            match variables.get(name) {
                Some(var) => {
                    let mut var = var.shallow_clone();
                    var.copy_(tensor);
                }
                None => {
                    return Err(ActorError::Weights(format!(
                        "weight update names unknown parameter {name}"
                    )))
                }
            }
        }
        Ok(())
    })
}

/// Copies the tensors of a safetensors file (a checkpoint's weights) into `vars` in place.
pub fn apply_file(vars: &VarStore, path: &std::path::Path) -> Result<(), ActorError> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| ActorError::Weights(format!("reading {}: {e}", path.display())))?;
    apply(vars, &tensors).map_err(|e| ActorError::Weights(format!("{}: {e}", path.display())))
}
