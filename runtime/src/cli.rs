//! The `grlhf` command line: the clap definitions, logging, and the dispatch to one module per
//! command under `cli/commands/`. It is a library entry point, so a user's crate ships its own
//! `grlhf` binary with its own kinds registered:
//!
//! ```no_run
//! use std::sync::Arc;
//! use grlhf_actors::registry::Registry;
//!
//! fn main() -> std::process::ExitCode {
//!     grlhf::cli::main(Arc::new(|| {
//!         let mut registry = Registry::with_builtins();
//!         // my_crate::register(&mut registry);
//!         registry
//!     }))
//! }
//! ```

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use commands::values::{Dtype, HeldOutSet, Preset};
use grlhf_actors::registry::Registry;

use crate::pipeline::PipelineStage;
use crate::pipeline_config::Variant;
use crate::warm_start::Target;

/// Builds the registry of the kinds a config may name (called once per run; a pipeline runs
/// several).
pub type Kinds = Arc<dyn Fn() -> Registry + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "grlhf",
    version,
    about = "Asynchronous Generative RLHF-V for multimodal language models"
)]
struct Cli {
    /// Log as JSON lines (on stderr; filter with RUST_LOG).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report libtorch, CUDA, devices, cuDNN and thread counts.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Look inside a model.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Generate continuations of a prompt.
    Generate(GenerateArgs),
    /// Run an RL topology from a TOML config (see configs/).
    Run(RunArgs),
    /// Start a multi-process run on this machine: a head listening on 127.0.0.1 and one worker
    /// per node that `[generator] nodes` names (each a `grlhf run` process); waits for the head
    /// and ends with its status (docs/distributed.md).
    Launch(LaunchArgs),
    /// Measure async-RL throughput of a run config: bench.json / bench.md, a Perfetto trace and
    /// Gantt chart, a sweep (sync vs async at each η, and the `[bench.sweep]` axes), a check of
    /// the simulator against the real run, and simulated scale runs (`[bench] scale`).
    Bench(BenchArgs),
    /// Generative RLHF-V end to end: warm start (policy SFT, GRM SFT, score-only RM), stage 1
    /// (GRM trained by RL), stage 2 (policy RL per variant), evaluation and report.
    Pipeline(PipelineArgs),
    /// The paper's comparison: the pipeline with every baseline (score-only RM + GRPO, GRM after
    /// SFT only, GRM+RL with single comparison, the full method), optionally with a sweep over
    /// the number of candidates n.
    Reproduce(ReproduceArgs),
    /// Warm start: supervised fine-tuning of a policy (world answers) or a GRM (world
    /// judgments), measured on held-out prompts or pairs before and after.
    Sft(SftArgs),
    /// Measure a GRM on the world's held-out pairs: parse rate and pairwise accuracy in
    /// distribution and on each out-of-distribution split.
    EvalGrm(EvalGrmArgs),
    /// Write or inspect datasets (the embedded world, or JSONL prompt / preference files).
    #[command(subcommand)]
    Data(DataCommand),
    /// Write a randomly initialised Qwen2 checkpoint (config.json + model.safetensors).
    InitModel(InitModelArgs),
    /// Write a run's checkpoint (default: the newest that verifies) as a model directory that
    /// transformers loads.
    Export {
        /// The run directory.
        run_dir: PathBuf,
        /// Output directory (must be empty or absent).
        #[arg(long)]
        out: PathBuf,
        /// The checkpoint's step (see RUN_DIR/checkpoints/step-NNNNNN).
        #[arg(long)]
        step: Option<u64>,
    },
    /// Draw a run's plots (RUN_DIR/plots/: reward, KL, clip fraction, response length,
    /// staleness, throughput, held-out evaluation) from its metrics.jsonl and eval.jsonl; works
    /// on a running, finished or killed run, and on a pipeline directory (every run below it).
    Plot {
        /// A run directory, or a directory holding run directories.
        run_dir: PathBuf,
    },
    /// List every registered kind per role (judges, post-judge stages, workflows, prompt
    /// sources, losses, metrics) with its settings fields.
    Kinds {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

// The argument structs carry no doc comment of their own: the variant's is the command's help.

#[derive(Args)]
struct RunArgs {
    config: PathBuf,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    no_progress: bool,
    /// Continue the run in this directory from its newest checkpoint that verifies (the
    /// config's `run_dir` is ignored; `steps` may be raised to train further).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Be the head of a multi-process run: listen for workers here (the generators
    /// `[generator] nodes` places on workers run there). A non-loopback address needs
    /// GRLHF_CLUSTER_COOKIE (docs/distributed.md).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "join")]
    listen: Option<std::net::SocketAddr>,
    /// Be a worker of the run whose head listens at HEAD:PORT: host the engines of the
    /// generators placed on `--node`, and exit when the head's session ends.
    #[arg(
        long,
        value_name = "HEAD:PORT",
        requires = "node",
        conflicts_with = "resume"
    )]
    join: Option<std::net::SocketAddr>,
    /// This worker's node name, as `[generator] nodes` spells it.
    #[arg(long, value_name = "NAME", requires = "join")]
    node: Option<String>,
    /// A worker of a simulated multi-process bench: host simulated generators and judges with
    /// this cost model (a `profile.json`), not models. `grlhf bench` starts such workers.
    #[arg(long, value_name = "COST_MODEL", requires = "join")]
    simulate: Option<PathBuf>,
}

