//! `grlhf doctor`: what this machine offers grlhf — libtorch build, CUDA, devices, cuDNN,
//! threads — so that a failing run can be diagnosed before it starts.

use serde::Serialize;

use crate::cuda_devices::{self, CudaDriverInfo};

/// Everything `grlhf doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub grlhf_version: String,
    pub libtorch_version: String,
    pub cuda_available: bool,
    /// CUDA devices libtorch can use.
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub mkl: bool,
    pub mkldnn: bool,
    pub intra_op_threads: i32,
    pub inter_op_threads: i32,
    pub logical_cpus: usize,
    /// The driver's view of the devices; `Err` text when no driver could be queried.
    pub driver: Result<CudaDriverInfo, String>,
}

/// Collects the report. Never fails: absent pieces are reported as absent.
pub fn diagnose() -> DoctorReport {
    let cuda_available = tch::Cuda::is_available();
    let cudnn_available = tch::Cuda::cudnn_is_available();
    DoctorReport {
        grlhf_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version: grlhf_models::LIBTORCH_VERSION.to_string(),
        cuda_available,
        cuda_device_count: tch::Cuda::device_count(),
        cudnn_available,
        cudnn_version: cudnn_available.then(tch::utils::version_cudnn),
        mkl: tch::utils::has_mkl(),
        mkldnn: tch::utils::has_mkldnn(),
        intra_op_threads: tch::get_num_threads(),
        inter_op_threads: tch::get_num_interop_threads(),
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        driver: cuda_devices::query(),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl DoctorReport {
    /// The human-readable form printed by `grlhf doctor`.
    pub fn render(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut lines = vec![
            format!("grlhf            {}", self.grlhf_version),
            format!("libtorch         {}", self.libtorch_version),
            format!(
                "CUDA available   {} ({} device(s) visible to libtorch)",
                yes(self.cuda_available),
                self.cuda_device_count
            ),
            format!(
                "cuDNN            {}",
                match self.cudnn_version {
                    Some(v) => format!("yes, version {v}"),
                    None => "no".to_string(),
                }
            ),
            format!("MKL / oneDNN     {} / {}", yes(self.mkl), yes(self.mkldnn)),
            format!(
                "threads          intra-op {}, inter-op {}, logical CPUs {}",
                self.intra_op_threads, self.inter_op_threads, self.logical_cpus
            ),
        ];
        match &self.driver {
            Ok(info) => {
                lines.push(format!(
                    "CUDA driver      {}.{}",
                    info.driver_version / 1000,
                    (info.driver_version % 1000) / 10
                ));
                for d in &info.devices {
                    lines.push(format!(
                        "cuda:{}           {}, {} total{}, compute capability {}.{}",
                        d.index,
                        d.name,
                        gib(d.total_memory_bytes),
                        d.free_memory_bytes
                            .map(|f| format!(", {} free", gib(f)))
                            .unwrap_or_default(),
                        d.compute_capability.0,
                        d.compute_capability.1
                    ));
                }
            }
            Err(why) => lines.push(format!("CUDA driver      not available ({why})")),
        }
        if !self.cuda_available && self.driver.as_ref().is_ok_and(|d| !d.devices.is_empty()) {
            lines.push(
                "warning          the driver sees GPUs but libtorch cannot use them: check that \
                 libtorch_cuda.so is linked (grlhf-build) and that LD_LIBRARY_PATH points at a \
                 CUDA build of libtorch"
                    .to_string(),
            );
        }
        lines.join("\n")
    }
}
