//! Multimodal throughput of grlhf's Qwen2-VL against transformers on the same checkpoints
//! (written by `benchmarks/vision_peer.py --create`): vision-tower encoding in images/s
//! (preprocessing excluded on both sides) and greedy decoding of prompts holding one 448×448
//! image in generated tokens/s. Same device, dtype and thread count; transformers is measured
//! first for each checkpoint, then grlhf; medians of `repeats` runs after a warm-up.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::qwen2_vl::{MultimodalPrompt, Qwen2VlForConditionalGeneration};
use grlhf_models::GenerationConfig;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::decode::{median, run_python_peer, DecodePoint, NamedModel};
use crate::report::models_in_order;
use grlhf::charts::{grouped_bars, BarPanel};

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct VisionWorkload {
    pub images: usize,
    pub batch: usize,
    pub text_len: usize,
    pub new_tokens: usize,
    pub repeats: usize,
    pub threads: i32,
    pub device: String,
    pub dtype: String,
}

const IMAGE_TOKEN: i64 = 5;
const VISION_START: i64 = 3;
const VISION_END: i64 = 4;

/// The prompt both engines use (must equal `vision_peer.py`'s `prompt_ids`).
fn vision_prompt(image_tokens: i64, text_len: usize, vocab: i64) -> Vec<i64> {
    let mut ids = vec![VISION_START];
    ids.extend(std::iter::repeat_n(IMAGE_TOKEN, image_tokens as usize));
    ids.push(VISION_END);
    ids.extend((0..text_len as i64).map(|i| 7 + (i * 7919 + 13) % (vocab - 7)));
    ids
}

