//! `grlhf run CONFIG`: builds the actor topology a config describes, runs it for the configured
//! learner steps, and writes the run directory:
//!
//! ```text
//! RUN_DIR/config.toml     the resolved configuration (every default filled in)
//! RUN_DIR/metrics.jsonl   one line per learner step
//! RUN_DIR/eval.jsonl      one line per held-out evaluation (with `[evaluator]`)
//! RUN_DIR/summary.json    throughput, busy ratios, staleness, ledger, rewards
//! RUN_DIR/tb/             TensorBoard event files, written as the run goes (crate::run_board)
//! RUN_DIR/trace           every busy span and group event, streamed (Chrome trace format)
//! RUN_DIR/plots/          reward, KL, clip fraction, length, staleness, throughput, evaluation
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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::checkpoint::RunShape;
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::learner::StepStats;
use grlhf_actors::prompt_source::{PromptOrder, PromptSet, PromptSpec};
use grlhf_actors::registry::{PromptSourceContext, Registry, Role};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::jsonl::{load_pairs, load_prompts, LoadOptions};
use grlhf_tasks::parquet::{load_pairs_parquet, load_prompts_parquet};
use grlhf_tasks::records::{PreferenceRecord, PromptRecord};
use grlhf_tasks::render::render;
use grlhf_tasks::world::{HeldOut, Split, SplitRecords, SplitSizes, WorldConfig};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

