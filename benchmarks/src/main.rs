//! `grlhf-bench`: grlhf's benchmark harness.
//!
//! `grlhf-bench decode` measures the generation engine's decode throughput on checkpoints and
//! compares it with transformers' `generate` (`benchmarks/decode_peer.py`, run by this harness
//! on the same checkpoints, machine and thread count, alternating with grlhf point by point).

mod decode;
mod plot;
mod report;
mod vision;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use decode::{DecodePoint, DecodeWorkload, NamedModel};
use grlhf_models::device::{parse_device, parse_dtype};

#[derive(Parser)]
#[command(name = "grlhf-bench", about = "grlhf benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode tokens/s of the generation engine, with the transformers ratio.
    Decode {
        /// Checkpoints as NAME=DIR (repeatable).
        #[arg(long = "model", required = true)]
        models: Vec<NamedModel>,
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 16)]
        prompt_len: usize,
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// libtorch intra-op threads (default: all logical CPUs).
        #[arg(long)]
        threads: Option<i32>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Python with torch + transformers, to measure transformers as the peer
        /// (omit to measure grlhf alone).
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// Where decode.json / decode.md / decode.png go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Qwen2-VL vision encoding (images/s) and multimodal decode (tokens/s), with the
    /// transformers ratio (checkpoints from `benchmarks/vision_peer.py --create`).
    Vision {
        /// Checkpoints as NAME=DIR (repeatable).
        #[arg(long = "model", required = true)]
        models: Vec<NamedModel>,
        #[arg(long, default_value_t = 4)]
        images: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        text_len: usize,
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(long)]
        threads: Option<i32>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value = "f32")]
        dtype: String,
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// Where vision.json / vision.md / vision.png go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Redraws vision.png from a vision.json written earlier (e.g. fetched from a GPU machine).
    VisionPlot {
        /// The vision.json to read.
        json: PathBuf,
        /// The PNG to write.
        png: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Vision {
            models,
            images,
            batch,
            text_len,
            new_tokens,
            repeats,
            threads,
            device,
            dtype,
            peer_python,
            out,
        } => {
            anyhow::ensure!(
                repeats >= 1 && images >= 1 && batch >= 1,
                "counts must be positive"
            );
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get()) as i32
            });
            tch::set_num_threads(threads);
            let workload = vision::VisionWorkload {
                images,
                batch,
                text_len,
                new_tokens,
                repeats,
                threads,
                device: device.clone(),
                dtype: dtype.clone(),
            };
            let (dev, kind) = (parse_device(&device)?, parse_dtype(&dtype)?);
            let mut points = Vec::new();
            for m in &models {
                points.extend(vision::measure(
                    m,
                    &workload,
                    dev,
                    kind,
                    peer_python.as_deref(),
                )?);
            }
            let machine = report::machine_name(&device);
            let table = vision::table(&machine, &workload, &points);
            std::fs::create_dir_all(&out)?;
            let json =
                serde_json::json!({"machine": machine, "workload": workload, "points": points});
            std::fs::write(
                out.join("vision.json"),
                serde_json::to_string_pretty(&json)?,
            )?;
            std::fs::write(out.join("vision.md"), &table)?;
            vision::plot(&out.join("vision.png"), &machine, &points)?;
            println!("{table}");
            println!("wrote {}/vision.{{json,md,png}}", out.display());
        }
        Command::VisionPlot { json, png } => {
            let text = std::fs::read_to_string(&json)
                .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
            let points: Vec<DecodePoint> = serde_json::from_value(value["points"].clone())
                .map_err(|e| anyhow::anyhow!("{}: field `points`: {e}", json.display()))?;
            let machine = value["machine"].as_str().unwrap_or("unknown machine");
            vision::plot(&png, machine, &points)?;
            println!("wrote {}", png.display());
        }
        Command::Decode {
            models,
            batches,
            prompt_len,
            new_tokens,
            repeats,
            threads,
            device,
            dtype,
            peer_python,
            out,
        } => {
            anyhow::ensure!(repeats >= 1, "--repeats must be at least 1");
            anyhow::ensure!(
                !batches.is_empty() && !batches.contains(&0),
                "--batches must be positive"
            );
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get()) as i32
            });
            tch::set_num_threads(threads);
            let workload = DecodeWorkload {
                batches,
                prompt_len,
                new_tokens,
                repeats,
                threads,
                device: device.clone(),
                dtype: dtype.clone(),
            };
            let (dev, kind) = (parse_device(&device)?, parse_dtype(&dtype)?);
            let mut points: Vec<DecodePoint> = Vec::new();
            for m in &models {
                points.extend(decode::measure(
                    m,
                    &workload,
                    dev,
                    kind,
                    peer_python.as_deref(),
                )?);
            }
            let report = report::DecodeReport {
                machine: report::machine_name(&device),
                workload,
                points,
            };
            report.write(&out)?;
            println!("{}", report.table());
            println!("wrote {}/decode.{{json,md,png}}", out.display());
        }
    }
    Ok(())
}