fn timed(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<(f64, Vec<f64>)> {
    let mut times = Vec::new();
    for i in 0..=repeats {
        let start = Instant::now();
        run()?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok((median(&times), times))
}

fn point(
    model: &str,
    batch: usize,
    (med, all): (f64, Vec<f64>),
    per_s: f64,
    metric: &str,
) -> DecodePoint {
    eprintln!("grlhf        {model:>6} {metric} batch {batch}: {per_s:.1}/s ({med:.3} s)");
    DecodePoint {
        engine: "grlhf".to_string(),
        model: model.to_string(),
        batch,
        seconds_median: med,
        seconds_all: all,
        tokens_per_second: per_s,
        metric: Some(metric.to_string()),
    }
}

/// Measures transformers (through `python`) and then grlhf on one checkpoint.
pub fn measure(
    spec: &NamedModel,
    w: &VisionWorkload,
    device: Device,
    kind: Kind,
    python: Option<&Path>,
) -> Result<Vec<DecodePoint>> {
    let mut points = Vec::new();
    if let Some(python) = python {
        points.extend(run_peer(python, spec, w)?);
    }
    let dir = &spec.dir;
    let model = Qwen2VlForConditionalGeneration::load(dir, device, kind)
        .with_context(|| format!("loading {}", dir.display()))?;
    let processor = ImageProcessorConfig::from_file(dir)?;
    let image = RgbImage::open(dir.join("bench_image.png"))?;

    let many = preprocess(&vec![image.clone(); w.images], &processor)?;
    let pixels = many.pixel_values.to_device(device);
    let measured = timed(w.repeats, || {
        let features = tch::no_grad(|| model.encode_images(&pixels, &many.image_grid_thw))?;
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        anyhow::ensure!(features.size()[0] > 0, "no features");
        Ok(())
    })?;
    let per_s = w.images as f64 / measured.0;
    points.push(point(
        &spec.name,
        w.images,
        measured,
        per_s,
        "vision_images_per_s",
    ));

    let one = preprocess(&[image], &processor)?;
    let tokens = one.tokens_per_image(processor.merge_size)[0];
    let prompt = MultimodalPrompt {
        tokens: vision_prompt(tokens, w.text_len, model.config().text_config.vocab_size),
        grids: one.image_grid_thw.clone(),
    };
    let prompts = vec![prompt; w.batch];
    let copies: Vec<Tensor> = (0..w.batch)
        .map(|_| one.pixel_values.shallow_clone())
        .collect();
    let batch_pixels = Tensor::cat(&copies, 0).to_device(device);
    let config = GenerationConfig::greedy(w.new_tokens);
    let measured = timed(w.repeats, || {
        let out = model.generate(&prompts, Some(&batch_pixels), &config)?;
        anyhow::ensure!(
            out.iter().all(|s| s.tokens.len() == w.new_tokens),
            "stopped early"
        );
        Ok(())
    })?;
    let per_s = (w.batch * w.new_tokens) as f64 / measured.0;
    points.push(point(
        &spec.name,
        w.batch,
        measured,
        per_s,
        "multimodal_decode_tokens_per_s",
    ));
    Ok(points)
}

fn run_peer(python: &Path, spec: &NamedModel, w: &VisionWorkload) -> Result<Vec<DecodePoint>> {
    let args = [
        ("--images", w.images.to_string()),
        ("--batch", w.batch.to_string()),
        ("--text-len", w.text_len.to_string()),
        ("--new-tokens", w.new_tokens.to_string()),
        ("--repeats", w.repeats.to_string()),
        ("--threads", w.threads.to_string()),
        ("--device", w.device.clone()),
        ("--dtype", w.dtype.clone()),
    ];
    run_python_peer(python, "vision_peer.py", spec, &args)
}

/// The markdown table: one row per (model, metric).
pub fn table(machine: &str, w: &VisionWorkload, points: &[DecodePoint]) -> String {
    let mut out = format!(
        "Multimodal throughput, {machine} ({}), {} threads; vision: {} images of 448×448 per call; \
         decode: batch {}, one image + {} text tokens, {} new tokens, greedy; median of {} runs\n\n\
         | model | measure | grlhf | transformers | grlhf / transformers |\n|---|---|---:|---:|---:|\n",
        w.dtype, w.threads, w.images, w.batch, w.text_len, w.new_tokens, w.repeats
    );
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in points {
        let key = (p.model.clone(), p.metric.clone().unwrap_or_default());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (model, metric) in keys {
        let find = |engine: &str| {
            points.iter().find(|p| {
                p.engine == engine
                    && p.model == model
                    && p.metric.as_deref() == Some(metric.as_str())
            })
        };
        let (ours, peer) = (find("grlhf"), find("transformers"));
        let fmt = |p: Option<&DecodePoint>| {
            p.map_or("—".to_string(), |p| format!("{:.1}", p.tokens_per_second))
        };
        let ratio = match (ours, peer) {
            (Some(a), Some(b)) => format!("{:.2}×", a.tokens_per_second / b.tokens_per_second),
            _ => "—".to_string(),
        };
        out.push_str(&format!(
            "| {model} | {metric} | {} | {} | {ratio} |\n",
            fmt(ours),
            fmt(peer)
        ));
    }
    out
}

/// One PNG panel per measure, grlhf and transformers side by side for each checkpoint.
pub fn plot(path: &Path, machine: &str, points: &[DecodePoint]) -> Result<()> {
    let models = models_in_order(points.iter().map(|p| p.model.as_str()));
    let panels: Vec<BarPanel> = [
        ("vision_images_per_s", "vision encoding", "images / s"),
        (
            "multimodal_decode_tokens_per_s",
            "decode with an image",
            "generated tokens / s",
        ),
    ]
    .iter()
    .map(|(metric, title, unit)| BarPanel {
        title: format!(
            "{title} ({})",
            machine.split(" (").next().unwrap_or(machine)
        ),
        groups: models.clone(),
        series: ["grlhf", "transformers"]
            .iter()
            .map(|engine| {
                let values = models
                    .iter()
                    .map(|m| {
                        points
                            .iter()
                            .find(|p| {
                                p.engine == *engine
                                    && &p.model == m
                                    && p.metric.as_deref() == Some(*metric)
                            })
                            .map_or(0.0, |p| p.tokens_per_second)
                    })
                    .collect();
                (engine.to_string(), values)
            })
            .collect(),
        y_label: unit.to_string(),
    })
    .collect();
    grouped_bars(path, &panels)
}
