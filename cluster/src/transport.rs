//! Which transport carries weights to workers (`[weights] transport`), and NCCL as far as that
//! choice needs it: the library, opened at run time, and its version.
//!
//! The pip torch wheel ships `libnccl.so.2` (and libtorch_cuda, which grlhf links, loads it), so
//! no CUDA toolkit is needed to open it; `GRLHF_NCCL_LIBRARY` names another file. Only TCP
//! carries weights today: `auto` reports `tcp` with the reason (no CUDA device here, NCCL not
//! found, or NCCL found but its transport not built), and `nccl` is refused when the config is
//! read. The NCCL broadcast itself is not built (docs/distributed.md).

use std::ffi::c_int;

use libloading::Library;
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

/// The NCCL library, opened.
pub struct Nccl {
    _library: Library,
    /// What was opened (a file name or path).
    pub opened: String,
    /// (major, minor, patch).
    pub version: (i32, i32, i32),
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("opened", &self.opened)
            .field("version", &self.version)
            .finish()
    }
}

impl Nccl {
    /// The environment variable naming the library to open instead of `libnccl.so.2`.
    pub const ENV: &'static str = "GRLHF_NCCL_LIBRARY";

    /// Opens NCCL and reads its version; `Err` says what was tried and why it failed.
    pub fn load() -> Result<Nccl, String> {
        let candidates = match std::env::var(Self::ENV) {
            Ok(path) if !path.is_empty() => vec![path],
            _ => vec!["libnccl.so.2".to_string(), "libnccl.so".to_string()],
        };
        let mut failures = Vec::new();
        for name in candidates {
            // SAFETY: opening a shared library runs its initialisers; NCCL's only set up its
            // own state.
            match unsafe { Library::new(&name) } {
                Ok(library) => return Self::read_version(library, name),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(format!("no NCCL library ({})", failures.join("; ")))
    }

    fn read_version(library: Library, opened: String) -> Result<Nccl, String> {
        // SAFETY: `ncclGetVersion(int*)` is NCCL's documented entry point with this signature;
        // the out-pointer refers to a live local.
        let code = unsafe {
            let get: libloading::Symbol<extern "C" fn(*mut c_int) -> c_int> = library
                .get(b"ncclGetVersion\0")
                .map_err(|e| format!("{opened} is not NCCL (no ncclGetVersion: {e})"))?;
            let mut code: c_int = 0;
            let result = get(&mut code);
            if result != 0 {
                return Err(format!(
                    "{opened}: ncclGetVersion failed with NCCL error {result}"
                ));
            }
            code
        };
        // Since NCCL 2.9 the code is major·10000 + minor·100 + patch.
        let version = (code / 10000, code / 100 % 100, code % 100);
        Ok(Nccl {
            _library: library,
            opened,
            version,
        })
    }
}

impl WeightTransport {
    /// Refuses a transport that cannot be used (`nccl`: not built), naming the setting.
    pub fn check(self) -> Result<(), String> {
        match self {
            WeightTransport::Nccl => Err("weights.transport = \"nccl\": the NCCL weight transport is not built yet (docs/distributed.md); use \"tcp\" or \"auto\"".into()),
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
                        format!("NCCL {a}.{b}.{c} opens ({}), but the NCCL weight transport is not built yet", n.opened)
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
