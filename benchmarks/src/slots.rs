//! Continuous batching against one plain batch, in the same run: `requests` sampled
//! continuations whose lengths vary as RL rollouts' do, decoded once as a single batch (every row
//! until the longest ends) and once per slot count through `generate_in_slots` (a finished
//! row's slot goes to the next waiting request).
//!
//! Lengths come from the stop tokens: every `stop_every`-th token id stops a sequence, so on a
//! random model (a near-uniform next-token distribution) each step stops with probability about
//! `1 / stop_every` and lengths are roughly geometric, capped at `max_new_tokens`: many short
//! answers and a long tail. Both modes use the same seed, so request `i` samples the same tokens
//! either way (`grlhf_models::slot_decoding`), and the generated-token counts agree.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use grlhf::charts::{grouped_bars, BarPanel};
use grlhf_models::generation::generate_in_slots;
use grlhf_models::{
    generate, GeneratedSequence, GenerationConfig, Qwen2ForCausalLM, SamplingParams,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::decode::{bench_prompt, median, NamedModel};
use crate::report::models_in_order;

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotsWorkload {
    pub requests: usize,
    pub prompt_len: usize,
    pub max_new_tokens: usize,
    pub stop_every: i64,
    pub slots: Vec<usize>,
    /// Also time every slot count with the step replayed from a CUDA graph.
    #[serde(default)]
    pub cuda_graphs: bool,
    pub repeats: usize,
    pub threads: i32,
    pub device: String,
    pub dtype: String,
}

/// One mode's timing on one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotsPoint {
    pub model: String,
    /// `None`: one plain batch of all requests.
    pub slots: Option<usize>,
    #[serde(default)]
    pub cuda_graphs: bool,
    pub seconds_median: f64,
    pub seconds_all: Vec<f64>,
    pub generated_tokens: usize,
    pub tokens_per_second: f64,
    pub mean_length: f64,
    pub longest: usize,
}

impl SlotsPoint {
    fn mode(&self) -> String {
        match (self.slots, self.cuda_graphs) {
            (None, _) => "plain batch".to_string(),
            (Some(s), false) => format!("{s} slots"),
            (Some(s), true) => format!("{s} slots, graphs"),
        }
    }
}

