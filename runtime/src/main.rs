//! The `grlhf` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use grlhf::generate::{GenerateRequest, PromptInput};
use grlhf::run_config::RunConfig;
use grlhf::{data, doctor, generate, inspect, model_presets, token_list, warm_start};
use grlhf_actors::registry::Registry;
use grlhf_models::device::{parse_device, parse_dtype};
use grlhf_models::{Qwen2ForCausalLM, SamplingParams};

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
    Run {
        config: PathBuf,
        /// No progress bar (for logs and CI).
        #[arg(long)]
        no_progress: bool,
        /// Continue the run in this directory from its newest checkpoint that verifies (the
        /// config's `run_dir` is ignored; `steps` may be raised to train further).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
    },
    /// Measure async-RL throughput of a run config: bench.json / bench.md, a Perfetto trace and
    /// Gantt chart, a sweep (sync vs async at each η, and the `[bench.sweep]` axes), a check of
    /// the simulator against the real run, and simulated scale runs (`[bench] scale`).
    Bench {
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
    },
    /// Generative RLHF-V end to end: warm start (policy SFT, GRM SFT, score-only RM), stage 1
    /// (GRM trained by RL), stage 2 (policy RL per variant), evaluation and report.
    Pipeline {
        config: PathBuf,
        /// Run one stage alone from saved checkpoints: warm-start, stage1, stage2 or eval.
        #[arg(long)]
        stage: Option<String>,
        /// Stage-2 variants (comma-separated; default: the config's `variants`).
        #[arg(long, value_delimiter = ',')]
        variants: Vec<String>,
        /// Run the pipeline once per seed (in RUN_DIR/seed-N), then report every number as
        /// mean ± SE across seeds and judge each claim across them (seeds.md).
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        #[arg(long)]
        no_progress: bool,
    },
    /// The paper's comparison: the pipeline with every baseline (score-only RM + GRPO, GRM after
    /// SFT only, GRM+RL with single comparison, the full method), optionally with a sweep over
    /// the number of candidates n.
    Reproduce {
        config: PathBuf,
        /// Candidate counts for the sweep, e.g. 2,3,4,6,8 (the full method and the score-only
        /// baseline at each n).
        #[arg(long, value_delimiter = ',')]
        sweep_n: Vec<usize>,
        /// Run one stage alone from saved checkpoints: warm-start, stage1, stage2 or eval.
        #[arg(long)]
        stage: Option<String>,
        /// Run the whole reproduction once per seed (in RUN_DIR/seed-N), then report every
        /// number as mean ± SE across seeds and judge each claim across them (seeds.md).
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        #[arg(long)]
        no_progress: bool,
    },
    /// Warm start: supervised fine-tuning of a policy (world answers) or a GRM (world
    /// judgments), measured on held-out prompts or pairs before and after.
    Sft {
        /// `policy` or `grm`.
        #[arg(long, default_value = "policy")]
        target: String,
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
        eval_split: grlhf_tasks::world::HeldOut,
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
    },
    /// Measure a GRM on the world's held-out pairs: parse rate and pairwise accuracy in
    /// distribution and on each out-of-distribution split.
    EvalGrm {
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
        split: grlhf_tasks::world::HeldOut,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write or inspect datasets (the embedded world, or JSONL prompt / preference files).
    #[command(subcommand)]
    Data(DataCommand),
    /// Write a randomly initialised Qwen2 checkpoint (config.json + model.safetensors).
    InitModel {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Size preset: tiny, small, 100m or 0.5b.
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        /// Storage dtype: f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
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
    Logits {
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
        dtype: String,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
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
    /// Wrap --prompt in the Qwen2 chat template as a user turn (images first).
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// An image file (PNG/JPEG) for a Qwen2-VL / Qwen2.5-VL checkpoint; repeatable. In
    /// --tokens (or a --prompt without --chat) each image token stands for one image, in order.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Greedy decoding (the default when no --temperature is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long)]
    top_k: Option<i64>,
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
    dtype: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Doctor { json } => {
            let report = doctor::diagnose();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.render());
            }
        }
        Command::Inspect(InspectCommand::Logits {
            model,
            tokens,
            images,
            all,
            dtype,
            device,
        }) => {
            let tokens = token_list::parse_token_list(&tokens)?;
            let dump = inspect::logits(
                &model,
                &tokens,
                &images,
                all,
                parse_device(&device)?,
                parse_dtype(&dtype)?,
            )?;
            println!("{}", serde_json::to_string(&dump)?);
        }
        Command::Generate(args) => {
            let prompt = match (&args.tokens, &args.prompt) {
                (Some(tokens), _) => PromptInput::Tokens(token_list::parse_token_list(tokens)?),
                (None, Some(text)) => PromptInput::Text {
                    text: text.clone(),
                    chat: args.chat,
                },
                (None, None) => unreachable!("clap requires --tokens or --prompt"),
            };
            let sampling = match args.temperature {
                Some(temperature) if !args.greedy => SamplingParams {
                    temperature,
                    top_k: args.top_k,
                    top_p: args.top_p,
                },
                _ if args.top_k.is_some() || args.top_p.is_some() => {
                    anyhow::bail!(
                        "--top-k / --top-p need --temperature (sampling); greedy ignores them"
                    )
                }
                _ => SamplingParams::greedy(),
            };
            let request = GenerateRequest {
                model_dir: args.model,
                prompt,
                images: args.images,
                num_samples: args.num_samples,
                max_new_tokens: args.max_new_tokens,
                sampling,
                stop_token_ids: if args.ignore_eos {
                    Some(Vec::new())
                } else {
                    args.stop_token
                },
                seed: args.seed,
                device: parse_device(&args.device)?,
                kind: parse_dtype(&args.dtype)?,
            };
            let output = generate::run(&request)?;
            if args.json {
                println!("{}", serde_json::to_string(&output)?);
            } else {
                println!("{}", output.render());
            }
        }
        Command::Pipeline {
            config,
            stage,
            variants,
            seeds,
            no_progress,
        } => {
            let parsed = grlhf::pipeline_config::PipelineConfig::from_file(&config)?;
            let variants = if variants.is_empty() {
                parsed.variants.clone()
            } else {
                variants
                    .iter()
                    .map(|v| {
                        grlhf::pipeline_config::Variant::parse(v).with_context(|| {
                            format!("--variants {v}: use rm_grpo, grm_sft_grouped, grm_rl_single, grm_rl_grouped or oracle_grpo")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            if seeds.is_empty() {
                run_pipeline(parsed, config, stage, variants, vec![], no_progress)?;
            } else {
                reproduce_seeds(parsed, config, stage, &seeds, variants, vec![], no_progress)?;
            }
        }
        Command::Reproduce {
            config,
            sweep_n,
            stage,
            seeds,
            no_progress,
        } => {
            let parsed = grlhf::pipeline_config::PipelineConfig::from_file(&config)?;
            let sweep_n = if sweep_n.is_empty() {
                parsed.sweep_n.clone()
            } else {
                sweep_n
            };
            if let Some(n) = sweep_n.iter().find(|&&n| n < 2) {
                anyhow::bail!("--sweep-n {n}: need at least 2 candidates per prompt");
            }
            let variants = grlhf::pipeline_config::Variant::ALL.to_vec();
            if seeds.is_empty() {
                run_pipeline(parsed, config, stage, variants, sweep_n, no_progress)?;
            } else {
                reproduce_seeds(
                    parsed,
                    config,
                    stage,
                    &seeds,
                    variants,
                    sweep_n,
                    no_progress,
                )?;
            }
        }
        Command::Bench {
            config,
            out,
            steps,
            simulate,
            no_sweep,
            no_scale,
            no_progress,
        } => {
            let parsed = RunConfig::from_file(&config)?;
            let out = out.unwrap_or_else(|| grlhf::bench::default_out(&config));
            let output = grlhf::bench::bench(grlhf::bench::BenchRequest {
                config: parsed,
                config_path: config.clone(),
                out: out.clone(),
                steps,
                simulate,
                sweep: !no_sweep,
                scale: !no_scale,
                show_progress: !no_progress,
            })?;
            let b = &output.baseline;
            println!(
                "{}: {:.1} samples/s, step {:.3} s (ideal {:.3} s, efficiency {:.2}, bottleneck {}); {} sweep runs, {} scale runs; see {}/bench.md",
                config.display(),
                b.samples_per_s,
                b.step_s,
                b.ideal.overlap_step_s,
                b.overlap_efficiency,
                b.ideal.bottleneck,
                output.sweep.len(),
                output.scale.len(),
                out.display()
            );
        }
        Command::Run {
            config,
            no_progress,
            resume,
        } => {
            let parsed = RunConfig::from_file(&config)?;
            let registry = Registry::with_builtins();
            let outcome = match resume {
                Some(run_dir) => {
                    grlhf::run::resume(parsed, &config, registry, !no_progress, &run_dir)?
                }
                None => grlhf::run::run(parsed, &config, registry, !no_progress)?,
            };
            let s = &outcome.summary;
            println!(
                "{} steps in {:.1} s ({:?}, η = {}): reward {:.3} → {:.3}; {:.1} samples/s, {:.0} tokens/s; \
                 prompts admitted {} = trained {} + dropped {} + in flight {}; max staleness seen {}",
                s.learner_steps,
                s.wall_s,
                s.mode,
                s.max_staleness,
                s.reward_mean_first,
                s.reward_mean_last,
                s.samples_per_s,
                s.tokens_per_s,
                s.prompts_admitted,
                s.prompts_trained,
                s.prompts_dropped.values().sum::<u64>(),
                s.prompts_in_flight,
                s.max_staleness_seen
            );
            if let (Some(first), Some(last)) = (s.eval_first, s.eval_last) {
                println!("held-out evaluation: {first:.3} → {last:.3} (eval.jsonl)");
            }
            let r = &s.reliability;
            if let Some(from) = &r.resumed_from {
                println!("resumed from {}", from.display());
            }
            let restarts: u64 = r.restarts.values().sum();
            if restarts > 0 || r.skipped_steps > 0 || !r.faults_injected.is_empty() {
                println!(
                    "faults injected {:?}; restarts {restarts}; prompts issued again {}; steps skipped {}; checkpoint failures {}",
                    r.faults_injected,
                    r.prompts_reissued,
                    r.skipped_steps,
                    r.checkpoint_failures.len()
                );
            }
            println!("run directory: {}", outcome.run_dir.display());
        }
        Command::Sft {
            target,
            model,
            out,
            steps,
            batch,
            lr,
            seed,
            world_size,
            sft_quality,
            eval_per_family,
            eval_pairs,
            eval_split,
            max_new_tokens,
            warmup_steps,
            blind,
            freeze_vision_tower,
        } => {
            let target = match target.as_str() {
                "policy" => warm_start::Target::Policy,
                "grm" => warm_start::Target::Grm,
                other => anyhow::bail!("--target `{other}`: use policy or grm"),
            };
            anyhow::ensure!(
                (0.0..=1.0).contains(&sft_quality),
                "--sft-quality must be in [0, 1]"
            );
            let request = warm_start::SftRequest {
                target,
                model,
                out: out.clone(),
                config: grlhf_actors::sft::SftConfig {
                    steps,
                    batch,
                    lr,
                    seed,
                    warmup_steps,
                    freeze_vision_tower,
                    ..Default::default()
                },
                world_size,
                sft_quality,
                eval_per_family,
                eval_pairs,
                eval_split,
                max_new_tokens,
                device: tch::Device::Cpu,
                evaluate: true,
                blind,
            };
            let bar = indicatif::ProgressBar::new(steps);
            let report = warm_start::run_sft(&request, |s| {
                bar.set_position(s.step + 1);
                bar.set_message(format!("loss {:.3}", s.loss));
            })?;
            bar.finish_and_clear();
            println!(
                "{:?} SFT: {} steps on {} examples in {:.1} s, loss {:.3} → {:.3}",
                report.target,
                steps,
                report.examples,
                report.wall_s,
                report.loss_first,
                report.loss_last
            );
            if let (Some(b), Some(a)) = (&report.policy_before, &report.policy_after) {
                println!(
                    "held-out oracle score: {:.3} → {:.3} (answers finished: {:.0}% → {:.0}%)",
                    b.mean,
                    a.mean,
                    100.0 * b.finished,
                    100.0 * a.finished
                );
                for (family, score) in &a.per_family {
                    let swap = report
                        .grounding
                        .as_ref()
                        .and_then(|g| g.swap_changed_per_family.get(family))
                        .map(|c| format!("   image swap changes {:.0}%", c * 100.0))
                        .unwrap_or_default();
                    println!("  {family:<12} {score:.3}{swap}");
                }
            }
            if let (Some(b), Some(a)) = (&report.grm_before, &report.grm_after) {
                println!(
                    "held-out pairs: parsed {:.0}% → {:.0}%, accuracy {:.3} → {:.3}",
                    100.0 * b.parsed,
                    100.0 * a.parsed,
                    b.accuracy,
                    a.accuracy
                );
                for (split, eval) in &report.grm_after_ood {
                    println!(
                        "  {split:<18} parsed {:.0}%, accuracy {:.3}",
                        100.0 * eval.parsed,
                        eval.accuracy
                    );
                }
            }
            if let Some(g) = &report.grounding {
                println!("grounding: {}", g.line());
                if !g.sees {
                    eprintln!(
                        "WARNING: the model is BLIND: an image swap changes almost nothing it says"
                    );
                }
            }
            println!(
                "model: {}  (report: {})",
                report.out.display(),
                out.join("sft.json").display()
            );
        }
        Command::EvalGrm {
            model,
            seed,
            pairs,
            max_new_tokens,
            split,
            json,
        } => {
            let engine =
                grlhf_actors::vl_engine::VlEngine::load(&model, tch::Device::Cpu, tch::Kind::Float)
                    .map_err(|e| anyhow::anyhow!(e))?;
            let results = warm_start::grm_eval_all(&engine, seed, split, pairs, max_new_tokens)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for (split, eval) in &results {
                    println!(
                        "{split:<18} parsed {:>5.1}%  accuracy {:.3}  ({} pairs)",
                        100.0 * eval.parsed,
                        eval.accuracy,
                        eval.pairs
                    );
                }
            }
        }
        Command::Data(DataCommand::Generate {
            out,
            seed,
            n,
            force,
        }) => {
            data::generate(&out, seed, n, force)?;
        }
        Command::Data(DataCommand::Show {
            file,
            count,
            skip_bad,
        }) => data::show(&file, count, skip_bad)?,
        Command::InitModel {
            out,
            preset,
            seed,
            dtype,
        } => {
            let config = model_presets::preset(&preset)?;
            tch::manual_seed(seed);
            let model = Qwen2ForCausalLM::new(&config, tch::Device::Cpu, parse_dtype(&dtype)?)?;
            model
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote a random `{preset}` Qwen2 ({:.1}M parameters, {dtype}) to {}",
                config.num_parameters() as f64 / 1e6,
                out.display()
            );
        }
    }
    Ok(())
}

/// `reproduce --seeds` and `pipeline --seeds`: the whole pipeline once per seed (with these
/// stage-2 variants), then the across-seed report.
fn reproduce_seeds(
    config: grlhf::pipeline_config::PipelineConfig,
    config_path: PathBuf,
    stage: Option<String>,
    seeds: &[u64],
    variants: Vec<grlhf::pipeline_config::Variant>,
    sweep_n: Vec<usize>,
    no_progress: bool,
) -> Result<()> {
    use grlhf::seeds::{aggregate, seed_dir};
    let mut unique = seeds.to_vec();
    unique.sort_unstable();
    unique.dedup();
    anyhow::ensure!(
        unique.len() == seeds.len(),
        "--seeds {seeds:?}: a seed is listed twice"
    );
    let root = config.run_dir.clone();
    let mut reports = Vec::new();
    let mut runs = Vec::new();
    for &seed in seeds {
        let dir = seed_dir(&root, seed);
        eprintln!("==> seed {seed} ({})", dir.display());
        let mut per_seed = config.clone();
        per_seed.seed = seed;
        per_seed.run_dir = dir.clone();
        run_pipeline(
            per_seed,
            config_path.clone(),
            stage.clone(),
            variants.clone(),
            sweep_n.clone(),
            no_progress,
        )?;
        let path = dir.join("report.json");
        if !path.is_file() {
            eprintln!(
                "seed {seed} has no report yet ({}): the across-seed report needs every seed evaluated",
                path.display()
            );
            return Ok(());
        }
        let text = std::fs::read_to_string(&path)?;
        reports.push(
            serde_json::from_str::<grlhf::report::Report>(&text)
                .with_context(|| format!("{}: not a pipeline report", path.display()))?,
        );
        runs.push(dir);
    }
    let across = aggregate(seeds, &reports, runs);
    std::fs::write(
        root.join("seeds.json"),
        serde_json::to_string_pretty(&across)?,
    )?;
    std::fs::write(
        root.join("seeds.md"),
        across.markdown("Generative RLHF-V reproduction across seeds"),
    )?;
    println!("\n{}", across.terminal_summary());
    println!("report: {}", root.join("seeds.md").display());
    Ok(())
}

fn run_pipeline(
    config: grlhf::pipeline_config::PipelineConfig,
    config_path: PathBuf,
    stage: Option<String>,
    variants: Vec<grlhf::pipeline_config::Variant>,
    sweep_n: Vec<usize>,
    no_progress: bool,
) -> Result<()> {
    use grlhf::pipeline::{PipelineRequest, PipelineStage};
    let only = stage.as_deref().map(PipelineStage::parse).transpose()?;
    let run_dir = config.run_dir.clone();
    let request = PipelineRequest {
        config,
        config_path,
        only,
        variants,
        sweep_n,
        progress: !no_progress,
    };
    if let Some(report) = grlhf::pipeline::run_pipeline(&request, &Registry::with_builtins)? {
        println!("\n{}", report.terminal_summary());
        println!(
            "report: {} (plots in {})",
            run_dir.join("report.md").display(),
            run_dir.join("plots").display()
        );
    }
    Ok(())
}
