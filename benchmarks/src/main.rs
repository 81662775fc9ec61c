//! `grlhf-bench`: grlhf's benchmark harness.
//!
//! `grlhf-bench decode` measures the generation engine's decode throughput on checkpoints and
//! compares it with transformers' `generate` (`benchmarks/decode_peer.py`, run by this harness
//! on the same checkpoints, machine and thread count, alternating with grlhf point by point);
//! `grlhf-bench slots` measures continuous batching against one plain batch in the same run.

mod control_plane;
mod decode;
mod decode_compare;
mod memory;
mod report;
mod slots;
mod vision;
mod weights;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use decode::{DecodePoint, DecodeWorkload, NamedModel};
use grlhf_models::device::{parse_device, parse_dtype};

#[derive(Parser)]
#[command(name = "grlhf-bench", about = "grlhf benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Arguments every measuring subcommand shares.
#[derive(Args)]
struct RunArgs {
    /// Checkpoints as NAME=DIR (repeatable).
    #[arg(long = "model", required = true)]
    models: Vec<NamedModel>,
    /// Timed runs per point (after one warm-up).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// libtorch intra-op threads (default: all logical CPUs); the peer gets the same.
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
    /// Where the report files go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

impl RunArgs {
    /// Sets libtorch's thread count and returns it with the parsed device and dtype.
    fn prepare(&self) -> Result<(i32, tch::Device, tch::Kind)> {
        anyhow::ensure!(self.repeats >= 1, "--repeats must be at least 1");
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
        tch::set_num_threads(threads);
        Ok((
            threads,
            parse_device(&self.device)?,
            parse_dtype(&self.dtype)?,
        ))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Decode tokens/s of the generation engine, with the transformers ratio
    /// (writes decode.json / decode.md / decode.png).
    Decode {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 16)]
        prompt_len: usize,
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
    },
    /// Qwen2-VL vision encoding (images/s) and multimodal decode (tokens/s), with the
    /// transformers ratio (checkpoints from `benchmarks/vision_peer.py --create`; writes
    /// vision.json / vision.md / vision.png).
    Vision {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value_t = 4)]
        images: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        text_len: usize,
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
    },
    /// The weight data plane (`grlhf-cluster`) against raw loopback TCP in the same run
    /// (writes weights.json / weights.md).
    Weights {
        /// Model size in MiB.
        #[arg(long, default_value_t = 512)]
        mib: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long, default_value_t = 4)]
        chunk_mib: usize,
        /// Threads checking chunk digests on the subscriber (default: the subscriber's
        /// default, one per core).
        #[arg(long)]
        verify_threads: Option<usize>,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// The control plane across processes: a batch's remote call against the same instant
    /// engine in this process, per group (starts a worker copy of itself on 127.0.0.1; writes
    /// control_plane.json / control_plane.md).
    ControlPlane {
        /// Prompts per batch (each a rendered world scene).
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 8)]
        group_size: usize,
        /// Tokens per response.
        #[arg(long, default_value_t = 32)]
        tokens: usize,
        #[arg(long, default_value_t = 50)]
        repeats: usize,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Internal: run as the worker of the head at this address.
        #[arg(long, hide = true)]
        worker_of: Option<std::net::SocketAddr>,
    },
    /// Resident memory of a long `grlhf run` (telemetry must not grow with the run): RSS sampled
    /// per learner step (writes memory.json / memory.md / memory.png).
    Memory {
        /// The run config (its steps and run_dir are replaced).
        #[arg(long, default_value = "configs/bench-memory.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        steps: u64,
        /// RSS here is the reference the end is compared with.
        #[arg(long, default_value_t = 1_000)]
        warmup_step: u64,
        /// The grlhf binary to run.
        #[arg(long, default_value = "target/release/grlhf")]
        grlhf: PathBuf,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Continuous batching (`generate_in_slots`) against one plain batch of the same requests,
    /// with RL-like varied lengths (writes slots.json / slots.md / slots.png; no peer).
    Slots {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value_t = 64)]
        requests: usize,
        #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
        slots: Vec<usize>,
        #[arg(long, default_value_t = 16)]
        prompt_len: usize,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// Every this-many-th token id is a stop token (stop probability ≈ 1/N per step).
        #[arg(long, default_value_t = 32)]
        stop_every: i64,
        /// Also time each slot count with the step replayed from a CUDA graph (CUDA only).
        #[arg(long)]
        cuda_graphs: bool,
    },
    /// Compares `decode.json` files of different builds (LABEL=FILE, repeatable; files under
    /// one label are pooled) and writes decode-compare.md / decode-compare.png.
    DecodeCompare {
        #[arg(long = "run", required = true)]
        runs: Vec<decode_compare::LabelledRun>,
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
            run,
            images,
            batch,
            text_len,
            new_tokens,
        } => {
            anyhow::ensure!(
                images >= 1 && batch >= 1,
                "--images and --batch must be positive"
            );
            let (threads, dev, kind) = run.prepare()?;
            let workload = vision::VisionWorkload {
                images,
                batch,
                text_len,
                new_tokens,
                repeats: run.repeats,
                threads,
                device: run.device.clone(),
                dtype: run.dtype.clone(),
            };
            let mut points = Vec::new();
            for m in &run.models {
                points.extend(vision::measure(
                    m,
                    &workload,
                    dev,
                    kind,
                    run.peer_python.as_deref(),
                )?);
            }
            let (device, out) = (&run.device, &run.out);
            let machine = report::machine_name(device);
            let table = vision::table(&machine, &workload, &points);
            let json =
                serde_json::json!({"machine": machine, "workload": workload, "points": points});
            report::write_json_and_table(out, "vision", &json, &table)?;
            vision::plot(&out.join("vision.png"), &machine, &points)?;
            println!("{table}");
            println!("wrote {}/vision.{{json,md,png}}", out.display());
        }
        Command::ControlPlane {
            batches,
            group_size,
            tokens,
            repeats,
            out,
            worker_of,
        } => {
            if let Some(head) = worker_of {
                return control_plane::worker(head, tokens);
            }
            anyhow::ensure!(
                repeats >= 1 && group_size >= 1 && batches.iter().all(|&b| b >= 1),
                "--repeats, --group-size and --batches must be positive"
            );
            let report = control_plane::measure(&batches, group_size, tokens, repeats)?;
            let table = control_plane::table(&report);
            report::write_json_and_table(&out, "control_plane", &report, &table)?;
            println!("{table}");
            println!("wrote {}/control_plane.{{json,md}}", out.display());
        }
        Command::Weights {
            mib,
            repeats,
            chunk_mib,
            verify_threads,
            out,
        } => {
            anyhow::ensure!(
                mib >= 1 && repeats >= 1 && chunk_mib >= 1 && verify_threads != Some(0),
                "--mib, --repeats, --chunk-mib and --verify-threads must be positive"
            );
            let report = weights::measure(mib, repeats, chunk_mib << 20, verify_threads)?;
            let table = weights::table(&report);
            report::write_json_and_table(&out, "weights", &report, &table)?;
            println!("{table}");
            println!("wrote {}/weights.{{json,md}}", out.display());
        }
        Command::Memory {
            config,
            steps,
            warmup_step,
            grlhf,
            out,
        } => {
            let report = memory::measure(&grlhf, &config, steps, warmup_step, &out)?;
            let table = memory::table(&report);
            report::write_json_and_table(&out, "memory", &report, &table)?;
            memory::plot(&out.join("memory.png"), &report)?;
            println!("{table}");
            println!("wrote {}/memory.{{json,md,png}}", out.display());
        }
        Command::Slots {
            run,
            requests,
            slots,
            prompt_len,
            max_new_tokens,
            stop_every,
            cuda_graphs,
        } => {
            anyhow::ensure!(
                requests >= 1 && !slots.contains(&0) && stop_every >= 1 && max_new_tokens >= 1,
                "--requests, --slots, --stop-every and --max-new-tokens must be positive"
            );
            anyhow::ensure!(
                run.peer_python.is_none(),
                "--peer-python: the slots benchmark compares with grlhf's own plain batch"
            );
            let (threads, dev, kind) = run.prepare()?;
            let workload = slots::SlotsWorkload {
                requests,
                prompt_len,
                max_new_tokens,
                stop_every,
                slots,
                cuda_graphs,
                repeats: run.repeats,
                threads,
                device: run.device.clone(),
                dtype: run.dtype.clone(),
            };
            let mut points = Vec::new();
            for m in &run.models {
                points.extend(slots::measure(m, &workload, dev, kind)?);
            }
            let machine = report::machine_name(&run.device);
            let table = slots::table(&machine, &workload, &points);
            let out = &run.out;
            let json =
                serde_json::json!({"machine": machine, "workload": workload, "points": points});
            report::write_json_and_table(out, "slots", &json, &table)?;
            slots::plot(&out.join("slots.png"), &machine, &points)?;
            println!("{table}");
            println!("wrote {}/slots.{{json,md,png}}", out.display());
        }
        Command::DecodeCompare { runs, out } => {
            let mut labels: Vec<String> = Vec::new();
            for run in &runs {
                if !labels.contains(&run.label) {
                    labels.push(run.label.clone());
                }
            }
            let (machine, points) = decode_compare::pool(&runs)?;
            let table = decode_compare::table(&machine, &labels, &points);
            let json = serde_json::json!({"machine": machine, "labels": labels, "points": points});
            report::write_json_and_table(&out, "decode-compare", &json, &table)?;
            decode_compare::plot(&out.join("decode-compare.png"), &machine, &labels, &points)?;
            println!("{table}");
            println!("wrote {}/decode-compare.{{json,md,png}}", out.display());
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
            run,
            batches,
            prompt_len,
            new_tokens,
        } => {
            anyhow::ensure!(
                !batches.is_empty() && !batches.contains(&0),
                "--batches must be positive"
            );
            let (threads, dev, kind) = run.prepare()?;
            let workload = DecodeWorkload {
                batches,
                prompt_len,
                new_tokens,
                repeats: run.repeats,
                threads,
                device: run.device.clone(),
                dtype: run.dtype.clone(),
            };
            let mut points: Vec<DecodePoint> = Vec::new();
            for m in &run.models {
                points.extend(decode::measure(
                    m,
                    &workload,
                    dev,
                    kind,
                    run.peer_python.as_deref(),
                )?);
            }
            let out = &run.out;
            let report = report::DecodeReport {
                machine: report::machine_name(&run.device),
                workload,
                points,
            };
            report.write(out)?;
            println!("{}", report.table());
            println!("wrote {}/decode.{{json,md,png}}", out.display());
        }
    }
    Ok(())
}
