//! `grlhf run CONFIG`: builds the actor topology a config describes, runs it for the configured
//! learner steps, and writes the run directory:
//!
//! ```text
//! RUN_DIR/config.toml     the resolved configuration (every default filled in)
//! RUN_DIR/metrics.jsonl   one line per learner step
//! RUN_DIR/summary.json    throughput, busy ratios, staleness, ledger, rewards
//! RUN_DIR/policy/         the final weights (with tokenizer and processor files)
//! RUN_DIR/checkpoints/    the newest `checkpoint.keep_last` checkpoints (see
//!                         grlhf_actors::checkpoint)
//! ```
//!
//! Ctrl-C stops the learner after its current step; what was admitted but not trained is counted
//! as in flight, and the summary, final weights and a checkpoint are still written.
//!
//! `grlhf run CONFIG --resume RUN_DIR` continues from the newest checkpoint that verifies: the
//! weights, AdamW's moments, the version, the prompt order and position, the ledger and the
//! replay buffer come back; prompts that were in flight are issued again under their uid, so
//! none is lost and none trained twice. Generators and judges run under a
//! [`Supervisor`](grlhf_actors::supervisor) that restarts them when they fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::activity::{busy_seconds, overlap_seconds, ActivityLog};
use grlhf_actors::checkpoint::{CheckpointState, RunShape};
use grlhf_actors::evaluator::{EvalStats, Evaluator, EvaluatorArgs, EvaluatorMsg};
use grlhf_actors::generator::{GeneratorArgs, GeneratorMsg};
use grlhf_actors::judge::JudgePool;
use grlhf_actors::learner::{
    CheckpointPlan, Learner, LearnerArgs, LearnerOutcome, LearnerResume, StepStats,
    WeightSubscriber,
};
use grlhf_actors::ledger::{Ledger, LedgerSnapshot};
use grlhf_actors::prompt_source::{
    prompt_item, PromptSource, PromptSourceArgs, PromptSourceMsg, PromptSpec,
};
use grlhf_actors::protocol::{ScoredGroup, ScoredSink};
use grlhf_actors::registry::{JudgeContext, Registry, StageContext};
use grlhf_actors::replay_buffer::{BufferArgs, ReplayBuffer};
use grlhf_actors::supervisor::{
    JudgeSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use grlhf_actors::vl_engine::{init_world_model, WorldModelSize};
use grlhf_models::device::{parse_device, parse_dtype};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::jsonl::{load_pairs, load_prompts, LoadOptions};
use grlhf_tasks::records::{PreferenceRecord, PromptRecord};
use grlhf_tasks::render::render;
use grlhf_tasks::world::{HeldOut, Split, SplitRecords, SplitSizes, WorldConfig};
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
    pub reliability: Reliability,
}

/// Faults met and survived, checkpoints and resumes (part of `summary.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reliability {
    /// The checkpoint this run continued from.
    pub resumed_from: Option<PathBuf>,
    /// Newer checkpoints that failed verification and were passed over on resume.
    pub damaged_checkpoints_skipped: Vec<String>,
    pub checkpoints_written: u64,
    pub checkpoint_failures: Vec<String>,
    pub last_checkpoint: Option<PathBuf>,
    /// Learner steps skipped (non-finite loss or gradient), over the whole run.
    pub skipped_steps: u64,
    /// Restarts by actor name.
    pub restarts: BTreeMap<String, u64>,
    pub actor_failures: Vec<String>,
    /// Prompts issued again: a failed actor's, and those in flight at the resumed checkpoint.
    pub prompts_reissued: u64,
    /// Injected faults by kind.
    pub faults_injected: BTreeMap<String, u64>,
    /// Why the run was stopped early with an error (a restart storm, skipped steps in a row).
    pub aborted: Option<String>,
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
    world_held_out_records(seed, HeldOut::Evaluation, per_family)
}

