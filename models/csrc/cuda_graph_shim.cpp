// CUDA graph capture and replay for grlhf-models (src/cuda_graph.rs), over libtorch's own
// at::cuda::CUDAGraph: tch 0.24 has no graph API. A C interface, so Rust needs no C++ ABI;
// every C++ exception (c10::Error included) becomes an error message, never an abort.
//
// Only exported libtorch functions are called (no inline CUDA-runtime code from the headers),
// so the shim links against libtorch's CUDA libraries alone and a binary needs no path to
// libcudart beyond what libtorch_cuda already has.
//
// Like torch.cuda.graph, each thread captures on one side stream per device, kept for the
// thread's life (cuBLAS keeps a workspace per stream, so a new stream per capture would pin a
// new workspace each time), warm-up runs on that same stream, and captures run in thread-local
// mode so other threads' CUDA calls (the learner's, a judge's) are not disturbed.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <unordered_map>

namespace {

// What was current on the calling thread before a capture or warm-up switched it.
struct Saved {
  c10::DeviceIndex device;
  c10::cuda::CUDAStream stream;
};

struct Graph {
  at::cuda::CUDAGraph graph;
  c10::DeviceIndex device = -1;
  at::cuda::MempoolId_t pool{0, 0};
  std::optional<Saved> saved;
};

char* copy_message(const char* text) {
  size_t n = std::strlen(text);
  char* out = static_cast<char*>(std::malloc(n + 1));
  if (out != nullptr) std::memcpy(out, text, n + 1);
  return out;
}

template <class F>
int guarded(char** error, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    *error = copy_message(e.what());
  } catch (...) {
    *error = copy_message("unknown C++ exception");
  }
  return 1;
}

// This thread's side stream on `device`.
c10::cuda::CUDAStream side_stream(c10::DeviceIndex device) {
  thread_local std::unordered_map<int, c10::cuda::CUDAStream> streams;
  auto found = streams.find(device);
  if (found == streams.end()) {
    found = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
  }
  return found->second;
}

// Makes `device` and its side stream current, after all queued work on the device finished
// (so what the side stream runs sees everything queued before on other streams).
Saved enter_side_stream(c10::DeviceIndex device) {
  Saved saved{c10::cuda::current_device(), c10::cuda::getCurrentCUDAStream()};
  c10::cuda::set_device(device);
  c10::cuda::device_synchronize();
  c10::cuda::setCurrentCUDAStream(side_stream(device));
  return saved;
}

void leave(const Saved& saved) {
  c10::cuda::setCurrentCUDAStream(saved.stream);
  c10::cuda::set_device(saved.device);
}

}  // namespace

extern "C" {

int grlhf_cuda_graph_new(int device, void** out, char** error) {
  return guarded(error, [&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    auto previous = c10::cuda::current_device();
    c10::cuda::set_device(index);
    auto* g = new Graph();
    g->device = index;
    c10::cuda::set_device(previous);
    *out = g;
  });
}

// Runs the caller's next work (until grlhf_cuda_side_stream_leave) on this thread's side stream
// for `device`: the warm-up before a capture. `*token` receives what to restore.
int grlhf_cuda_side_stream_enter(int device, void** token, char** error) {
  return guarded(error, [&] {
    *token = new Saved(enter_side_stream(static_cast<c10::DeviceIndex>(device)));
  });
}

int grlhf_cuda_side_stream_leave(void* token, char** error) {
  auto* saved = static_cast<Saved*>(token);
  int rc = guarded(error, [&] {
    c10::cuda::device_synchronize();
    leave(*saved);
  });
  delete saved;
  return rc;
}

// Starts recording this thread's libtorch work on the graph's device. With `share_pool_with`,
// the graph allocates from that graph's memory pool (graphs replayed in capture order may share).
int grlhf_cuda_graph_capture_begin(void* graph, void* share_pool_with, char** error) {
  auto* g = static_cast<Graph*>(graph);
  return guarded(error, [&] {
    g->pool = share_pool_with != nullptr ? static_cast<Graph*>(share_pool_with)->pool
                                         : at::cuda::graph_pool_handle();
    g->saved = enter_side_stream(g->device);
    try {
      g->graph.capture_begin(g->pool, cudaStreamCaptureModeThreadLocal);
    } catch (...) {
      leave(*g->saved);
      g->saved.reset();
      throw;
    }
  });
}

// Ends recording and restores the thread's device and stream, whether or not the capture
// succeeded; after a failed capture the allocator stops routing allocations to the graph's pool.
int grlhf_cuda_graph_capture_end(void* graph, char** error) {
  auto* g = static_cast<Graph*>(graph);
  int rc = guarded(error, [&] { g->graph.capture_end(); });
  if (rc != 0) {
    try {
      c10::cuda::CUDACachingAllocator::endAllocateToPool(g->device, g->pool);
    } catch (...) {
    }
  }
  if (g->saved) {
    try {
      leave(*g->saved);
    } catch (...) {
    }
    g->saved.reset();
  }
  return rc;
}

// Replays the recorded work on the current stream (CUDAGraph::replay selects the device).
int grlhf_cuda_graph_replay(void* graph, char** error) {
  return guarded(error, [&] { static_cast<Graph*>(graph)->graph.replay(); });
}

void grlhf_cuda_graph_free(void* graph) {
  try {
    delete static_cast<Graph*>(graph);
  } catch (...) {
  }
}

void grlhf_cuda_free_message(char* message) { std::free(message); }

}  // extern "C"
