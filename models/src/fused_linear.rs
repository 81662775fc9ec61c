//! One matmul for projections that read the same input: q/k/v, and gate/up.
//!
//! Checkpoints, the optimiser and weight sync all see Hugging Face's separate parameters
//! (`q_proj.weight`, `k_proj.weight`, ...). [`FusedLinear::bind`] allocates one buffer and
//! re-points those parameters at consecutive slices of it, so the fused weight *is* the
//! separate weights: loading, optimiser steps and weight updates (all in-place copies) write
//! through to it, and it costs no extra memory.
//!
//! Inference (no gradient being recorded) runs the one matmul and splits its output, which saves
//! a dispatch (and on a GPU a kernel launch) per extra projection per layer: decode steps at small
//! batch are bound by exactly that. Training runs the separate projections, because autograd
//! must see the leaf parameters. On the CPU both give the same bits (`tests/fused.rs`); on a
//! GPU cuBLAS may pick different kernels for the wider matrix, so they agree to rounding
//! (`scripts/gpu-check.sh` runs the same test there with a tolerance).
//!
//! Anything that replaces a parameter's storage instead of copying into it (`VarStore::set_kind`
//! or a device move after construction) breaks the sharing; [`FusedLinear::is_bound`] detects it
//! and the model refuses to run inference on stale weights.

use tch::nn;
use tch::Tensor;

use crate::error::ModelError;

/// Several linear layers with one input, stored as one `[sum of outputs, input]` weight.
#[derive(Debug)]
pub(crate) struct FusedLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// Output width of each part, in order.
    sizes: Vec<i64>,
}

impl FusedLinear {
    /// Moves the parts' weights (and biases, when every part has one) into one buffer and
    /// points each part's parameters at its slice of it. Values are kept.
    pub(crate) fn bind(parts: &mut [&mut nn::Linear]) -> FusedLinear {
        let sizes: Vec<i64> = parts.iter().map(|p| p.ws.size()[0]).collect();
        let weight =
            tch::no_grad(|| Tensor::cat(&parts.iter().map(|p| &p.ws).collect::<Vec<_>>(), 0));
        let with_bias = parts.iter().all(|p| p.bs.is_some());
        assert!(
            with_bias || parts.iter().all(|p| p.bs.is_none()),
            "fused projections need a bias on every part or on none"
        );
        let bias = with_bias.then(|| {
            tch::no_grad(|| {
                let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.bs.as_ref()).collect();
                Tensor::cat(&biases, 0)
            })
        });
        let mut offset = 0;
        for (part, &size) in parts.iter_mut().zip(&sizes) {
            // `set_data` swaps the storage under the parameter's own handle, which the var
            // store shares: the parameter keeps its name, leaf status and requires_grad.
            part.ws.set_data(&weight.narrow(0, offset, size));
            if let (Some(bs), Some(bias)) = (part.bs.as_mut(), bias.as_ref()) {
                bs.set_data(&bias.narrow(0, offset, size));
            }
            offset += size;
        }
        FusedLinear {
            weight,
            bias,
            sizes,
        }
    }

    /// All parts' outputs side by side on the last dimension.
    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }

    /// Output widths of the parts, in order.
    pub(crate) fn sizes(&self) -> &[i64] {
        &self.sizes
    }

    /// Whether `first` (the first part) still lives in this buffer.
    pub(crate) fn is_bound(&self, first: &nn::Linear) -> bool {
        first.ws.data_ptr() == self.weight.data_ptr()
    }

    /// The error inference gives when [`is_bound`](Self::is_bound) fails.
    pub(crate) fn unbound_error() -> ModelError {
        ModelError::invalid(
            "parameters",
            "the fused q/k/v and gate/up weights no longer share the parameters' memory \
             (a var store re-cast with set_kind or moved after the model was built); build \
             the model in the dtype and on the device it runs on",
        )
    }
}

/// Whether libtorch records gradients on this thread (grad mode is thread-local).
pub(crate) fn grad_enabled() -> bool {
    // libtorch exposes the flag only through its setter, which returns the previous value.
    // SAFETY: plain C functions on a thread-local flag, which is restored at once.
    unsafe {
        let previous = torch_sys::at_grad_set_enabled(0);
        torch_sys::at_grad_set_enabled(previous);
        previous != 0
    }
}