#[derive(Args)]
struct LaunchArgs {
    config: PathBuf,
    /// The head's port (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct BenchArgs {
    config: PathBuf,
    /// Output directory (default: target/bench/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Learner steps per run (default: `[bench] steps`, else the config's `steps`).
    #[arg(long)]
    steps: Option<u64>,
    /// Simulate every role with this cost model (a `profile.json` written by a real bench).
    #[arg(long)]
    simulate: Option<PathBuf>,
    /// Measure the baseline only.
    #[arg(long)]
    no_sweep: bool,
    /// Skip the simulated scale runs.
    #[arg(long)]
    no_scale: bool,
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct PipelineArgs {
    config: PathBuf,
    /// Run one stage alone from saved checkpoints.
    #[arg(long)]
    stage: Option<PipelineStage>,
    /// Stage-2 variants (comma-separated; default: the config's `variants`).
    #[arg(long, value_delimiter = ',')]
    variants: Vec<Variant>,
    /// Run the pipeline once per seed (in RUN_DIR/seed-N), then report every number as
    /// mean ± SE across seeds and judge each claim across them (seeds.md).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct ReproduceArgs {
    config: PathBuf,
    /// Candidate counts for the sweep, e.g. 2,3,4,6,8 (the full method and the score-only
    /// baseline at each n).
    #[arg(long, value_delimiter = ',')]
    sweep_n: Vec<usize>,
    /// Run one stage alone from saved checkpoints.
    #[arg(long)]
    stage: Option<PipelineStage>,
    /// Run the whole reproduction once per seed (in RUN_DIR/seed-N), then report every
    /// number as mean ± SE across seeds and judge each claim across them (seeds.md).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct SftArgs {
    /// What to warm-start: a policy or a generative reward model.
    #[arg(long, default_value = "policy")]
    target: Target,
    /// A Qwen2-VL checkpoint directory, or world:tiny / world:small.
    #[arg(long, default_value = "world:tiny")]
    model: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 300)]
    steps: u64,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Demonstrations generated from the world.
    #[arg(long, default_value_t = 2000)]
    world_size: usize,
    /// Share of correct answers among policy demonstrations.
    #[arg(long, default_value_t = 1.0)]
    sft_quality: f64,
    /// Held-out evaluation: prompts per family (policy) and pairs (GRM).
    #[arg(long, default_value_t = 8)]
    eval_per_family: usize,
    #[arg(long, default_value_t = 100)]
    eval_pairs: usize,
    /// The held-out set measured before and after: `validation` (choose settings here) or
    /// `evaluation` (report; also measures the GRM's out-of-distribution splits).
    #[arg(long, default_value = "validation")]
    eval_split: HeldOutSet,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Linear warm-up steps of the learning rate.
    #[arg(long, default_value_t = 10)]
    warmup_steps: u64,
    /// Train and evaluate a blind twin: every image replaced by a blank one (the grounding
    /// check's control).
    #[arg(long)]
    blind: bool,
    /// Train only the vision merger and the language model; the vision tower keeps its
    /// initial weights.
    #[arg(long)]
    freeze_vision_tower: bool,
}

#[derive(Args)]
struct EvalGrmArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[arg(long, default_value_t = 80)]
    max_new_tokens: usize,
    /// `evaluation` (the test pairs and the three out-of-distribution splits) or
    /// `validation` (the validation pairs, where settings are chosen).
    #[arg(long, default_value = "evaluation")]
    split: HeldOutSet,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InitModelArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Size preset.
    #[arg(long, default_value = "tiny")]
    preset: Preset,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Storage dtype.
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write the embedded multimodal world (JSONL + PNG + tokenizer.json) to a folder.
    Generate {
        /// Output folder (must be empty or absent unless --force).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Training prompts and pairs; test splits get n/4, evaluation n/28 per family.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Write into a non-empty folder (files of the same name are replaced).
        #[arg(long)]
        force: bool,
    },
    /// Print records of a prompt, preference or warm-start JSONL file, with oracle scores.
    Show {
        file: PathBuf,
        /// How many records to print.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
        /// Skip bad lines (reported on stderr) instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
}

