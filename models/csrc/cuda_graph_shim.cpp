// CUDA graph capture and replay for grlhf-models (src/cuda_graph.rs), over libtorch's own
// at::cuda::CUDAGraph: tch 0.24 has no graph API. A C interface, so Rust needs no C++ ABI;
// every C++ exception (c10::Error included) becomes an error message, never an abort.
//
// Only exported libtorch functions are called (no inline CUDA-runtime code from the headers),
// so the shim links against libtorch's CUDA libraries alone and a binary needs no path to
// libcudart beyond what libtorch_cuda already has.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

namespace {

struct Graph {
  at::cuda::CUDAGraph graph;
  // The stream that was current before capture, restored after it: capture is refused on the
  // default stream, so it runs on a stream from libtorch's pool.
  std::optional<c10::cuda::CUDAStream> previous;
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

void restore_stream(Graph* g) {
  if (g->previous) c10::cuda::setCurrentCUDAStream(*g->previous);
  g->previous.reset();
}

}  // namespace

extern "C" {

int grlhf_cuda_graph_new(void** out, char** error) {
  return guarded(error, [&] { *out = new Graph(); });
}

// Starts capturing this thread's libtorch work on `device`. With `share_pool_with`, the new
// graph allocates from that graph's memory pool (graphs replayed in capture order may share).
int grlhf_cuda_graph_capture_begin(void* graph, int device, void* share_pool_with, char** error) {
  auto* g = static_cast<Graph*>(graph);
  int rc = guarded(error, [&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    g->previous = c10::cuda::getCurrentCUDAStream(index);
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, index));
    at::cuda::MempoolId_t pool{0, 0};
    if (share_pool_with != nullptr) pool = static_cast<Graph*>(share_pool_with)->graph.pool();
    g->graph.capture_begin(pool);
  });
  if (rc != 0) restore_stream(g);
  return rc;
}

int grlhf_cuda_graph_capture_end(void* graph, char** error) {
  auto* g = static_cast<Graph*>(graph);
  int rc = guarded(error, [&] { g->graph.capture_end(); });
  restore_stream(g);
  return rc;
}

// Replays the captured work on the current stream.
int grlhf_cuda_graph_replay(void* graph, char** error) {
  return guarded(error, [&] { static_cast<Graph*>(graph)->graph.replay(); });
}

void grlhf_cuda_graph_free(void* graph) { delete static_cast<Graph*>(graph); }

void grlhf_cuda_free_message(char* message) { std::free(message); }

}  // extern "C"
