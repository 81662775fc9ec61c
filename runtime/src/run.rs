//! `grlhf run CONFIG`: builds the actor topology a config describes, runs it for the configured
//! learner steps, and writes the run directory:
//!
//! ```text
//! RUN_DIR/config.toml     the resolved configuration (every default filled in)
//! RUN_DIR/metrics.jsonl   one line per learner step
//! RUN_DIR/summary.json    throughput, busy ratios, staleness, ledger, rewards
//! RUN_DIR/policy/         the final weights (with tokenizer and processor files)
//! ```
//!
//! Ctrl-C stops the learner after its current step; what was admitted but not trained is counted
//! as in flight, and the summary and final weights are still written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::activity::{busy_seconds, overlap_seconds, ActivityLog};
use grlhf_actors::evaluator::{EvalStats, Evaluator, EvaluatorArgs, EvaluatorMsg};
use grlhf_actors::generator::{Generator, GeneratorArgs, GeneratorMsg};
use grlhf_actors::judge::{JudgeActor, JudgeArgs, JudgePool};
use grlhf_actors::learner::{Learner, LearnerArgs, StepStats, WeightSubscriber};
use grlhf_actors::ledger::{Ledger, LedgerSnapshot};
use grlhf_actors::prompt_source::{PromptSource, PromptSourceArgs, PromptSourceMsg, PromptSpec};
use grlhf_actors::protocol::ScoredSink;
use grlhf_actors::registry::{JudgeContext, Registry, StageContext};
use grlhf_actors::replay_buffer::{BufferArgs, ReplayBuffer};
use grlhf_actors::vl_engine::{init_world_model, WorldModelSize};
use grlhf_models::device::{parse_device, parse_dtype};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::jsonl::{load_pairs, load_prompts, LoadOptions};
use grlhf_tasks::records::{PreferenceRecord, PromptRecord};
use grlhf_tasks::render::render;
use grlhf_tasks::world::{Split, SplitRecords, SplitSizes, WorldConfig};
use indicatif::{ProgressBar, ProgressStyle};
use ractor::Actor;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::run_config::{Mode, RunConfig, Stage};

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub stage: Stage,
    pub max_staleness: u64,
    pub max_staleness_seen: u64,
    pub staleness_violations: usize,
    pub learner_steps: u64,
    pub prompts_admitted: u64,
    pub prompts_trained: u64,
    pub prompts_dropped: BTreeMap<String, u64>,
    pub prompts_in_flight: u64,
    pub ledger_balanced: bool,
    pub ledger_violations: Vec<String>,
    pub versions_monotonic: bool,
    pub wall_s: f64,
    /// Trained samples (responses) per second of the whole run.
    pub samples_per_s: f64,
    /// Generated tokens per second of the whole run.
    pub tokens_per_s: f64,
    pub generated_samples: u64,
    pub generated_tokens: u64,
    pub judgments: u64,
    pub parse_failures: u64,
    /// Busy time / wall time, per actor.
    pub busy_ratio: BTreeMap<String, f64>,
    /// Seconds during which some generation and a learner step ran at once.
    pub generate_train_overlap_s: f64,
    pub weight_sync_ms: f64,
    pub weight_sync_bytes: u64,
    pub reward_mean_first: f64,
    pub reward_mean_last: f64,
    /// Held-out evaluation (with `[evaluator]`): the first and last mean, and the last by family.
    pub eval_first: Option<f64>,
    pub eval_last: Option<f64>,
    pub eval_last_per_family: BTreeMap<String, f64>,
    pub interrupted: bool,
}

/// Everything a finished run leaves behind, for the caller (tests read the spans).
pub struct RunOutcome {
    pub summary: Summary,
    pub steps: Vec<StepStats>,
    pub evals: Vec<EvalStats>,
    pub activity: ActivityLog,
    pub run_dir: PathBuf,
}

pub fn to_rgb(image: &image::RgbImage) -> Result<Arc<RgbImage>> {
    Ok(Arc::new(RgbImage::from_rgb(
        image.width(),
        image.height(),
        image.as_raw().clone(),
    )?))
}

