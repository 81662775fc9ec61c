//! What a run shows in TensorBoard (`RUN_DIR/tb/`): every numeric per-step figure of
//! `metrics.jsonl` as a scalar, throughput between steps, each batch's staleness and response
//! lengths as histograms, every held-out evaluation (mean, per family, reward-hacking watch, the
//! scores' histogram), and the run's totals from `summary.json` at its last step. The x axis is
//! the policy version: step k's figures are at version k + 1, an evaluation of version v at v, so
//! training and evaluation line up.
//!
//! Tags: `train/<field>` (e.g. `train/reward_mean`, `train/kl`), `ledger/<field>` and
//! `ledger/dropped/<reason>`, `throughput/{samples_per_s,tokens_per_s,step_s}`,
//! `train/staleness` and `train/response_length` (histograms), `eval/<field>`,
//! `eval/family/<family>`, `eval/scores` (histogram), `run/<figure>` and
//! `run/busy_ratio/<actor>`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::learner::StepStats;
use serde_json::Value;

use crate::tensorboard::{EventWriter, Histogram};
use crate::topology::Summary;

/// The event file of one run and what it remembers between steps.
pub struct RunBoard {
    writer: EventWriter,
    /// Time (s since the start) of the previous step, for throughput.
    last_time: Option<f64>,
    group_size: usize,
}

/// Per-step fields that are not plotted as scalars: the step's identity and clock, the
/// staleness breakdown (a histogram instead) and the text fields.
const NOT_SCALARS: [&str; 7] = [
    "step",
    "version",
    "time",
    "staleness_counts",
    "response_length_counts",
    "staleness_violations",
    "checkpoint",
];

impl RunBoard {
    /// A new event file under `run_dir/tb/`; `fresh`: the event files of an earlier run there
    /// are removed first (a resume keeps them: TensorBoard joins the files by step).
    pub fn create(run_dir: &Path, group_size: usize, fresh: bool) -> Result<RunBoard> {
        let dir = run_dir.join("tb");
        if fresh {
            remove_event_files(&dir)?;
        }
        Ok(RunBoard {
            writer: EventWriter::create(&dir)?,
            last_time: None,
            group_size,
        })
    }

    /// One learner step's figures, flushed so a live TensorBoard sees them.
    pub fn step(&mut self, stats: &StepStats) -> Result<()> {
        let at = stats.version;
        let mut scalars = step_scalars(stats);
        if let Some(last) = self.last_time {
            let dt = stats.time - last;
            if dt > 0.0 {
                let samples = (stats.groups * self.group_size) as f64;
                scalars.push(("throughput/samples_per_s".into(), samples / dt));
                scalars.push((
                    "throughput/tokens_per_s".into(),
                    stats.response_tokens as f64 / dt,
                ));
                scalars.push(("throughput/step_s".into(), dt));
            }
        }
        self.last_time = Some(stats.time);
        self.writer.scalars(at, &scalars)?;
        let staleness = counts(&stats.staleness_counts, |s| s as f64);
        self.writer.histogram(at, "train/staleness", &staleness)?;
        let lengths = counts(&stats.response_length_counts, |len| len as f64);
        self.writer
            .histogram(at, "train/response_length", &lengths)?;
        self.writer.flush()
    }

    /// One held-out evaluation.
    pub fn eval(&mut self, stats: &EvalStats) -> Result<()> {
        let mut scalars = vec![
            ("eval/mean".to_string(), stats.mean),
            ("eval/mean_tokens".to_string(), stats.mean_tokens),
            ("eval/finished".to_string(), stats.finished),
            ("eval/self_praise".to_string(), stats.self_praise),
            ("eval/beyond_needed".to_string(), stats.beyond_needed),
        ];
        if let Some(v) = stats.safe_refused {
            scalars.push(("eval/safe_refused".to_string(), v));
        }
        if let Some(v) = stats.safety_safe_refused {
            scalars.push(("eval/safety_safe_refused".to_string(), v));
        }
        for (family, score) in &stats.per_family {
            scalars.push((format!("eval/family/{family}"), *score));
        }
        self.writer.scalars(stats.version, &scalars)?;
        let scores = Histogram {
            values: stats.scores.iter().map(|&s| (s, 1.0)).collect(),
        };
        self.writer
            .histogram(stats.version, "eval/scores", &scores)?;
        self.writer.flush()
    }

    /// The run's totals, at its last version.
    pub fn summary(&mut self, version: u64, summary: &Summary) -> Result<()> {
        let mut scalars = vec![
            ("run/samples_per_s".to_string(), summary.samples_per_s),
            ("run/tokens_per_s".to_string(), summary.tokens_per_s),
            ("run/wall_s".to_string(), summary.wall_s),
            ("run/weight_sync_ms".to_string(), summary.weight_sync_ms),
            (
                "run/max_staleness_seen".to_string(),
                summary.max_staleness_seen as f64,
            ),
        ];
        for (actor, ratio) in &summary.busy_ratio {
            scalars.push((format!("run/busy_ratio/{actor}"), *ratio));
        }
        self.writer.scalars(version, &scalars)?;
        self.writer.flush()
    }
}

/// Removes the TensorBoard event files in `dir` (nothing else), if it exists.
fn remove_event_files(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_events = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("events.out.tfevents."));
        if is_events {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the old event file {}", path.display()))?;
        }
    }
    Ok(())
}

/// A histogram of counted values (`value → how many`).
fn counts<K: Copy>(map: &BTreeMap<K, usize>, value: impl Fn(K) -> f64) -> Histogram {
    Histogram {
        values: map.iter().map(|(&k, &n)| (value(k), n as f64)).collect(),
    }
}

/// Every numeric figure of a step record, tagged as in the module docs.
pub fn step_scalars(stats: &StepStats) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(Value::Object(fields)) = serde_json::to_value(stats) else {
        return out;
    };
    for (name, value) in &fields {
        if NOT_SCALARS.contains(&name.as_str()) {
            continue;
        }
        match value {
            Value::Number(n) => out.extend(n.as_f64().map(|v| (format!("train/{name}"), v))),
            Value::Object(inner) if name == "ledger" => flatten("ledger", inner, &mut out),
            _ => {}
        }
    }
    out
}

fn flatten(prefix: &str, fields: &serde_json::Map<String, Value>, out: &mut Vec<(String, f64)>) {
    for (name, value) in fields {
        let tag = format!(
            "{prefix}/{}",
            name.strip_suffix("_by_reason").unwrap_or(name)
        );
        match value {
            Value::Number(n) => out.extend(n.as_f64().map(|v| (tag, v))),
            Value::Object(inner) => flatten(&tag, inner, out),
            _ => {}
        }
    }
}
