//! CUDA graphs: record a step's libtorch work once, then launch it again with one call.
//!
//! A decode step at small batch is bound by the host issuing hundreds of small kernels; a
//! graph replays all of them at the cost of one launch. tch has no graph API, so this wraps
//! libtorch's `at::cuda::CUDAGraph` through a small C++ shim (`csrc/cuda_graph_shim.cpp`),
//! built only where libtorch has CUDA and its headers are present (`cfg(grlhf_cuda_graphs)`).
//!
//! What a graph records is fixed: the same kernels on the same memory. So the work captured must
//! read its inputs from, and write its results into, tensors that live as long as the graph
//! (update them in place between replays), must not read a value back to the host, and must not
//! change shape. [`crate::slot_decoding`]'s step is written that way. Tensors created during
//! capture come from the graph's private memory pool and stay valid while the graph lives.
//!
//! A graph belongs to the thread and device it was captured on (libtorch's current stream is
//! per thread), so [`CudaGraph`] is neither `Send` nor `Sync`.

use std::marker::PhantomData;

use tch::Device;

use crate::error::{ModelError, Result};

/// A captured CUDA graph.
#[derive(Debug)]
pub struct CudaGraph {
    #[cfg_attr(not(grlhf_cuda_graphs), allow(dead_code))]
    raw: *mut std::ffi::c_void,
    _not_send: PhantomData<*const ()>,
}

/// Whether this build can capture graphs (the shim was compiled) and a GPU is present.
pub fn available() -> bool {
    cfg!(grlhf_cuda_graphs) && tch::Cuda::is_available()
}

/// Runs `body` eagerly on the stream this thread captures graphs on for `device`, after the
/// device finished all queued work, and waits for it before returning: the warm-up a capture of
/// the same work needs. The thread's stream is restored even when `body` fails or panics.
pub fn warm_up<T>(device: Device, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let Device::Cuda(index) = device else {
        return Err(ModelError::invalid(
            "cuda_graph",
            format!("warm-up for a graph runs CUDA work; the device is {device:?}"),
        ));
    };
    warm_up_on(index, body)
}

#[cfg(grlhf_cuda_graphs)]
fn warm_up_on<T>(index: usize, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut token = std::ptr::null_mut();
    let mut error = std::ptr::null_mut();
    // SAFETY: out-pointers to locals; the shim fills them or sets the error.
    let status = unsafe { ffi::grlhf_cuda_side_stream_enter(index as i32, &mut token, &mut error) };
    ffi::check(status, error, "switching to the capture stream")?;
    ffi::always_finish(body, || {
        let mut error = std::ptr::null_mut();
        // SAFETY: `token` came from the enter call above and is consumed once.
        let status = unsafe { ffi::grlhf_cuda_side_stream_leave(token, &mut error) };
        ffi::check(status, error, "leaving the capture stream")
    })
}

#[cfg(not(grlhf_cuda_graphs))]
fn warm_up_on<T>(_index: usize, _body: impl FnOnce() -> Result<T>) -> Result<T> {
    Err(no_support())
}

#[cfg(not(grlhf_cuda_graphs))]
fn no_support() -> ModelError {
    ModelError::invalid(
        "cuda_graph",
        "this build has no CUDA-graph support (libtorch without CUDA, or its CUDA headers \
         were missing at build time: scripts/setup.sh installs them)",
    )
}