/// The prompt set of the run, rendered into chat turns.
pub fn prompt_specs(config: &RunConfig) -> Result<(Vec<PromptSpec>, usize)> {
    let system = config
        .system_prompt
        .clone()
        .unwrap_or_else(|| POLICY_SYSTEM_PROMPT.to_string());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ 0xA5A5);
    let (prompts, pairs, skipped): (Vec<PromptRecord>, Vec<PreferenceRecord>, usize) =
        match config.data.source.as_str() {
            "world" => {
                let world = WorldConfig {
                    seed: config.data.world_seed.unwrap_or(config.seed),
                    sizes: SplitSizes {
                        train_prompts: config.data.world_size,
                        train_pairs: config.data.world_size,
                        ..SplitSizes::scaled(28)
                    },
                    ..WorldConfig::default()
                };
                let split = match config.stage {
                    Stage::PolicyRl => Split::PromptsTrain,
                    Stage::GrmRl => Split::PairsTrain,
                };
                match world.generate(split).map_err(|e| anyhow!("data: {e}"))? {
                    SplitRecords::Prompts(p) => (p, vec![], 0),
                    SplitRecords::Pairs(p) => (vec![], p, 0),
                    SplitRecords::Sft(_) => unreachable!("no SFT split is asked for"),
                }
            }
            _ => {
                let path = config.data.path.as_ref().expect("validated");
                let options = LoadOptions {
                    skip_bad: config.data.skip_bad,
                    skip_image_check: false,
                    image_root: config.data.image_root.clone(),
                    allow_images_outside_root: config.data.allow_images_outside_root,
                };
                match config.stage {
                    Stage::PolicyRl => {
                        let loaded = load_prompts(path, options)?;
                        (loaded.records, vec![], loaded.skipped.len())
                    }
                    Stage::GrmRl => {
                        let loaded = load_pairs(path, options)?;
                        (vec![], loaded.records, loaded.skipped.len())
                    }
                }
            }
        };
    let image_of =
        |path: &Path, world: Option<&grlhf_tasks::records::WorldKey>| -> Result<Arc<RgbImage>> {
            match world {
                Some(w) => to_rgb(&render(&w.scene)),
                None => Ok(Arc::new(
                    RgbImage::open(path).with_context(|| format!("image {}", path.display()))?,
                )),
            }
        };
    let mut specs = Vec::new();
    for p in prompts {
        specs.push(policy_spec(p, &system)?);
    }
    for (i, p) in pairs.into_iter().enumerate() {
        // A/B order randomised, so the GRM cannot learn a position bias.
        let swap = rng.random_bool(0.5);
        let (r1, r2, preferred) = if swap {
            (&p.response_2, &p.response_1, 3 - p.preferred)
        } else {
            (&p.response_1, &p.response_2, p.preferred)
        };
        specs.push(PromptSpec {
            image: Some(image_of(&p.image, p.world.as_ref())?),
            user: grm_user_message(&p.question, r1, r2),
            system: GRM_SYSTEM_PROMPT.to_string(),
            id: p.id.clone().unwrap_or_else(|| format!("pair-{i}")),
            question: p.question.clone(),
            reference: Some(preferred.to_string()),
            world: p.world.map(Arc::new),
        });
    }
    Ok((specs, skipped))
}

/// A policy request from a prompt record: the image (rendered from the world's scene, or read
/// from its file) and the chat turns.
pub fn policy_spec(p: PromptRecord, system: &str) -> Result<PromptSpec> {
    let image = match &p.world {
        Some(w) => to_rgb(&render(&w.scene))?,
        None => Arc::new(
            RgbImage::open(&p.image).with_context(|| format!("image {}", p.image.display()))?,
        ),
    };
    Ok(PromptSpec {
        image: Some(image),
        user: policy_user_message(&p.question),
        system: system.to_string(),
        id: p.id,
        question: p.question,
        reference: p.reference,
        world: p.world.map(Arc::new),
    })
}