/// Times the plain batch and every slot count on one checkpoint, alternating modes per repeat
/// so that load changes on a shared machine hit all of them alike.
pub fn measure(
    model_spec: &NamedModel,
    workload: &SlotsWorkload,
    device: Device,
    kind: Kind,
) -> Result<Vec<SlotsPoint>> {
    let NamedModel { name, dir } = model_spec;
    let model = Qwen2ForCausalLM::load(dir, device, kind)
        .with_context(|| format!("loading {}", dir.display()))?;
    let vocab = model.config().vocab_size;
    // Distinct prompts: the same deterministic ids, rotated per request.
    let base = bench_prompt(workload.prompt_len + workload.requests, vocab);
    let prompts: Vec<Vec<i64>> = (0..workload.requests)
        .map(|i| base[i..i + workload.prompt_len].to_vec())
        .collect();
    let config = GenerationConfig {
        max_new_tokens: workload.max_new_tokens,
        sampling: SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        },
        stop_token_ids: (0..vocab).step_by(workload.stop_every as usize).collect(),
        seed: 0,
        poll_every: None,
        cuda_graphs: false,
    };
    let graph_modes = workload.cuda_graphs.then_some(true);
    let modes: Vec<(Option<usize>, bool)> = std::iter::once((None, false))
        .chain(workload.slots.iter().map(|&s| (Some(s), false)))
        .chain(
            graph_modes
                .into_iter()
                .flat_map(|g| workload.slots.iter().map(move |&s| (Some(s), g))),
        )
        .collect();
    let run =
        |(slots, cuda_graphs): (Option<usize>, bool)| -> Result<(f64, Vec<GeneratedSequence>)> {
            let start = Instant::now();
            let out = match slots {
                None => generate(&model, &prompts, &config)?,
                Some(slots) => {
                    let config = GenerationConfig {
                        cuda_graphs,
                        ..config.clone()
                    };
                    generate_in_slots(&model, &prompts, slots, &config)?
                }
            };
            Ok((start.elapsed().as_secs_f64(), out))
        };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut outputs: Vec<Vec<GeneratedSequence>> = vec![Vec::new(); modes.len()];
    for repeat in 0..=workload.repeats {
        for (m, &mode) in modes.iter().enumerate() {
            let (seconds, out) = run(mode)?;
            if repeat > 0 {
                times[m].push(seconds);
            }
            outputs[m] = out;
        }
    }
    let points: Vec<SlotsPoint> = modes
        .iter()
        .zip(times)
        .zip(&outputs)
        .map(|((&(slots, cuda_graphs), times), out)| {
            let lengths: Vec<usize> = out.iter().map(|s| s.tokens.len()).collect();
            let generated: usize = lengths.iter().sum();
            let seconds_median = median(&times);
            SlotsPoint {
                model: name.clone(),
                slots,
                cuda_graphs,
                seconds_median,
                seconds_all: times,
                generated_tokens: generated,
                tokens_per_second: generated as f64 / seconds_median,
                mean_length: generated as f64 / lengths.len().max(1) as f64,
                longest: lengths.iter().copied().max().unwrap_or(0),
            }
        })
        .collect();
    if points
        .iter()
        .any(|p| p.generated_tokens != points[0].generated_tokens)
    {
        // Same randomness per request, so only a rounding difference flipping a sampled token
        // can do this; the table shows each mode's count.
        eprintln!("warning: {name}: the modes generated different token counts");
    }
    for p in &points {
        eprintln!(
            "{name:>6} {:>12}: {:>9.1} tok/s ({:.3} s, {} tokens)",
            p.mode(),
            p.tokens_per_second,
            p.seconds_median,
            p.generated_tokens
        );
    }
    Ok(points)
}

/// Markdown table: one row per (model, mode), with the speed-up over the plain batch.
pub fn table(machine: &str, workload: &SlotsWorkload, points: &[SlotsPoint]) -> String {
    let mut out = format!(
        "Continuous batching vs one plain batch — {machine}, {}, {} threads. {} requests, prompt \
         {} tokens, up to {} new tokens, stop probability ≈ 1/{} per step; median of {} runs.\n\n\
         | model | mode | tokens | mean length | longest | s | tok/s | vs plain |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        workload.dtype,
        workload.threads,
        workload.requests,
        workload.prompt_len,
        workload.max_new_tokens,
        workload.stop_every,
        workload.repeats
    );
    for p in points {
        let plain = points
            .iter()
            .find(|q| q.model == p.model && q.slots.is_none())
            .map_or(f64::NAN, |q| q.tokens_per_second);
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {:.3} | {:.1} | {:.2}× |\n",
            p.model,
            p.mode(),
            p.generated_tokens,
            p.mean_length,
            p.longest,
            p.seconds_median,
            p.tokens_per_second,
            p.tokens_per_second / plain
        ));
    }
    out
}

/// Bars: tokens/s per mode, one panel per model.
pub fn plot(path: &Path, machine: &str, points: &[SlotsPoint]) -> Result<()> {
    let models = models_in_order(points.iter().map(|p| p.model.as_str()));
    let panels: Vec<BarPanel> = models
        .iter()
        .map(|model| {
            let mine: Vec<&SlotsPoint> = points.iter().filter(|p| &p.model == model).collect();
            BarPanel {
                title: format!("{model} — {machine}"),
                groups: mine.iter().map(|p| p.mode()).collect(),
                series: vec![(
                    "generated tokens/s".to_string(),
                    mine.iter().map(|p| p.tokens_per_second).collect(),
                )],
                y_label: "tokens/s".to_string(),
            }
        })
        .collect();
    grouped_bars(path, &panels)
}