#[cfg(grlhf_cuda_graphs)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    extern "C" {
        pub fn grlhf_cuda_graph_new(
            device: c_int,
            out: *mut *mut c_void,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn grlhf_cuda_side_stream_enter(
            device: c_int,
            token: *mut *mut c_void,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn grlhf_cuda_side_stream_leave(token: *mut c_void, error: *mut *mut c_char) -> c_int;
        pub fn grlhf_cuda_graph_capture_begin(
            graph: *mut c_void,
            share_pool_with: *mut c_void,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn grlhf_cuda_graph_capture_end(graph: *mut c_void, error: *mut *mut c_char) -> c_int;
        pub fn grlhf_cuda_graph_replay(graph: *mut c_void, error: *mut *mut c_char) -> c_int;
        pub fn grlhf_cuda_graph_free(graph: *mut c_void);
        pub fn grlhf_cuda_free_message(message: *mut c_char);
    }

    /// Turns the shim's status and message into a result (freeing the message).
    pub fn check(status: c_int, error: *mut c_char, what: &str) -> crate::error::Result<()> {
        if status == 0 {
            return Ok(());
        }
        let message = if error.is_null() {
            "no message".to_string()
        } else {
            // SAFETY: the shim hands over a NUL-terminated malloc'd string, freed here once.
            let text = unsafe { std::ffi::CStr::from_ptr(error) }
                .to_string_lossy()
                .into_owned();
            unsafe { grlhf_cuda_free_message(error) };
            text
        };
        Err(crate::error::ModelError::invalid(
            "cuda_graph",
            format!("{what}: {message}"),
        ))
    }

    /// Runs `body`, then `finish` whatever happened (an error or a panic included), and
    /// reports `body`'s failure first, `finish`'s after it.
    pub fn always_finish<T>(
        body: impl FnOnce() -> crate::error::Result<T>,
        finish: impl FnOnce() -> crate::error::Result<()>,
    ) -> crate::error::Result<T> {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let finished = finish();
        match result {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => Err(match finished {
                Ok(()) => e,
                Err(also) => {
                    crate::error::ModelError::invalid("cuda_graph", format!("{e}; then {also}"))
                }
            }),
            Ok(Ok(value)) => finished.map(|()| value),
        }
    }
}

impl CudaGraph {
    /// Records what `body` does on `device` into a new graph and returns the graph with
    /// `body`'s result. Nothing in `body` runs on the GPU now: replay it to execute it. With
    /// `share_pool_with`, the graph allocates from that graph's pool (for graphs replayed in
    /// the order they were captured). Run the same work once through [`warm_up`] first, as
    /// torch.cuda.graph asks: first calls initialise things (cuBLAS workspaces per stream,
    /// kernel loads) that should not land in the graph. Capture ends and the thread's stream
    /// is restored even when `body` fails or panics.
    pub fn capture<T>(
        device: Device,
        share_pool_with: Option<&CudaGraph>,
        body: impl FnOnce() -> Result<T>,
    ) -> Result<(CudaGraph, T)> {
        let Device::Cuda(index) = device else {
            return Err(ModelError::invalid(
                "cuda_graph",
                format!("graphs capture CUDA work; the device is {device:?}"),
            ));
        };
        Self::capture_on(index, share_pool_with, body)
    }

    #[cfg(grlhf_cuda_graphs)]
    fn capture_on<T>(
        index: usize,
        share_pool_with: Option<&CudaGraph>,
        body: impl FnOnce() -> Result<T>,
    ) -> Result<(CudaGraph, T)> {
        let mut raw = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; the shim fills them or sets the error.
        let status = unsafe { ffi::grlhf_cuda_graph_new(index as i32, &mut raw, &mut error) };
        ffi::check(status, error, "creating a graph")?;
        let graph = CudaGraph {
            raw,
            _not_send: PhantomData,
        };
        let pool = share_pool_with.map_or(std::ptr::null_mut(), |g| g.raw);
        let mut error = std::ptr::null_mut();
        // SAFETY: `graph.raw` is live; `pool` is null or another live graph.
        let status = unsafe { ffi::grlhf_cuda_graph_capture_begin(graph.raw, pool, &mut error) };
        ffi::check(status, error, "starting capture")?;
        let value = ffi::always_finish(body, || {
            let mut error = std::ptr::null_mut();
            // SAFETY: capture was begun on this graph, on this thread.
            let status = unsafe { ffi::grlhf_cuda_graph_capture_end(graph.raw, &mut error) };
            ffi::check(status, error, "ending capture")
        })?;
        Ok((graph, value))
    }

    #[cfg(not(grlhf_cuda_graphs))]
    fn capture_on<T>(
        _index: usize,
        _share_pool_with: Option<&CudaGraph>,
        _body: impl FnOnce() -> Result<T>,
    ) -> Result<(CudaGraph, T)> {
        Err(no_support())
    }

    /// Launches the recorded work again on the current stream.
    pub fn replay(&self) -> Result<()> {
        #[cfg(grlhf_cuda_graphs)]
        {
            let mut error = std::ptr::null_mut();
            // SAFETY: `self.raw` is a live, captured graph.
            let status = unsafe { ffi::grlhf_cuda_graph_replay(self.raw, &mut error) };
            ffi::check(status, error, "replaying")
        }
        #[cfg(not(grlhf_cuda_graphs))]
        unreachable!("no graph can exist without the shim")
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(grlhf_cuda_graphs)]
        // SAFETY: created by `grlhf_cuda_graph_new`, freed once.
        unsafe {
            ffi::grlhf_cuda_graph_free(self.raw)
        };
    }
}

#[cfg(all(test, grlhf_cuda_graphs))]
mod tests {
    use super::ffi::always_finish;
    use crate::error::ModelError;
    use std::cell::Cell;

    #[test]
    fn capture_is_ended_after_an_error_or_a_panic_and_both_failures_are_reported() {
        let ended = Cell::new(0);
        let finish = || {
            ended.set(ended.get() + 1);
            Err(ModelError::invalid("cuda_graph", "capture invalidated"))
        };
        let err = always_finish(
            || -> crate::error::Result<()> { Err(ModelError::invalid("body", "failed")) },
            finish,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("failed") && err.contains("capture invalidated"),
            "{err}"
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            always_finish(
                || -> crate::error::Result<()> { panic!("libtorch error in a tch call") },
                || {
                    ended.set(ended.get() + 1);
                    Ok(())
                },
            )
        }));
        assert!(
            panicked.is_err(),
            "the panic goes on after the capture ended"
        );
        assert_eq!(ended.get(), 2);
        assert_eq!(always_finish(|| Ok(7), || Ok(())).unwrap(), 7);
    }
}