/// The world's held-out evaluation prompts (balanced over the seven families).
pub fn world_eval_records(seed: u64, per_family: usize) -> Result<Vec<PromptRecord>> {
    let world = WorldConfig {
        seed,
        sizes: SplitSizes {
            eval_prompts_per_family: per_family,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    match world
        .generate(Split::PromptsEval)
        .map_err(|e| anyhow!("evaluation prompts: {e}"))?
    {
        SplitRecords::Prompts(p) => Ok(p),
        _ => unreachable!("the evaluation split holds prompts"),
    }
}

/// Held-out prompts for the evaluator: the world's evaluation split, or a JSONL prompt file.
fn eval_specs(
    config: &RunConfig,
    eval: &crate::run_config::EvaluatorConfig,
) -> Result<Vec<PromptSpec>> {
    let system = config
        .system_prompt
        .clone()
        .unwrap_or_else(|| POLICY_SYSTEM_PROMPT.to_string());
    let records = match &eval.path {
        Some(path) => load_prompts(path, LoadOptions::default())?.records,
        None => world_eval_records(
            config.data.world_seed.unwrap_or(config.seed),
            eval.prompts_per_family,
        )?,
    };
    records
        .into_iter()
        .map(|p| policy_spec(p, &system))
        .collect()
}

/// The policy checkpoint to start from (a fresh world model is written into the run directory).
fn policy_dir(config: &RunConfig) -> Result<PathBuf> {
    match config.model.policy.strip_prefix("world:") {
        Some(preset) => {
            let size = WorldModelSize::preset(preset).map_err(|e| anyhow!("model.policy: {e}"))?;
            let dir = config.run_dir.join("init-policy");
            init_world_model(&dir, size, config.seed as i64).map_err(|e| anyhow!("{e}"))?;
            Ok(dir)
        }
        None => Ok(PathBuf::from(&config.model.policy)),
    }
}

fn json_table(table: &toml::Table) -> Result<serde_json::Value> {
    serde_json::to_value(table).context("converting a TOML table")
}

/// Runs `config` with the actor kinds of `registry`. `config_path` names the file in errors.
pub fn run(
    config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating {}", config.run_dir.display()))?;
    let resolved = toml::to_string_pretty(&config).context("serialising the resolved config")?;
    std::fs::write(config.run_dir.join("config.toml"), resolved)?;
    for (i, t) in config.judges.iter().enumerate() {
        if registry.judge(&t.kind).is_none() {
            bail!(
                "{}: judge[{i}].kind = `{}` is not a registered judge kind (known: {})",
                config_path.display(),
                t.kind,
                registry.kinds().join(", ")
            );
        }
    }
    for (i, t) in config.stages.iter().enumerate() {
        if registry.stage(&t.kind).is_none() {
            bail!(
                "{}: post_judge[{i}].kind = `{}` is not a registered stage kind (known: {})",
                config_path.display(),
                t.kind,
                registry.kinds().join(", ")
            );
        }
    }
    let kind = parse_dtype(&config.model.dtype)?;
    let learner_device =
        parse_device(&config.learner.device).map_err(|e| anyhow!("learner.device: {e}"))?;
    let generator_devices = (0..config.generator.count)
        .map(|i| {
            parse_device(config.generator.device_of(i))
                .map_err(|e| anyhow!("generator.devices: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let (specs, _skipped) = prompt_specs(&config)?;
    let policy = policy_dir(&config)?;
    if let Some(addr) = &config.telemetry.prometheus {
        let addr: std::net::SocketAddr = addr.parse()?;
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| anyhow!("telemetry.prometheus: {e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_topology(
        config,
        config_path,
        registry,
        specs,
        policy,
        kind,
        learner_device,
        generator_devices,
        show_progress,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_topology(
    config: RunConfig,
    config_path: &Path,
    registry: Registry,
    specs: Vec<PromptSpec>,
    policy: PathBuf,
    kind: tch::Kind,
    learner_device: tch::Device,
    generator_devices: Vec<tch::Device>,
    show_progress: bool,
) -> Result<RunOutcome> {
    let ledger = Ledger::new();
    let activity = ActivityLog::new();
    let eta = config.effective_staleness();
    let (source, source_handle) = Actor::spawn(
        None,
        PromptSource,
        PromptSourceArgs {
            prompts: specs,
            batch_groups: config.batch_groups,
            max_staleness: eta,
            seed: config.seed,
            ledger: ledger.clone(),
        },
    )
    .await?;
    let (buffer, buffer_handle) = Actor::spawn(
        None,
        ReplayBuffer,
        BufferArgs {
            batch_groups: config.batch_groups,
            max_staleness: eta,
            stale_policy: config.stale_policy,
            ledger: ledger.clone(),
        },
    )
    .await?;
    // Post-judge stages, built from the buffer backwards so each knows its downstream.
    let mut sink: Arc<dyn ScoredSink> = Arc::new(buffer.clone());
    for (i, table) in config.stages.iter().enumerate().rev() {
        let factory = registry.stage(&table.kind).expect("checked above");
        sink = factory(StageContext {
            name: format!("{}-{i}", table.kind),
            table: json_table(&table.settings)?,
            downstream: sink,
            ledger: ledger.clone(),
            activity: activity.clone(),
        })
        .await
        .map_err(|e| {
            anyhow!(
                "{}: post_judge[{i}] ({}): {e}",
                config_path.display(),
                table.kind
            )
        })?;
    }
    let mut judges = Vec::new();
    let mut handles = Vec::new();
    for (i, table) in config.judges.iter().enumerate() {
        let device = parse_device(&table.device).map_err(|e| anyhow!("judge[{i}].device: {e}"))?;
        for c in 0..table.count {
            let name = format!("judge-{i}-{c}");
            let factory = registry.judge(&table.kind).expect("checked above");
            let build = factory(JudgeContext {
                name: name.clone(),
                table: json_table(&table.settings)?,
                device,
                kind,
                reward_model: config.model.reward_model.clone(),
                seed: config.seed + c as u64,
            })
            .map_err(|e| {
                anyhow!(
                    "{}: judge[{i}] ({}): {e}",
                    config_path.display(),
                    table.kind
                )
            })?;
            let (judge, handle) = Actor::spawn(
                None,
                JudgeActor,
                JudgeArgs {
                    name,
                    build,
                    sink: sink.clone(),
                    activity: activity.clone(),
                    ledger: ledger.clone(),
                },
            )
            .await
            .map_err(|e| anyhow!("starting judge[{i}]: {e}"))?;
            judges.push(judge);
            handles.push(handle);
        }
    }
    let pool = Arc::new(JudgePool::new(judges.clone()));
    let mut generators = Vec::new();
    let mut generator_handles = Vec::new();
    for (g, device) in generator_devices.iter().enumerate() {
        let name = format!("generator-{g}");
        let (generator, handle) = Actor::spawn(
            None,
            Generator,
            GeneratorArgs {
                name,
                model_dir: policy.clone(),
                device: *device,
                kind,
                group_size: config.group_size,
                config: config.generator.sampling(),
                seed: config.seed.wrapping_add(g as u64 * 7919),
                source: source.clone(),
                sink: pool.clone(),
                activity: activity.clone(),
                ledger: ledger.clone(),
            },
        )
        .await
        .map_err(|e| anyhow!("starting generator-{g}: {e}"))?;
        generators.push((generator, *device));
        generator_handles.push(handle);
    }
    let (stats_tx, stats_rx) = flume::unbounded::<StepStats>();
    let (eval_tx, eval_rx) = flume::unbounded::<EvalStats>();
    let mut subscribers: Vec<WeightSubscriber> = generators
        .iter()
        .enumerate()
        .map(|(g, (actor, device))| {
            WeightSubscriber::generator(&format!("generator-{g}"), actor.clone(), *device)
        })
        .collect();
    let mut evaluator_handle = None;
    if let Some(eval) = &config.evaluator {
        let device = parse_device(&eval.device).map_err(|e| anyhow!("evaluator.device: {e}"))?;
        let (evaluator, handle) = Actor::spawn(
            None,
            Evaluator,
            EvaluatorArgs {
                name: "evaluator".into(),
                model_dir: policy.clone(),
                device,
                kind,
                prompts: eval_specs(&config, eval)?,
                metric: eval.metric,
                max_new_tokens: eval.max_new_tokens,
                batch: eval.batch,
                activity: activity.clone(),
                results: eval_tx.clone(),
            },
        )
        .await
        .map_err(|e| anyhow!("starting the evaluator: {e}"))?;
        let address = evaluator.clone();
        subscribers.push(WeightSubscriber {
            name: "evaluator".into(),
            device,
            every: eval.every,
            send: Box::new(move |update| {
                address
                    .cast(EvaluatorMsg::Weights(update))
                    .map_err(|e| e.to_string())
            }),
        });
        evaluator_handle = Some((evaluator, handle));
    }
    drop(eval_tx);
    let (learner, learner_handle) = Actor::spawn(
        None,
        Learner,
        LearnerArgs {
            name: "learner".into(),
            model_dir: policy.clone(),
            device: learner_device,
            kind,
            config: config.learner.clone(),
            total_steps: config.steps,
            max_staleness: eta,
            buffer: buffer.clone(),
            source: source.clone(),
            subscribers,
            ledger: ledger.clone(),
            activity: activity.clone(),
            stats: stats_tx,
            save_dir: Some(config.run_dir.join("policy")),
        },
    )
    .await
    .map_err(|e| anyhow!("starting the learner: {e}"))?;

    let bar = if show_progress {
        ProgressBar::new(config.steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let metrics_path = config.run_dir.join("metrics.jsonl");
    let mut metrics_file = std::fs::File::create(&metrics_path)
        .with_context(|| format!("creating {}", metrics_path.display()))?;
    let mut steps: Vec<StepStats> = Vec::new();
    let mut interrupted = false;
    loop {
        tokio::select! {
            stats = stats_rx.recv_async() => match stats {
                Ok(stats) => {
                    writeln!(metrics_file, "{}", serde_json::to_string(&stats)?)?;
                    bar.set_position(stats.step + 1);
                    bar.set_message(format!("reward {:.3}  kl {:.4}  staleness {}", stats.reward_mean, stats.kl, stats.max_staleness));
                    steps.push(stats);
                }
                Err(_) => break, // the learner finished
            },
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                tracing::warn!("interrupted: finishing the current step, then writing the final weights");
                let _ = learner.cast(grlhf_actors::learner::LearnerMsg::Finish);
                // Record the steps that still complete.
                while let Ok(stats) = stats_rx.recv_async().await {
                    writeln!(metrics_file, "{}", serde_json::to_string(&stats)?)?;
                    steps.push(stats);
                }
                break;
            }
            // A learner that dies (an error in a step) closes the channel too; this catches a
            // learner stuck waiting on a pipeline that can no longer feed it.
            _ = tokio::time::sleep(Duration::from_secs(3600)) => bail!("no learner step for an hour"),
        }
    }
    bar.finish_and_clear();
    let _ = learner_handle.await;
    let end = activity.now();
    // The learner sent its last weights to the evaluator; collect every evaluation, then stop it.
    let mut evals: Vec<EvalStats> = Vec::new();
    if let Some((evaluator, handle)) = evaluator_handle {
        let eval_path = config.run_dir.join("eval.jsonl");
        let mut eval_file = std::fs::File::create(&eval_path)
            .with_context(|| format!("creating {}", eval_path.display()))?;
        let expected = config
            .evaluator
            .as_ref()
            .map_or(0, |e| 1 + config.steps.div_ceil(e.every.max(1)) as usize);
        while evals.len() < expected {
            match tokio::time::timeout(Duration::from_secs(600), eval_rx.recv_async()).await {
                Ok(Ok(stats)) => {
                    writeln!(eval_file, "{}", serde_json::to_string(&stats)?)?;
                    evals.push(stats);
                    if interrupted && evals.last().map(|e| e.version) == Some(steps.len() as u64) {
                        break;
                    }
                }
                _ => break,
            }
        }
        evaluator.stop(None);
        let _ = tokio::time::timeout(Duration::from_secs(600), handle).await;
    }
    // Drain: admit nothing more, stop generators and judges; what they hold stays in flight.
    source.cast(PromptSourceMsg::Control(
        grlhf_actors::protocol::Control::Drain,
    ))?;
    for (generator, _) in &generators {
        let _ = generator.cast(GeneratorMsg::Stop);
    }
    // Generators finish their batch first, so judges still take what they send.
    for handle in generator_handles {
        let _ = tokio::time::timeout(Duration::from_secs(120), handle).await;
    }
    for judge in &judges {
        judge.stop(None);
    }
    for handle in handles {
        let _ = tokio::time::timeout(Duration::from_secs(120), handle).await;
    }
    let buffer_stats = ractor::call!(buffer, grlhf_actors::replay_buffer::BufferMsg::Stats).ok();
    buffer.stop(None);
    source.stop(None);
    let _ = buffer_handle.await;
    let _ = source_handle.await;
    if steps.len() < config.steps as usize && !interrupted {
        bail!(
            "the learner stopped after {} of {} steps (see the log above)",
            steps.len(),
            config.steps
        );
    }
    for file in ["tokenizer.json", "preprocessor_config.json"] {
        let (from, to) = (policy.join(file), config.run_dir.join("policy").join(file));
        if from.exists() && to.parent().is_some_and(Path::exists) {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let mut summary = summarize(
        &config,
        &steps,
        &ledger.snapshot(),
        ledger.violations(),
        &activity,
        end,
        interrupted,
        buffer_stats.map(|s| s.max_staleness_served),
    );
    summary.eval_first = evals.first().map(|e| e.mean);
    summary.eval_last = evals.last().map(|e| e.mean);
    summary.eval_last_per_family = evals
        .last()
        .map(|e| e.per_family.clone())
        .unwrap_or_default();
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(config.run_dir.join("summary.json"), text)?;
    Ok(RunOutcome {
        summary,
        steps,
        evals,
        activity,
        run_dir: config.run_dir.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn summarize(
    config: &RunConfig,
    steps: &[StepStats],
    ledger: &LedgerSnapshot,
    ledger_violations: Vec<String>,
    activity: &ActivityLog,
    wall: f64,
    interrupted: bool,
    buffer_max_staleness: Option<u64>,
) -> Summary {
    let spans = activity.spans();
    let mut actors: Vec<String> = spans.iter().map(|s| s.actor.clone()).collect();
    actors.sort();
    actors.dedup();
    let busy_ratio = actors
        .iter()
        .map(|a| {
            (
                a.clone(),
                busy_seconds(&spans, a, 0.0, wall) / wall.max(1e-9),
            )
        })
        .collect();
    let mut versions_monotonic = true;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (actor, v) in activity.versions() {
        if let Some(&prev) = last.get(&actor) {
            versions_monotonic &= v > prev;
        }
        last.insert(actor, v);
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let window = (steps.len() / 4).max(1).min(steps.len());
    let rewards: Vec<f64> = steps.iter().map(|s| s.reward_mean).collect();
    let trained_samples = ledger.trained * config.group_size as u64;
    Summary {
        mode: config.mode,
        stage: config.stage,
        max_staleness: config.effective_staleness(),
        max_staleness_seen: steps
            .iter()
            .map(|s| s.max_staleness)
            .max()
            .unwrap_or(0)
            .max(buffer_max_staleness.unwrap_or(0)),
        staleness_violations: steps.iter().map(|s| s.staleness_violations.len()).sum(),
        learner_steps: steps.len() as u64,
        prompts_admitted: ledger.admitted,
        prompts_trained: ledger.trained,
        prompts_dropped: ledger.dropped_by_reason.clone(),
        prompts_in_flight: ledger.in_flight,
        ledger_balanced: ledger.balances(),
        ledger_violations,
        versions_monotonic,
        wall_s: wall,
        samples_per_s: trained_samples as f64 / wall.max(1e-9),
        tokens_per_s: activity.counter("generated_tokens") as f64 / wall.max(1e-9),
        generated_samples: activity.counter("generated_samples"),
        generated_tokens: activity.counter("generated_tokens"),
        judgments: activity.counter("judgments"),
        parse_failures: activity.counter("parse_failures"),
        busy_ratio,
        generate_train_overlap_s: overlap_seconds(&spans, "generate", "train"),
        weight_sync_ms: mean(&steps.iter().map(|s| s.sync_ms).collect::<Vec<_>>()),
        weight_sync_bytes: steps.last().map(|s| s.sync_bytes).unwrap_or(0),
        reward_mean_first: mean(&rewards[..window.min(rewards.len())]),
        reward_mean_last: mean(&rewards[rewards.len().saturating_sub(window)..]),
        eval_first: None,
        eval_last: None,
        eval_last_per_family: BTreeMap::new(),
        interrupted,
    }
}
