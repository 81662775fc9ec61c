//! The machine a measurement ran on, named for benchmark reports.

/// Names the machine: the GPU for CUDA runs, the CPU model otherwise.
pub fn machine_name(device: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpu = crate::cuda_devices::query()
        .ok()
        .and_then(|info| info.devices.into_iter().next())
        .map(|d| d.name);
    match (device.starts_with("cuda"), gpu) {
        (true, Some(gpu)) => format!("{gpu} (host: {cpu}, {cpus} logical CPUs)"),
        _ => format!("{cpu}, {cpus} logical CPUs"),
    }
}
