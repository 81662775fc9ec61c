//! Build-script helper shared by every grlhf crate whose binaries or tests link libtorch.
//!
//! Two problems are solved here, once:
//!
//! 1. **CUDA silently missing.** PyPI's libtorch splits CUDA kernels into `libtorch_cuda.so`,
//!    which nothing in a Rust binary references by symbol. With the linker's default
//!    `--as-needed` the library is dropped and `tch::Cuda::is_available()` returns false on a GPU
//!    machine. Linking `libtorch.so` with `--no-as-needed` keeps it (and, through it,
//!    `libtorch_cuda.so`) in the binary's dependency list.
//! 2. **LD_LIBRARY_PATH.** An rpath to libtorch's `lib/` directory lets `grlhf` and the test
//!    binaries start with nothing exported. (On a machine where that path does not exist, e.g. a
//!    GPU box the binary was copied to, `LD_LIBRARY_PATH` still works.)
//!
//! libtorch is located the same way torch-sys locates it: `$LIBTORCH` (set to the project's
//! `.venv/libtorch` by `.cargo/config.toml`), otherwise the `torch` package of `python3`.
//! The libtorch version is exported to the crate as the `GRLHF_LIBTORCH_VERSION` env var.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where libtorch was found, and which version it is.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// Directory holding `libtorch.so`.
    pub lib_dir: PathBuf,
    /// Version string such as `2.11.0+cu130`, when it could be read.
    pub version: Option<String>,
}

/// Emits the cargo directives that link libtorch with `--no-as-needed` and an rpath.
///
/// Call from `build.rs`. Panicking is the only way a build script can fail, so a libtorch
/// that cannot be found panics with a message that says how to fix it.
pub fn link_libtorch() -> Libtorch {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = find_libtorch().unwrap_or_else(|why| {
        panic!(
            "grlhf-build: cannot locate libtorch: {why}\n\
             Run `scripts/setup.sh` (or `make demo` / `make test`, which run it) to create .venv \
             with torch==2.11.0, or set LIBTORCH to an unpacked libtorch 2.11.0."
        )
    });
    let lib = libtorch.lib_dir.display();
    println!("cargo:rustc-link-search=native={lib}");
    // `-l` inside link-arg keeps the flag ordering: --no-as-needed applies to libtorch only.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    if libtorch.lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if let Some(version) = &libtorch.version {
        println!("cargo:rustc-env=GRLHF_LIBTORCH_VERSION={version}");
    } else {
        println!("cargo:rustc-env=GRLHF_LIBTORCH_VERSION=unknown");
    }
    libtorch
}

fn find_libtorch() -> Result<Libtorch, String> {
    if let Ok(root) = env::var("LIBTORCH") {
        let root = PathBuf::from(root);
        let lib_dir = root.join("lib");
        if !lib_dir.join("libtorch.so").exists() {
            return Err(format!(
                "LIBTORCH={} has no lib/libtorch.so",
                root.display()
            ));
        }
        return Ok(Libtorch {
            version: read_version(&root),
            lib_dir,
        });
    }
    let python = "python3";
    let output = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{python} cannot import torch: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let torch_dir = lines.next().ok_or("python printed nothing")?;
    let version = lines.next().map(str::to_string);
    let lib_dir = Path::new(torch_dir).join("lib");
    if !lib_dir.join("libtorch.so").exists() {
        return Err(format!("{} has no libtorch.so", lib_dir.display()));
    }
    Ok(Libtorch { lib_dir, version })
}

/// Where a CUDA build of libtorch keeps what a C++ file that includes its CUDA headers needs:
/// the include directories (libtorch's own, and the CUDA runtime headers of PyPI's
/// `nvidia/cu13` packages next to the torch package). `None` for a CPU-only libtorch, or when
/// a header is missing (`crt/host_config.h` comes from `nvidia-cuda-crt`, which
/// `scripts/setup.sh` installs).
pub fn cuda_include_dirs(libtorch: &Libtorch) -> Option<Vec<PathBuf>> {
    if !libtorch.lib_dir.join("libtorch_cuda.so").exists() {
        return None;
    }
    let root = libtorch.lib_dir.parent()?.canonicalize().ok()?;
    let cuda = cuda_header_dir(&root)?;
    cuda_headers_checked(libtorch)
        .iter()
        .all(|p| p.exists())
        .then(|| {
            vec![
                root.join("include"),
                root.join("include/torch/csrc/api/include"),
                cuda,
            ]
        })
}

/// The headers [`cuda_include_dirs`] requires (empty when libtorch's location cannot be
/// resolved).
fn cuda_headers_checked(libtorch: &Libtorch) -> Vec<PathBuf> {
    let Some(root) = libtorch
        .lib_dir
        .parent()
        .and_then(|r| r.canonicalize().ok())
    else {
        return Vec::new();
    };
    let Some(cuda) = cuda_header_dir(&root) else {
        return Vec::new();
    };
    vec![
        root.join("include/ATen/cuda/CUDAGraph.h"),
        cuda.join("cuda_runtime_api.h"),
        cuda.join("crt/host_config.h"),
    ]
}

fn cuda_header_dir(torch_root: &Path) -> Option<PathBuf> {
    Some(
        torch_root
            .parent()?
            .join("nvidia")
            .join("cu13")
            .join("include"),
    )
}

/// The CUDA header directory next to a PyPI libtorch, when it exists: a build script watches
/// it, so headers installed after a first build (`nvidia-cuda-crt`) are picked up. (Watching a
/// file that does not exist would rerun the script on every build.)
pub fn cuda_header_dir_to_watch(libtorch: &Libtorch) -> Option<PathBuf> {
    let root = libtorch.lib_dir.parent()?.canonicalize().ok()?;
    cuda_header_dir(&root).filter(|dir| dir.is_dir())
}

/// Reads the version from an unpacked libtorch (`build-version`) or a PyPI torch package
/// (`version.py`, which holds `__version__ = '2.11.0+cu130'`).
fn read_version(root: &Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let text = std::fs::read_to_string(root.join("version.py")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("__version__"))
        .map(|rest| {
            rest.trim_start_matches([' ', '='])
                .trim()
                .trim_matches(['\'', '"'])
                .to_string()
        })
}
