//! The decode benchmark's report: a terminal/markdown table with grlhf / transformers ratios,
//! `decode.json` with every timing, and `decode.png`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::decode::{DecodePoint, DecodeWorkload};
use grlhf::charts::{grouped_bars, BarPanel};

#[derive(Debug, Serialize)]
pub struct DecodeReport {
    pub machine: String,
    pub workload: DecodeWorkload,
    pub points: Vec<DecodePoint>,
}

pub use grlhf::machine::machine_name;

/// Writes `STEM.json` (the report) and `STEM.md` (its table) into `dir`, creating it.
pub fn write_json_and_table(
    dir: &Path,
    stem: &str,
    report: &impl Serialize,
    table: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let md = dir.join(format!("{stem}.md"));
    std::fs::write(&md, table).with_context(|| format!("writing {}", md.display()))
}

/// Each model name once, in the order first seen (the panels' and rows' order in a report).
pub fn models_in_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut models: Vec<String> = Vec::new();
    for name in names {
        if !models.iter().any(|m| m == name) {
            models.push(name.to_string());
        }
    }
    models
}

impl DecodeReport {
    fn find(&self, engine: &str, model: &str, batch: usize) -> Option<&DecodePoint> {
        self.points
            .iter()
            .find(|p| p.engine == engine && p.model == model && p.batch == batch)
    }

    fn models(&self) -> Vec<String> {
        models_in_order(self.points.iter().map(|p| p.model.as_str()))
    }

    /// Markdown table: one row per (model, batch).
    pub fn table(&self) -> String {
        let w = &self.workload;
        let mut out = format!(
            "Decode throughput, {} ({}), {} threads, prompt {} tokens, {} new tokens, greedy, \
             median of {} runs\n\n| model | batch | grlhf tok/s | transformers tok/s | grlhf / transformers |\n\
             |---|---:|---:|---:|---:|\n",
            self.machine, w.dtype, w.threads, w.prompt_len, w.new_tokens, w.repeats
        );
        for model in self.models() {
            for &batch in &w.batches {
                let ours = self.find("grlhf", &model, batch);
                let peer = self.find("transformers", &model, batch);
                let fmt = |p: Option<&DecodePoint>| {
                    p.map_or("—".to_string(), |p| format!("{:.1}", p.tokens_per_second))
                };
                let ratio = match (ours, peer) {
                    (Some(a), Some(b)) => {
                        format!("{:.2}×", a.tokens_per_second / b.tokens_per_second)
                    }
                    _ => "—".to_string(),
                };
                out.push_str(&format!(
                    "| {model} | {batch} | {} | {} | {ratio} |\n",
                    fmt(ours),
                    fmt(peer)
                ));
            }
        }
        out
    }

    /// Writes `decode.json`, `decode.md` and `decode.png` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json_and_table(dir, "decode", self, &self.table())?;
        let panels: Vec<BarPanel> = self
            .models()
            .into_iter()
            .map(|model| BarPanel {
                title: format!("{model} ({})", self.workload.device),
                groups: self
                    .workload
                    .batches
                    .iter()
                    .map(|b| format!("batch {b}"))
                    .collect(),
                series: ["grlhf", "transformers"]
                    .iter()
                    .map(|engine| {
                        let values = self
                            .workload
                            .batches
                            .iter()
                            .map(|&b| {
                                self.find(engine, &model, b)
                                    .map_or(0.0, |p| p.tokens_per_second)
                            })
                            .collect();
                        (engine.to_string(), values)
                    })
                    .collect(),
                y_label: "generated tokens / s".to_string(),
            })
            .collect();
        grouped_bars(&dir.join("decode.png"), &panels)
    }
}