#[derive(Subcommand)]
enum InspectCommand {
    /// Print `{"shape": [...], "logits": [...]}` for the last position (or all with --all).
    Logits(LogitsArgs),
}

#[derive(Args)]
struct LogitsArgs {
    /// Hugging Face model directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Token ids, space- or comma-separated. For a vision-language checkpoint each
    /// image_token_id stands for one --image, in order.
    #[arg(long)]
    tokens: String,
    /// An image file (PNG/JPEG) for a Qwen2-VL / Qwen2.5-VL checkpoint; repeatable.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// Logits for every position instead of the last.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct GenerateArgs {
    /// Hugging Face model directory (config.json + safetensors [+ tokenizer.json]).
    #[arg(long)]
    model: PathBuf,
    /// Prompt token ids, space- or comma-separated.
    #[arg(long, conflicts_with = "prompt", required_unless_present = "prompt")]
    tokens: Option<String>,
    /// Prompt text (needs tokenizer.json in the model directory).
    #[arg(long)]
    prompt: Option<String>,
    /// Wrap --prompt as a user turn (images first) in the checkpoint's own chat template
    /// (chat_template.jinja, chat_template.json or tokenizer_config.json), else Qwen2's.
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// A system turn before the --chat prompt (default: whatever the template adds).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// An image file (PNG/JPEG) for a Qwen2-VL / Qwen2.5-VL checkpoint; repeatable. In
    /// --tokens (or a --prompt without --chat) each image token stands for one image, in order.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Greedy decoding. Without --greedy or --temperature, decoding follows the checkpoint's
    /// generation_config.json (do_sample, temperature, top_p, top_k, repetition_penalty), else
    /// greedy.
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    /// Sample at this temperature (overrides generation_config.json).
    #[arg(long)]
    temperature: Option<f64>,
    /// Overrides generation_config.json's top_p (sampling only).
    #[arg(long)]
    top_p: Option<f64>,
    /// Overrides generation_config.json's top_k (sampling only).
    #[arg(long)]
    top_k: Option<i64>,
    /// transformers' repetition penalty (1: none); overrides generation_config.json's.
    #[arg(long)]
    repetition_penalty: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continuations to sample in one batch.
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// Stop token ids (default: the config's eos ids and <|im_end|>); repeat or comma-separate.
    #[arg(long, value_delimiter = ',', conflicts_with = "ignore_eos")]
    stop_token: Option<Vec<i64>>,
    /// Never stop early: always generate --max-new-tokens tokens.
    #[arg(long)]
    ignore_eos: bool,
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Parses the command line and runs the command with the kinds `registry` builds; logs go to
/// stderr (filter with RUST_LOG).
pub fn main(registry: Kinds) -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Hands each command to its module.
fn run(cli: Cli, registry: Kinds) -> Result<()> {
    match cli.command {
        Command::Doctor { json } => commands::doctor::doctor(json),
        Command::Inspect(InspectCommand::Logits(args)) => commands::inspect::logits(args),
        Command::Generate(args) => commands::generate::generate(args),
        Command::Run(args) => commands::run::run(args, registry),
        Command::Launch(args) => commands::launch::launch(args),
        Command::Bench(args) => commands::bench::bench(args, registry),
        Command::Pipeline(args) => commands::pipeline::pipeline(args, registry),
        Command::Reproduce(args) => commands::reproduce::reproduce(args, registry),
        Command::Export { run_dir, out, step } => {
            let used = crate::export::export(&run_dir, step, &out)?;
            println!("{} → {}", used.display(), out.display());
            Ok(())
        }
        Command::Kinds { json } => commands::kinds::kinds(registry(), json),
        Command::Plot { run_dir } => commands::plot::plot(&run_dir),
        Command::Sft(args) => commands::sft::sft(args),
        Command::EvalGrm(args) => commands::eval_grm::eval_grm(args),
        Command::Data(DataCommand::Generate {
            out,
            seed,
            n,
            force,
        }) => commands::data::generate(&out, seed, n, force),
        Command::Data(DataCommand::Show {
            file,
            count,
            skip_bad,
        }) => commands::data::show(&file, count, skip_bad),
        Command::InitModel(args) => commands::init_model::init_model(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_clap_definitions_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
