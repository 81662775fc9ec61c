//! Decode throughput of grlhf's generation engine, and the comparison with transformers'
//! `generate` measured by `benchmarks/decode_peer.py` on the same checkpoints.
//!
//! Both sides run the same workload: `batch` copies of one deterministic prompt of
//! `prompt_len` tokens, greedy, exactly `new_tokens` new tokens (no early stop), with the KV
//! cache, on the same device, dtype and thread count. Time is wall-clock for the whole call
//! (prefill included), the median of `repeats` runs after one warm-up.
//!
//! The engines alternate point by point (transformers for one batch size, then grlhf for the
//! same one), so that a change of load on a shared machine hits both sides of a ratio alike
//! instead of one engine's whole block.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use grlhf_models::{generate, GenerationConfig, Qwen2ForCausalLM};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecodeWorkload {
    pub batches: Vec<usize>,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub repeats: usize,
    pub threads: i32,
    pub device: String,
    pub dtype: String,
}

/// One measured point (same schema as the Python peer writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecodePoint {
    pub engine: String,
    pub model: String,
    pub batch: usize,
    pub seconds_median: f64,
    pub seconds_all: Vec<f64>,
    pub tokens_per_second: f64,
    /// What `tokens_per_second` counts when it is not generated tokens (e.g. images/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// The prompt both engines use: deterministic ids in `[3, vocab)`.
pub fn bench_prompt(len: usize, vocab: i64) -> Vec<i64> {
    (0..len as i64)
        .map(|i| 3 + (i * 7919 + 13) % (vocab - 3))
        .collect()
}

/// The median; for an even count, the mean of the middle two.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Measures grlhf and (when `peer_python` is given) transformers on one checkpoint, alternating
/// engines for each batch size of the workload.
pub fn measure(
    model_spec: &NamedModel,
    workload: &DecodeWorkload,
    device: Device,
    kind: Kind,
    peer_python: Option<&Path>,
) -> Result<Vec<DecodePoint>> {
    let NamedModel { name, dir } = model_spec;
    let model = Qwen2ForCausalLM::load(dir, device, kind)
        .with_context(|| format!("loading {}", dir.display()))?;
    let prompt = bench_prompt(workload.prompt_len, model.config().vocab_size);
    let config = GenerationConfig::greedy(workload.new_tokens);
    let mut points = Vec::new();
    for &batch in &workload.batches {
        if let Some(python) = peer_python {
            points.extend(run_peer(python, model_spec, batch, workload)?);
        }
        let prompts = vec![prompt.clone(); batch];
        let mut times = Vec::new();
        for run in 0..=workload.repeats {
            let start = Instant::now();
            let out = generate(&model, &prompts, &config)?;
            let seconds = start.elapsed().as_secs_f64();
            anyhow::ensure!(
                out.iter().all(|s| s.tokens.len() == workload.new_tokens),
                "a sequence stopped early"
            );
            if run > 0 {
                times.push(seconds);
            }
        }
        let seconds_median = median(&times);
        let point = DecodePoint {
            engine: "grlhf".to_string(),
            model: name.clone(),
            batch,
            seconds_median,
            tokens_per_second: (batch * workload.new_tokens) as f64 / seconds_median,
            seconds_all: times,
            metric: None,
        };
        eprintln!(
            "grlhf        {name:>6} batch {batch:>3}: {:>9.1} tok/s ({:.3} s)",
            point.tokens_per_second, point.seconds_median
        );
        points.push(point);
    }
    Ok(points)
}

/// Runs `benchmarks/decode_peer.py` for one (model, batch) point and reads its result.
fn run_peer(
    python: &Path,
    model: &NamedModel,
    batch: usize,
    workload: &DecodeWorkload,
) -> Result<Vec<DecodePoint>> {
    let args = [
        ("--batches", batch.to_string()),
        ("--prompt-len", workload.prompt_len.to_string()),
        ("--new-tokens", workload.new_tokens.to_string()),
        ("--repeats", workload.repeats.to_string()),
        ("--threads", workload.threads.to_string()),
        ("--device", workload.device.clone()),
        ("--dtype", workload.dtype.clone()),
    ];
    run_python_peer(python, "decode_peer.py", model, &args)
}

/// Runs a peer script of `benchmarks/` for `model` with `args` plus `--out FILE`, and reads
/// the points it wrote there.
pub(crate) fn run_python_peer(
    python: &Path,
    script_name: &str,
    model: &NamedModel,
    args: &[(&str, String)],
) -> Result<Vec<DecodePoint>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script_name);
    let script = if script.exists() {
        script
    } else {
        // A copied binary run from the repository root (the GPU machine).
        PathBuf::from("benchmarks").join(script_name)
    };
    let out = std::env::temp_dir().join(format!(
        "grlhf-peer-{}-{}.json",
        std::process::id(),
        model.name
    ));
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("--model")
        .arg(format!("{}={}", model.name, model.dir.display()));
    for (flag, value) in args {
        command.args([flag, value.as_str()]);
    }
    let status = command
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}

/// A model given on the command line as `NAME=DIR`.
#[derive(Debug, Clone)]
pub struct NamedModel {
    pub name: String,
    pub dir: PathBuf,
}

impl std::str::FromStr for NamedModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, dir) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected NAME=DIR"))?;
        Ok(NamedModel {
            name: name.to_string(),
            dir: PathBuf::from(dir),
        })
    }
}
