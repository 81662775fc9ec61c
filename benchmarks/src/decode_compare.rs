//! Compares grlhf's decode throughput across builds: `decode.json` files written by
//! `grlhf-bench decode` with different binaries (say, before and after an engine change), each
//! file labelled. Several files under one label are pooled: the label's figure for a point is
//! the median over its files' medians (the mean of the middle two for an even count), and the
//! spread (min–max) is kept, so alternating runs
//! of the two builds on a shared machine show how much of a difference is noise.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use grlhf::charts::{grouped_bars, BarPanel};
use serde::Serialize;

use crate::decode::{median, DecodePoint};
use crate::report::models_in_order;

/// One labelled `decode.json`.
#[derive(Debug, Clone)]
pub struct LabelledRun {
    pub label: String,
    pub path: PathBuf,
}

impl std::str::FromStr for LabelledRun {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (label, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected LABEL=decode.json, got `{s}`"))?;
        Ok(LabelledRun {
            label: label.to_string(),
            path: PathBuf::from(path),
        })
    }
}

/// One (label, model, batch) figure pooled over the label's files.
#[derive(Debug, Clone, Serialize)]
pub struct ComparedPoint {
    pub label: String,
    pub model: String,
    pub batch: usize,
    pub tokens_per_second: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// Reads every file's grlhf points and pools them per label, model and batch.
pub fn pool(runs: &[LabelledRun]) -> Result<(String, Vec<ComparedPoint>)> {
    let mut machine = String::new();
    let mut all: Vec<(String, DecodePoint)> = Vec::new();
    for run in runs {
        let text = std::fs::read_to_string(&run.path)
            .with_context(|| format!("reading {}", run.path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", run.path.display()))?;
        let points: Vec<DecodePoint> = serde_json::from_value(value["points"].clone())
            .map_err(|e| anyhow!("{}: field `points`: {e}", run.path.display()))?;
        machine = value["machine"]
            .as_str()
            .unwrap_or("unknown machine")
            .to_string();
        all.extend(
            points
                .into_iter()
                .filter(|p| p.engine == "grlhf")
                .map(|p| (run.label.clone(), p)),
        );
    }
    let mut keys: Vec<(String, String, usize)> = Vec::new();
    for (label, p) in &all {
        let key = (label.clone(), p.model.clone(), p.batch);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let pooled = keys
        .into_iter()
        .map(|(label, model, batch)| {
            let values: Vec<f64> = all
                .iter()
                .filter(|(l, p)| *l == label && p.model == model && p.batch == batch)
                .map(|(_, p)| p.tokens_per_second)
                .collect();
            ComparedPoint {
                tokens_per_second: median(&values),
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(0.0, f64::max),
                runs: values.len(),
                label,
                model,
                batch,
            }
        })
        .collect();
    Ok((machine, pooled))
}

/// Markdown table: one row per (model, batch), one column per label, and the last label over
/// the first.
pub fn table(machine: &str, labels: &[String], points: &[ComparedPoint]) -> String {
    let (first, last) = (&labels[0], &labels[labels.len() - 1]);
    let mut out = format!("grlhf decode tokens/s by build — {machine}; median over runs (min–max)\n\n| model | batch |");
    for label in labels {
        out.push_str(&format!(" {label} |"));
    }
    out.push_str(&format!(" {last} / {first} |\n|---|---:|"));
    out.push_str(&"---:|".repeat(labels.len() + 1));
    out.push('\n');
    let mut rows: Vec<(&str, usize)> = Vec::new();
    for p in points {
        if !rows.contains(&(p.model.as_str(), p.batch)) {
            rows.push((p.model.as_str(), p.batch));
        }
    }
    for (model, batch) in rows {
        let find = |label: &str| {
            points
                .iter()
                .find(|p| p.label == label && p.model == model && p.batch == batch)
        };
        out.push_str(&format!("| {model} | {batch} |"));
        for label in labels {
            match find(label) {
                Some(p) => out.push_str(&format!(
                    " {:.1} ({:.1}–{:.1}) |",
                    p.tokens_per_second, p.min, p.max
                )),
                None => out.push_str(" – |"),
            }
        }
        let ratio = match (find(first), find(last)) {
            (Some(a), Some(b)) => format!("{:.2}×", b.tokens_per_second / a.tokens_per_second),
            _ => "–".to_string(),
        };
        out.push_str(&format!(" {ratio} |\n"));
    }
    out
}

/// Bars: one panel per model, batch sizes as groups, one series per label.
pub fn plot(path: &Path, machine: &str, labels: &[String], points: &[ComparedPoint]) -> Result<()> {
    let models = models_in_order(points.iter().map(|p| p.model.as_str()));
    let panels: Vec<BarPanel> = models
        .iter()
        .map(|model| {
            let mut batches: Vec<usize> = points
                .iter()
                .filter(|p| &p.model == model)
                .map(|p| p.batch)
                .collect();
            batches.sort_unstable();
            batches.dedup();
            BarPanel {
                title: format!(
                    "{model} — {}",
                    machine.split(" (").next().unwrap_or(machine)
                ),
                groups: batches.iter().map(|b| format!("batch {b}")).collect(),
                series: labels
                    .iter()
                    .map(|label| {
                        let values = batches
                            .iter()
                            .map(|&b| {
                                points
                                    .iter()
                                    .find(|p| {
                                        &p.label == label && &p.model == model && p.batch == b
                                    })
                                    .map_or(0.0, |p| p.tokens_per_second)
                            })
                            .collect();
                        (label.clone(), values)
                    })
                    .collect(),
                y_label: "generated tokens/s".to_string(),
            }
        })
        .collect();
    grouped_bars(path, &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, batch: usize, tps: f64) -> ComparedPoint {
        ComparedPoint {
            label: label.into(),
            model: "m".into(),
            batch,
            tokens_per_second: tps,
            min: tps,
            max: tps,
            runs: 1,
        }
    }

    #[test]
    fn pooled_medians_average_the_middle_pair() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn files_pool_per_label_and_the_table_divides_last_by_first() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, tps: f64| {
            let path = dir.path().join(name);
            let json = serde_json::json!({"machine": "box", "points": [
                {"engine": "grlhf", "model": "m", "batch": 8, "seconds_median": 1.0,
                 "seconds_all": [1.0], "tokens_per_second": tps},
                {"engine": "transformers", "model": "m", "batch": 8, "seconds_median": 1.0,
                 "seconds_all": [1.0], "tokens_per_second": 1.0}
            ]});
            std::fs::write(&path, json.to_string()).unwrap();
            LabelledRun {
                label: name[..1].to_string(),
                path,
            }
        };
        let runs = [write("a1", 100.0), write("a2", 120.0), write("b1", 330.0)];
        let (machine, points) = pool(&runs).unwrap();
        assert_eq!(machine, "box");
        assert_eq!(
            points.len(),
            2,
            "the transformers point is not grlhf's: {points:?}"
        );
        assert_eq!((points[0].tokens_per_second, points[0].runs), (110.0, 2));
        let table = table(&machine, &["a".into(), "b".into()], &points);
        assert!(
            table.contains("| m | 8 | 110.0 (100.0–120.0) | 330.0 (330.0–330.0) | 3.00× |"),
            "{table}"
        );
        let missing = table_for_missing();
        assert!(missing.contains("| – |"), "{missing}");
    }

    fn table_for_missing() -> String {
        table("box", &["a".into(), "b".into()], &[point("a", 1, 5.0)])
    }
}
