//! `grlhf-bench memory`: the resident memory of a long `grlhf run`, sampled from
//! `/proc/PID/status` while the run goes and matched to the learner step it had reached (the
//! lines of its `metrics.jsonl`). Telemetry that grows with the run (busy spans, group events,
//! per-step records kept in memory) shows as a slope after warm-up; the report gives the RSS at
//! the warm-up step and at the end, their ratio, and the slope per 1,000 steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use grlhf::charts::{line_charts, LinePanel};
use serde::Serialize;

/// One sample: the step reached and the resident set then.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    pub step: u64,
    pub seconds: f64,
    pub rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub machine: String,
    pub config: PathBuf,
    pub steps: u64,
    pub warmup_step: u64,
    pub rss_at_warmup_mib: f64,
    pub rss_at_end_mib: f64,
    /// End over warm-up.
    pub ratio: f64,
    /// Least-squares slope of RSS over steps after warm-up, per 1,000 steps.
    pub slope_mib_per_1000_steps: f64,
    pub wall_s: f64,
    pub samples: Vec<MemorySample>,
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn lines_in(path: &Path) -> u64 {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

/// `config` with `steps` and `run_dir` replaced, written next to the report.
fn prepared_config(config: &Path, steps: u64, run_dir: &Path, out: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| anyhow!("{}: {e}", config.display()))?;
    table.insert("steps".into(), toml::Value::Integer(steps as i64));
    table.insert(
        "run_dir".into(),
        toml::Value::String(run_dir.display().to_string()),
    );
    let path = out.join("memory-run.toml");
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

/// Runs `grlhf run` on `config` for `steps` steps and samples its memory.
pub fn measure(
    grlhf: &Path,
    config: &Path,
    steps: u64,
    warmup_step: u64,
    out: &Path,
) -> Result<MemoryReport> {
    if warmup_step >= steps {
        bail!("--warmup-step {warmup_step} must be below --steps {steps}");
    }
    std::fs::create_dir_all(out)?;
    let run_dir = out.join("memory-run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let run_config = prepared_config(config, steps, &run_dir, out)?;
    let log = std::fs::File::create(out.join("memory-run.log"))?;
    let mut child = Command::new(grlhf)
        .args([
            "run",
            run_config.to_str().unwrap_or_default(),
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", grlhf.display()))?;
    let metrics = run_dir.join("metrics.jsonl");
    let started = Instant::now();
    let mut samples: Vec<MemorySample> = Vec::new();
    let mut last_step = u64::MAX;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!(
                    "the run failed ({status}); see {}/memory-run.log",
                    out.display()
                );
            }
            break;
        }
        let step = lines_in(&metrics);
        if let Some(rss) = rss_mib(child.id()) {
            if step != last_step {
                if last_step == u64::MAX || step / 500 > last_step / 500 {
                    eprintln!("step {step:>6}: RSS {rss:.1} MiB");
                }
                samples.push(MemorySample {
                    step,
                    seconds: started.elapsed().as_secs_f64(),
                    rss_mib: rss,
                });
                last_step = step;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    report(config, steps, warmup_step, samples, started.elapsed())
}

fn report(
    config: &Path,
    steps: u64,
    warmup_step: u64,
    samples: Vec<MemorySample>,
    wall: Duration,
) -> Result<MemoryReport> {
    let at = |step: u64| samples.iter().find(|s| s.step >= step).map(|s| s.rss_mib);
    let warm = at(warmup_step).ok_or_else(|| anyhow!("no sample at step {warmup_step}"))?;
    let end = samples
        .iter()
        .rev()
        .find(|s| s.step > 0)
        .map(|s| s.rss_mib)
        .ok_or_else(|| anyhow!("no sample"))?;
    let after: Vec<&MemorySample> = samples.iter().filter(|s| s.step >= warmup_step).collect();
    let n = after.len() as f64;
    let (mx, my) = (
        after.iter().map(|s| s.step as f64).sum::<f64>() / n,
        after.iter().map(|s| s.rss_mib).sum::<f64>() / n,
    );
    let sxy: f64 = after
        .iter()
        .map(|s| (s.step as f64 - mx) * (s.rss_mib - my))
        .sum();
    let sxx: f64 = after.iter().map(|s| (s.step as f64 - mx).powi(2)).sum();
    Ok(MemoryReport {
        machine: crate::report::machine_name("cpu"),
        config: config.to_path_buf(),
        steps,
        warmup_step,
        rss_at_warmup_mib: warm,
        rss_at_end_mib: end,
        ratio: end / warm,
        slope_mib_per_1000_steps: if sxx > 0.0 { sxy / sxx * 1000.0 } else { 0.0 },
        wall_s: wall.as_secs_f64(),
        samples,
    })
}

pub fn table(r: &MemoryReport) -> String {
    format!(
        "Resident memory of `grlhf run {}` for {} steps ({}; {:.0} s)\n\n\
         | RSS at step {} | RSS at the end | end / warm-up | slope after warm-up |\n\
         |---|---|---|---|\n\
         | {:.1} MiB | {:.1} MiB | {:.3} | {:+.2} MiB per 1,000 steps |\n",
        r.config.display(),
        r.steps,
        r.machine,
        r.wall_s,
        r.warmup_step,
        r.rss_at_warmup_mib,
        r.rss_at_end_mib,
        r.ratio,
        r.slope_mib_per_1000_steps
    )
}

pub fn plot(path: &Path, r: &MemoryReport) -> Result<()> {
    // Step 0 is the process loading: its RSS would only stretch the axis.
    let points = r
        .samples
        .iter()
        .filter(|s| s.step > 0)
        .map(|s| (s.step as f64, s.rss_mib))
        .collect();
    line_charts(
        path,
        &[LinePanel {
            title: format!("resident memory over a {}-step run", r.steps),
            series: vec![("RSS".into(), points)],
            x_label: "learner step".into(),
            y_label: "MiB".into(),
        }],
    )
}