use crate::cluster_config::worker_node;
use crate::distributed::{ClusterRun, HeadCluster};
use crate::model_source::ModelSource;
use crate::run_board::RunBoard;
use crate::run_config::{RunConfig, Stage};
use crate::run_plots::draw_run_plots;
use crate::topology::{
    config_plan, Devices, RealRun, Restored, Resume, StepObserver, Topology, TopologyPlan,
};
pub use crate::topology::{Reliability, RunOutcome, Summary};

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
            "jsonl" => {
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
            "parquet" => {
                let path = config.data.path.as_ref().expect("validated");
                let options = LoadOptions {
                    skip_bad: config.data.skip_bad,
                    ..LoadOptions::default()
                };
                let fields = config.data.fields.clone().unwrap_or_default();
                // Embedded images become files of the run, read like a JSONL dataset's.
                let images = config.run_dir.join("data-images");
                match config.stage {
                    Stage::PolicyRl => {
                        let loaded = load_prompts_parquet(path, &fields, &options, &images)?;
                        (loaded.records, vec![], loaded.skipped.len())
                    }
                    Stage::GrmRl => {
                        let loaded = load_pairs_parquet(path, &fields, &options, &images)?;
                        (vec![], loaded.records, loaded.skipped.len())
                    }
                }
            }
            other => bail!(
                "data.source = `{other}` is a registered prompt-source kind: its prompts come from the registry (run_prompt_set)"
            ),
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

/// The run's prompt set: the embedded world, a JSONL file, or a registered prompt-source kind
/// (`[data] source = "<kind>"`, its settings in `[data.settings]`). The count is of skipped
/// JSONL lines.
pub fn run_prompt_set(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
) -> Result<(PromptSet, usize)> {
    let kind = config.data.source.as_str();
    if matches!(kind, "world" | "jsonl" | "parquet") {
        let (prompts, skipped) = prompt_specs(config)?;
        let order = PromptOrder::Shuffled;
        return Ok((PromptSet { prompts, order }, skipped));
    }
    let context = PromptSourceContext {
        config_dir: config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        system_prompt: config
            .system_prompt
            .clone()
            .unwrap_or_else(|| POLICY_SYSTEM_PROMPT.to_string()),
        seed: config.seed,
    };
    let table = serde_json::Value::Object(config.data.settings.clone().unwrap_or_default());
    let set = registry
        .prompt_source(kind, &table, context)
        .map_err(|e| anyhow!("{}: data (source `{kind}`): {e}", config_path.display()))?;
    if set.prompts.is_empty() {
        bail!(
            "{}: data (source `{kind}`): the prompt source gave no prompts",
            config_path.display()
        );
    }
    Ok((set, 0))
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

/// The evaluator's held-out prompts (`[evaluator]`): the world's held-out split, or a JSONL
/// prompt file, rendered into chat turns.
pub fn eval_specs(
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
    ModelSource::parse("model.policy", &config.model.policy)?
        .materialise(&config.run_dir.join("init-policy"), config.seed)
}

/// Runs `config` with the actor kinds of `registry`. `config_path` names the file in errors.
pub fn run(
    config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
) -> Result<RunOutcome> {
    run_or_resume(config, config_path, registry, show_progress, None, None)
}

/// Continues the run in `run_dir` from its newest checkpoint that verifies, to `config.steps`.
pub fn resume(
    mut config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
    run_dir: &Path,
) -> Result<RunOutcome> {
    let resume = find_resume(&mut config, config_path, run_dir)?;
    run_or_resume(
        config,
        config_path,
        registry,
        show_progress,
        Some(resume),
        None,
    )
}

/// As [`run`] (or [`resume`], with `resume_dir`), as the head of a multi-process run: listens
/// for workers on `listen`, and the generators `[generator] nodes` places on them run there
/// (`crate::distributed`).
pub fn run_as_head(
    mut config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
    resume_dir: Option<&Path>,
    listen: std::net::SocketAddr,
) -> Result<RunOutcome> {
    let cluster = ClusterRun::new(config_path)?;
    let resume = match resume_dir {
        Some(dir) => Some(find_resume(&mut config, config_path, dir)?),
        None => None,
    };
    let head = Some((cluster, listen));
    run_or_resume(config, config_path, registry, show_progress, resume, head)
}

/// The newest checkpoint of `run_dir` that verifies; `config` now writes into `run_dir`.
fn find_resume(config: &mut RunConfig, config_path: &Path, run_dir: &Path) -> Result<Resume> {
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
    Ok(Resume {
        dir,
        state,
        skipped,
    })
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

fn run_or_resume(
    config: RunConfig,
    config_path: &Path,
    registry: Registry,
    show_progress: bool,
    resume: Option<Resume>,
    head: Option<(ClusterRun, std::net::SocketAddr)>,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating {}", config.run_dir.display()))?;
    let resolved = toml::to_string_pretty(&config).context("serialising the resolved config")?;
    std::fs::write(config.run_dir.join("config.toml"), resolved)?;
    check_kinds(&config, config_path, &registry)?;
    let kind = config.model.dtype.kind()?;
    let devices = Devices::parse(&config)?;
    let (
        PromptSet {
            prompts: specs,
            order,
        },
        _skipped,
    ) = run_prompt_set(&config, config_path, &registry)?;
    let shape = run_shape(&config, specs.len());
    if let Some(resume) = &resume {
        if let Some(problem) = shape_mismatch(&resume.state.shape, &shape) {
            bail!(
                "--resume: {}: {problem} ({})",
                config_path.display(),
                resume.dir.display()
            );
        }
    }
    let policy = policy_dir(&config)?;
    // An evaluator on a worker builds its prompts there.
    let eval_prompts = match &config.evaluator {
        Some(eval) if worker_node(&eval.node).is_none() => eval_specs(&config, eval)?,
        _ => Vec::new(),
    };
    if let Some(addr) = &config.telemetry.prometheus {
        crate::prometheus_endpoint::serve(addr)?;
    }
    // Restore before anything starts: a damaged buffer entry fails the resume up front.
    let restored = match resume {
        Some(resume) => Restored::from_checkpoint(resume, &specs, &config.run_dir)?,
        None => Restored::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Held until the run ends: dropping it closes the workers' sessions, and they exit.
    let head = match head {
        Some((cluster, listen)) => {
            Some(runtime.block_on(HeadCluster::start(cluster, listen, &config))?)
        }
        None => None,
    };
    let remote = head.as_ref().map(HeadCluster::remote_roles);
    let mut plan = config_plan(RealRun {
        config: &config,
        config_path,
        registry: Arc::new(registry),
        prompts: specs,
        policy: policy.clone(),
        kind,
        devices,
        eval_prompts,
        shape,
        remote,
    })?;
    plan.prompt_order = order;
    let stats = head.as_ref().map(|h| (h.stats(), h.transport.clone()));
    let outcome = runtime.block_on(run_topology(
        config,
        plan,
        restored,
        policy,
        show_progress,
        stats,
    ));
    drop(head);
    outcome
}

/// Every kind the config names must be registered, and each kind's table must parse into its
/// settings type: checked before any model loads, with the file and the field named.
pub fn check_kinds(config: &RunConfig, config_path: &Path, registry: &Registry) -> Result<()> {
    let file = config_path.display();
    // `kind_field` names where the kind is chosen, `settings` where its table is.
    let check =
        |role: Role, kind: &str, table: serde_json::Value, kind_field: &str, settings: &str| {
            if !registry.has(role, kind) {
                bail!(
                    "{file}: {kind_field} = `{kind}` is not a registered {} kind (known: {})",
                    role.name(),
                    registry.kinds_of(role).join(", ")
                );
            }
            registry
                .check(role, kind, &table)
                .map_err(|e| match e.field {
                    Some(field) => anyhow!("{file}: {settings}.{field}: {}", e.message),
                    None => anyhow!("{file}: {settings} (kind `{kind}`): {}", e.message),
                })
        };
    for (i, t) in config.judges.iter().enumerate() {
        let table = crate::topology::config_plan::json_table(&t.settings)?;
        let at = format!("judge[{i}]");
        check(Role::Judge, &t.kind, table, &format!("{at}.kind"), &at)?;
    }
    for (i, t) in config.stages.iter().enumerate() {
        let table = crate::topology::config_plan::json_table(&t.settings)?;
        let at = format!("post_judge[{i}]");
        check(Role::PostJudge, &t.kind, table, &format!("{at}.kind"), &at)?;
    }
    if let Some(w) = &config.workflow {
        check(
            Role::Workflow,
            &w.kind,
            w.settings_value(),
            "workflow.kind",
            "workflow",
        )?;
    }
    if let Some(loss) = &config.learner.loss {
        let table = loss.settings_value();
        check(
            Role::Loss,
            &loss.kind,
            table,
            "learner.loss.kind",
            "learner.loss",
        )?;
    }
    if let Some(eval) = &config.evaluator {
        let table = serde_json::Value::Object(eval.metric_settings.clone().unwrap_or_default());
        let settings = "evaluator.metric_settings";
        check(
            Role::Metric,
            &eval.metric,
            table,
            "evaluator.metric",
            settings,
        )?;
    }
    let source = config.data.source.as_str();
    if !matches!(source, "world" | "jsonl" | "parquet") {
        let table = serde_json::Value::Object(config.data.settings.clone().unwrap_or_default());
        check(
            Role::PromptSource,
            source,
            table,
            "data.source",
            "data.settings",
        )?;
    }
    Ok(())
}

/// The run's progress bar, from where a resumed run starts.
fn progress_bar(show: bool, steps: u64, start: u64) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(start);
    bar
}

/// What a run writes as it goes: `metrics.jsonl`, `eval.jsonl`, the TensorBoard events, and the
/// progress bar. Each step and evaluation is written when it arrives, so a killed run keeps them.
struct RunWriters {
    metrics: std::fs::File,
    evals: Option<std::fs::File>,
    board: Option<RunBoard>,
    bar: ProgressBar,
}

impl RunWriters {
    fn create(config: &RunConfig, restored: &Restored, show_progress: bool) -> Result<RunWriters> {
        let start_version = restored.start_version();
        let create = |name: &str| {
            let path = config.run_dir.join(name);
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
        };
        let mut metrics = create("metrics.jsonl")?;
        for stats in &restored.steps {
            writeln!(metrics, "{}", serde_json::to_string(stats)?)?;
        }
        let evals = match config.evaluator {
            Some(_) => Some(create("eval.jsonl")?),
            None => None,
        };
        let board = match config.telemetry.tensorboard {
            true => {
                // A fresh run in a used directory shows alone; a resume adds a file beside.
                let fresh = restored.learner.is_none();
                Some(RunBoard::create(&config.run_dir, config.group_size, fresh)?)
            }
            false => None,
        };
        let bar = progress_bar(show_progress, config.steps, start_version);
        Ok(RunWriters {
            metrics,
            evals,
            board,
            bar,
        })
    }
}

impl StepObserver for RunWriters {
    fn step(&mut self, stats: &StepStats) -> Result<()> {
        writeln!(self.metrics, "{}", serde_json::to_string(stats)?)?;
        if let Some(board) = self.board.as_mut() {
            board.step(stats)?;
        }
        self.bar.set_position(stats.step + 1);
        self.bar.set_message(format!(
            "reward {:.3}  kl {:.4}  staleness {}",
            stats.reward_mean, stats.kl, stats.max_staleness
        ));
        Ok(())
    }

    fn eval(&mut self, stats: &EvalStats) -> Result<()> {
        if let Some(file) = self.evals.as_mut() {
            writeln!(file, "{}", serde_json::to_string(stats)?)?;
        }
        if let Some(board) = self.board.as_mut() {
            board.eval(stats)?;
        }
        Ok(())
    }
}

/// Spawns, drives, drains and summarises the topology; writes `metrics.jsonl`, `eval.jsonl`,
/// the final weights' tokenizer files and `summary.json`.
async fn run_topology(
    config: RunConfig,
    plan: TopologyPlan,
    restored: Restored,
    policy: PathBuf,
    show_progress: bool,
    remote: Option<(
        grlhf_cluster::remote_stats::RemoteStats,
        grlhf_cluster::transport::TransportChoice,
    )>,
) -> Result<RunOutcome> {
    let mut writers = RunWriters::create(&config, &restored, show_progress)?;
    let mut topology = Topology::spawn(plan, restored).await?;
    let driven = topology.drive_steps(&mut writers, true).await?;
    writers.bar.finish_and_clear();
    let finished = topology
        .drain(driven, &mut |stats: &EvalStats| writers.eval(stats))
        .await?;
    let mut board = writers.board;
    let reached = finished.reached();
    if reached < config.steps && !finished.interrupted && finished.learner.aborted.is_none() {
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
    let mut summary = finished.summary(&config);
    if let Some((stats, transport)) = remote {
        summary.remote_roles = stats.snapshot();
        summary.weights_transport = Some(transport);
    }
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(config.run_dir.join("summary.json"), text)?;
    if let Some(board) = board.as_mut() {
        board.summary(reached, &summary)?;
    }
    if config.telemetry.plots {
        // A picture that cannot be drawn must not cost the run: its files are all written.
        if let Err(e) = draw_run_plots(&config.run_dir) {
            tracing::warn!("plots of {}: {e:#}", config.run_dir.display());
        }
    }
    if let Some(reason) = &finished.learner.aborted {
        bail!(
            "the run was stopped after step {reached}: {reason}; the final checkpoint is {} (resume with --resume {})",
            finished
                .learner
                .last_checkpoint
                .as_ref()
                .map_or("not written".to_string(), |p| p.display().to_string()),
            config.run_dir.display()
        );
    }
    Ok(RunOutcome {
        summary,
        steps: finished.steps.clone().into_recent(),
        evals: finished.evals,
        activity: finished.activity,
        run_dir: config.run_dir.clone(),
    })
}
