//! Links libtorch, and builds the CUDA-graph shim (`csrc/cuda_graph_shim.cpp`) when libtorch has
//! CUDA and its headers are there: then `cfg(grlhf_cuda_graphs)` is set and
//! `grlhf_models::cuda_graph` captures and replays graphs; otherwise it reports that it cannot.

fn main() {
    let libtorch = grlhf_build::link_libtorch();
    println!("cargo:rustc-check-cfg=cfg(grlhf_cuda_graphs)");
    println!("cargo:rerun-if-changed=csrc/cuda_graph_shim.cpp");
    // Headers installed after a first build (nvidia-cuda-crt) must bring the shim in.
    if let Some(dir) = grlhf_build::cuda_header_dir_to_watch(&libtorch) {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let Some(includes) = grlhf_build::cuda_include_dirs(&libtorch) else {
        if libtorch.lib_dir.join("libtorch_cuda.so").exists() {
            println!(
                "cargo:warning=CUDA graphs not built: CUDA headers missing next to libtorch \
                 (scripts/setup.sh installs nvidia-cuda-crt)"
            );
        }
        return;
    };
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/cuda_graph_shim.cpp")
        .includes(&includes)
        // PyPI's torch 2.11 is built with the C++11 ABI.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // torch's headers are not warning-clean; the shim's own code is small.
        .warnings(false)
        .compile("grlhf_cuda_graph_shim");
    for lib in ["torch_cuda", "c10_cuda", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:rustc-cfg=grlhf_cuda_graphs");
}