/// The world's held-out prompts of one set, validation or evaluation (balanced over the seven
/// families; the two never share a scene with its question).
pub fn world_held_out_records(
    seed: u64,
    held_out: HeldOut,
    per_family: usize,
) -> Result<Vec<PromptRecord>> {
    let world = WorldConfig {
        seed,
        sizes: SplitSizes {
            eval_prompts_per_family: per_family,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    match world
        .generate(held_out.prompts())
        .map_err(|e| anyhow!("{held_out} prompts: {e}"))?
    {
        SplitRecords::Prompts(p) => Ok(p),
        _ => unreachable!("a held-out prompt split holds prompts"),
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
        None => world_held_out_records(
            config.data.world_seed.unwrap_or(config.seed),
            eval.split,
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
    run_or_resume(config, config_path, registry, show_progress, None)
}

/// Continues the run in `run_dir` from its newest checkpoint that verifies, to `config.steps`.
pub fn resume(
    mut config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
    run_dir: &Path,
) -> Result<RunOutcome> {
    config.run_dir = run_dir.to_path_buf();
    let root = run_dir.join("checkpoints");
    let (dir, state, skipped) =
        grlhf_actors::checkpoint::latest_valid(&root).map_err(|e| anyhow!("--resume: {e}"))?;
    if state.version >= config.steps {
        bail!(
            "--resume: the checkpoint {} is at step {} and {}: steps = {}; raise steps to train further",
            dir.display(),
            state.version,
            config_path.display(),
            config.steps
        );
    }
    run_or_resume(
        config,
        config_path,
        registry,
        show_progress,
        Some(Resume {
            dir,
            state,
            skipped,
        }),
    )
}

/// A checkpoint a run continues from.
struct Resume {
    dir: PathBuf,
    state: CheckpointState,
    /// Newer checkpoints that did not verify.
    skipped: Vec<String>,
}

fn run_shape(config: &RunConfig, prompts: usize) -> RunShape {
    RunShape {
        prompts,
        batch_groups: config.batch_groups,
        group_size: config.group_size,
        max_staleness: config.effective_staleness(),
        seed: config.seed,
    }
}

/// The first difference between the checkpoint's run and this one, naming the field.
fn shape_mismatch(saved: &RunShape, now: &RunShape) -> Option<String> {
    let fields = [
        (
            "the prompt set's size",
            saved.prompts as u64,
            now.prompts as u64,
        ),
        (
            "batch_groups",
            saved.batch_groups as u64,
            now.batch_groups as u64,
        ),
        ("group_size", saved.group_size as u64, now.group_size as u64),
        (
            "max_staleness (η as used)",
            saved.max_staleness,
            now.max_staleness,
        ),
        ("seed", saved.seed, now.seed),
    ];
    fields
        .iter()
        .find(|(_, a, b)| a != b)
        .map(|(field, a, b)| format!("{field} is {b}, but the checkpoint was written with {a}"))
}

/// The steps before the checkpoint at `version`: `metrics.jsonl`'s lines before it, completed
/// from the checkpoint's own record of its latest steps (a process killed right after writing
/// the checkpoint may not have logged them). The original file is kept as
/// `metrics.before-resume-N.jsonl`: the resumed run trains the later steps again.
fn metrics_before(run_dir: &Path, version: u64, recent: &[StepStats]) -> Result<Vec<StepStats>> {
    let path = run_dir.join("metrics.jsonl");
    let mut kept: BTreeMap<u64, StepStats> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let stats: StepStats = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a step record", path.display(), i + 1))?;
            if stats.step < version {
                kept.insert(stats.step, stats);
            }
        }
        let backup = run_dir.join(format!("metrics.before-resume-{version}.jsonl"));
        std::fs::copy(&path, &backup).with_context(|| format!("keeping {}", backup.display()))?;
    }
    for stats in recent.iter().filter(|s| s.step < version) {
        kept.entry(stats.step).or_insert_with(|| stats.clone());
    }
    Ok(kept.into_values().collect())
}

fn run_or_resume(
    config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
    resume: Option<Resume>,
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
    if let Some(resume) = &resume {
        if let Some(problem) = shape_mismatch(&resume.state.shape, &run_shape(&config, specs.len()))
        {
            bail!(
                "--resume: {}: {problem} ({})",
                config_path.display(),
                resume.dir.display()
            );
        }
    }
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
        Arc::new(registry),
        specs,
        policy,
        kind,
        learner_device,
        generator_devices,
        show_progress,
        resume,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_topology(
    config: RunConfig,
    config_path: &Path,
    registry: Arc<Registry>,
    specs: Vec<PromptSpec>,
    policy: PathBuf,
    kind: tch::Kind,
    learner_device: tch::Device,
    generator_devices: Vec<tch::Device>,
    show_progress: bool,
    resume: Option<Resume>,
) -> Result<RunOutcome> {
    let activity = ActivityLog::new();
    let eta = config.effective_staleness();
    let shape = run_shape(&config, specs.len());
    let mut reliability = Reliability::default();
    // What a resumed run starts from: the ledger, the source's position, the buffer's groups.
    let (ledger, source_resume, restored, learner_resume, mut steps) = match resume {
        None => (Ledger::new(), None, Vec::new(), None, Vec::new()),
        Some(Resume {
            dir,
            state,
            skipped,
        }) => {
            let issued: BTreeMap<u64, (usize, u64)> = state
                .source
                .issued
                .iter()
                .map(|&(uid, index, at)| (uid, (index, at)))
                .collect();
            let restored = state
                .buffer
                .into_iter()
                .map(|saved| {
                    let &(index, at) = issued.get(&saved.uid).ok_or_else(|| {
                        anyhow!(
                            "{}: buffered prompt {} was never issued",
                            dir.display(),
                            saved.uid
                        )
                    })?;
                    let spec = specs.get(index).ok_or_else(|| {
                        anyhow!(
                            "{}: prompt {} has no place {index} in the prompt set",
                            dir.display(),
                            saved.uid
                        )
                    })?;
                    let item = prompt_item(saved.uid, spec, at);
                    Ok(saved.into_scored(item))
                })
                .collect::<Result<Vec<ScoredGroup>>>()?;
            reliability.prompts_reissued += state.requeue.len() as u64;
            reliability.resumed_from = Some(dir.clone());
            reliability.damaged_checkpoints_skipped = skipped;
            reliability.skipped_steps = state.skipped_steps;
            let learner_resume = LearnerResume {
                version: state.version,
                optimizer_steps: state.optimizer_steps,
                skipped_steps: state.skipped_steps,
                weights: dir.join(grlhf_actors::checkpoint::WEIGHTS),
                optimizer: dir.join(grlhf_actors::checkpoint::OPTIMIZER),
            };
            let steps = metrics_before(&config.run_dir, state.version, &state.recent_steps)?;
            tracing::info!(
                "resuming from {} (step {}; {} buffered groups, {} prompts issued again)",
                dir.display(),
                state.version,
                restored.len(),
                state.requeue.len()
            );
            (
                Ledger::restore(state.ledger),
                Some((state.source, state.requeue)),
                restored,
                Some(learner_resume),
                steps,
            )
        }
    };
    let start_version = learner_resume.as_ref().map_or(0, |r| r.version);
    let trained_at_start = ledger.snapshot().trained;
    let (source, source_handle) = Actor::spawn(
        None,
        PromptSource,
        PromptSourceArgs {
            prompts: specs,
            batch_groups: config.batch_groups,
            max_staleness: eta,
            seed: config.seed,
            ledger: ledger.clone(),
            resume: source_resume,
        },
    )
    .await
    .map_err(|e| anyhow!("starting the prompt source: {e}"))?;
    let replace = source.clone();
    ledger.on_replaceable_drop(Arc::new(move |_| {
        let _ = replace.cast(PromptSourceMsg::Replace(1));
    }));
    let (buffer, buffer_handle) = Actor::spawn(
        None,
        ReplayBuffer,
        BufferArgs {
            batch_groups: config.batch_groups,
            max_staleness: eta,
            stale_policy: config.stale_policy,
            ledger: ledger.clone(),
            restore: restored,
        },
    )
    .await?;
    let (supervisor, supervisor_handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            policy: RestartPolicy {
                max_restarts: config.supervision.max_restarts,
                window: Duration::from_secs_f64(config.supervision.window_s),
            },
            source: source.clone(),
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
    for (i, table) in config.judges.iter().enumerate() {
        let device = parse_device(&table.device).map_err(|e| anyhow!("judge[{i}].device: {e}"))?;
        for c in 0..table.count {
            let name = format!("judge-{i}-{c}");
            let (registry, kind_name, settings) = (
                registry.clone(),
                table.kind.clone(),
                json_table(&table.settings)?,
            );
            let (context_name, reward_model) = (name.clone(), config.model.reward_model.clone());
            let seed = config.seed + c as u64;
            // A judge's builder runs once, so a restart asks the factory again.
            let rebuild = Arc::new(move || {
                let factory = registry.judge(&kind_name).expect("checked above");
                factory(JudgeContext {
                    name: context_name.clone(),
                    table: settings.clone(),
                    device,
                    kind,
                    reward_model: reward_model.clone(),
                    seed,
                })
            });
            let spec = JudgeSpec {
                name,
                rebuild,
                sink: sink.clone(),
                activity: activity.clone(),
                ledger: ledger.clone(),
            };
            let index = judges.len();
            let judge = ractor::call!(supervisor, |reply| SupervisorMsg::Judge {
                index,
                spec,
                reply
            })?
            .map_err(|e| {
                anyhow!(
                    "{}: judge[{i}] ({}): {e}",
                    config_path.display(),
                    table.kind
                )
            })?;
            judges.push(judge);
        }
    }
    let pool = Arc::new(JudgePool::new(judges).with_ledger(ledger.clone()));
    supervisor.cast(SupervisorMsg::Pool(pool.clone()))?;
    let mut generators = Vec::new();
    let start_weights = learner_resume
        .as_ref()
        .map(|r| (r.weights.clone(), r.version));
    for (g, device) in generator_devices.iter().enumerate() {
        let args = GeneratorArgs {
            name: format!("generator-{g}"),
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
            start_from: start_weights.clone(),
            await_weights: false,
        };
        let slot = ractor::call!(supervisor, |reply| SupervisorMsg::Generator { args, reply })?
            .map_err(|e| anyhow!("starting generator-{g}: {e}"))?;
        generators.push((slot, *device));
    }
    let (stats_tx, stats_rx) = flume::unbounded::<StepStats>();
    let (eval_tx, eval_rx) = flume::unbounded::<EvalStats>();
    let mut subscribers: Vec<WeightSubscriber> = generators
        .iter()
        .enumerate()
        .map(|(g, (slot, device))| {
            let slot = slot.clone();
            WeightSubscriber {
                name: format!("generator-{g}"),
                device: *device,
                every: 1,
                // Through the slot: a restarted generator gets the next update.
                send: Box::new(move |update| {
                    let actor = slot.read().unwrap().clone();
                    actor
                        .cast(GeneratorMsg::Weights(update))
                        .map_err(|e| e.to_string())
                }),
            }
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
                start_from: start_weights.clone(),
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
    let outcome = Arc::new(Mutex::new(LearnerOutcome::default()));
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
            checkpoints: Some(CheckpointPlan {
                dir: config.run_dir.join("checkpoints"),
                every: config.checkpoint.every,
                keep_last: config.checkpoint.keep_last,
                shape,
            }),
            resume: learner_resume,
            faults: config.faults.learner(config.seed),
            outcome: outcome.clone(),
        },
    )
    .await
    .map_err(|e| anyhow!("starting the learner: {e}"))?;
    supervisor.cast(SupervisorMsg::Learner(learner.clone()))?;
    let stop_killing = Arc::new(AtomicBool::new(false));
    let kills = crate::faults::KillCounts::default();
    let killer = crate::faults::spawn_killer(
        &config.faults,
        config.seed,
        generators.iter().map(|(slot, _)| slot.clone()).collect(),
        pool.clone(),
        stop_killing.clone(),
        kills.clone(),
    );

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
    bar.set_position(start_version);
    let metrics_path = config.run_dir.join("metrics.jsonl");
    let mut metrics_file = std::fs::File::create(&metrics_path)
        .with_context(|| format!("creating {}", metrics_path.display()))?;
    for stats in &steps {
        writeln!(metrics_file, "{}", serde_json::to_string(stats)?)?;
    }
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
                tracing::warn!("interrupted: finishing the current step, then writing the final weights and a checkpoint");
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
    stop_killing.store(true, Ordering::Release);
    if let Some(killer) = killer {
        killer.abort();
    }
    let end = activity.now();
    let learner_outcome = outcome.lock().unwrap().clone();
    // The learner sent its last weights to the evaluator; collect every evaluation, then stop it.
    let mut evals: Vec<EvalStats> = Vec::new();
    if let Some((evaluator, handle)) = evaluator_handle {
        let eval_path = config.run_dir.join("eval.jsonl");
        let mut eval_file = std::fs::File::create(&eval_path)
            .with_context(|| format!("creating {}", eval_path.display()))?;
        // The start, then every `every`-th version after it and the last.
        let every = config.evaluator.as_ref().map_or(1, |e| e.every.max(1));
        let expected = 1
            + (start_version + 1..=config.steps)
                .filter(|v| v % every == 0 || *v == config.steps)
                .count();
        let aborted = learner_outcome.aborted.is_some();
        while evals.len() < expected && !aborted {
            match tokio::time::timeout(Duration::from_secs(600), eval_rx.recv_async()).await {
                Ok(Ok(stats)) => {
                    writeln!(eval_file, "{}", serde_json::to_string(&stats)?)?;
                    evals.push(stats);
                    let last = steps.last().map_or(start_version, |s| s.version);
                    if interrupted && evals.last().map(|e| e.version) == Some(last) {
                        break;
                    }
                }
                _ => break,
            }
        }
        evaluator.stop(None);
        let _ = tokio::time::timeout(Duration::from_secs(600), handle).await;
    }
    // Drain: restart nothing, admit nothing more, stop generators and judges; what they hold
    // stays in flight.
    supervisor.cast(SupervisorMsg::Draining)?;
    source.cast(PromptSourceMsg::Control(
        grlhf_actors::protocol::Control::Drain,
    ))?;
    let generator_actors: Vec<_> = generators
        .iter()
        .map(|(slot, _)| slot.read().unwrap().clone())
        .collect();
    for generator in &generator_actors {
        let _ = generator.cast(GeneratorMsg::Stop);
    }
    // Generators finish their batch first, so judges still take what they send.
    for generator in &generator_actors {
        let _ = generator
            .get_cell()
            .wait(Some(Duration::from_secs(120)))
            .await;
    }
    for judge in pool.judges() {
        let _ = judge
            .stop_and_wait(None, Some(Duration::from_secs(120)))
            .await;
    }
    let report = ractor::call!(supervisor, SupervisorMsg::Report).unwrap_or_default();
    supervisor.stop(None);
    let _ = supervisor_handle.await;
    let buffer_stats = ractor::call!(buffer, grlhf_actors::replay_buffer::BufferMsg::Stats).ok();
    buffer.stop(None);
    source.stop(None);
    let _ = buffer_handle.await;
    let _ = source_handle.await;
    let reached = steps.last().map_or(start_version, |s| s.version);
    if reached < config.steps && !interrupted && learner_outcome.aborted.is_none() {
        bail!(
            "the learner stopped after {reached} of {} steps (see the log above)",
            config.steps
        );
    }
    for file in ["tokenizer.json", "preprocessor_config.json"] {
        let (from, to) = (policy.join(file), config.run_dir.join("policy").join(file));
        if from.exists() && to.parent().is_some_and(Path::exists) {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let ledger_now = ledger.snapshot();
    let mut summary = summarize(
        &config,
        &steps,
        &ledger_now,
        ledger.violations(),
        &activity,
        end,
        interrupted,
        buffer_stats.map(|s| s.max_staleness_served),
    );
    // This process's throughput: the prompts trained since it started.
    summary.samples_per_s =
        (ledger_now.trained - trained_at_start) as f64 * config.group_size as f64 / end.max(1e-9);
    summary.eval_first = evals.first().map(|e| e.mean);
    summary.eval_last = evals.last().map(|e| e.mean);
    summary.eval_last_per_family = evals
        .last()
        .map(|e| e.per_family.clone())
        .unwrap_or_default();
    reliability.checkpoints_written = learner_outcome.checkpoints_written;
    reliability.checkpoint_failures = learner_outcome.checkpoint_failures.clone();
    reliability.last_checkpoint = learner_outcome.last_checkpoint.clone();
    reliability.skipped_steps = reliability.skipped_steps.max(learner_outcome.skipped_steps);
    reliability.restarts = report.restarts;
    reliability.actor_failures = report.failures;
    reliability.prompts_reissued += report.requeued;
    reliability.faults_injected = learner_outcome.faults_injected.clone();
    for (kind, count) in kills.lock().unwrap().iter() {
        *reliability.faults_injected.entry(kind.clone()).or_default() += count;
    }
    reliability.aborted = learner_outcome.aborted.clone();
    summary.reliability = reliability;
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(config.run_dir.join("summary.json"), text)?;
    if let Some(reason) = &learner_outcome.aborted {
        bail!(
            "the run was stopped after step {reached}: {reason}; the final checkpoint is {} (resume with --resume {})",
            learner_outcome
                .last_checkpoint
                .as_ref()
                .map_or("not written".to_string(), |p| p.display().to_string()),
            config.run_dir.display()
        );
    }
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
        reliability: Reliability::default(),
    }
}
