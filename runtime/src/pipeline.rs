//! `grlhf pipeline CONFIG` and `grlhf reproduce CONFIG`: Generative RLHF-V end to end, in one
//! run directory laid out as [`RunLayout`] describes: warm start (policy SFT, GRM SFT,
//! score-only RM, grounding check), stage 1 (the GRM trained by RL), stage 2 (the policy
//! trained by RL, per variant, and the candidate sweep), evaluation, report and plots.
//!
//! Each stage reads only what earlier stages saved, so `--stage` runs one alone from saved
//! checkpoints; a missing input is an error naming the stage that makes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::eval_metric::OracleMetric;
use grlhf_actors::evaluator::{evaluate_prompts, EvalStats};
use grlhf_actors::registry::Registry;
use grlhf_actors::scalar_rm_judge::ScalarRewardModel;
use grlhf_actors::vl_engine::VlEngine;
use grlhf_tasks::export::write_atomically;
use grlhf_tasks::world::{HeldOut, Split};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind};

use crate::charts::{grouped_bars, line_charts, BarPanel, LinePanel};
use crate::grounding::{grm_grounding, policy_grounding, Grounding, GroundingSettings};
use crate::pipeline_config::{PipelineConfig, Variant};
use crate::report::{
    paired_standard_error, standard_error, HackingWatch, Report, SweepPoint, REWARD_MODELS, SPLITS,
};
use crate::reward_model_eval::{
    candidate_groups, grm_correlations, grm_verdicts, scalar_correlation, scalar_verdicts,
    PairAccuracy, PairVerdict,
};
use crate::run::run;
use crate::run_config::{EvaluatorConfig, RunConfig};
use crate::run_layout::{RunLayout, StageRunDir, WarmStartDir};
use crate::warm_start::{run_bt_rm, run_sft, world_eval_prompts, world_pairs, SftRequest, Target};

/// The pipeline's stages, in order. `--stage` takes their [`PipelineStage::name`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum PipelineStage {
    #[value(name = "warm-start")]
    WarmStart,
    #[value(name = "stage1")]
    Stage1,
    #[value(name = "stage2")]
    Stage2,
    #[value(name = "eval")]
    Eval,
}

impl PipelineStage {
    pub const ALL: [PipelineStage; 4] = [
        PipelineStage::WarmStart,
        PipelineStage::Stage1,
        PipelineStage::Stage2,
        PipelineStage::Eval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PipelineStage::WarmStart => "warm-start",
            PipelineStage::Stage1 => "stage1",
            PipelineStage::Stage2 => "stage2",
            PipelineStage::Eval => "eval",
        }
    }
}

/// What to run.
pub struct PipelineRequest {
    pub config: PipelineConfig,
    pub config_path: PathBuf,
    /// Only this stage (its inputs must exist); `None` runs all.
    pub only: Option<PipelineStage>,
    /// Stage-2 variants to train.
    pub variants: Vec<Variant>,
    /// Candidate counts for the sweep (empty: no sweep).
    pub sweep_n: Vec<usize>,
    pub progress: bool,
}

impl PipelineRequest {
    /// The run directory.
    pub fn layout(&self) -> RunLayout {
        RunLayout::new(&self.config.run_dir)
    }
}

fn step_bar(show: bool, len: u64, label: &str) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label:<12} {{pos}}/{{len}} [{{bar:30}}] {{msg}} ({{elapsed}})"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

fn say(text: &str) {
    eprintln!("\n== {text}");
}

/// Records `stage`'s wall time in `RUN/stages.json` (kept across stage-alone runs).
fn record_wall(layout: &RunLayout, stage: &str, seconds: f64) -> Result<()> {
    let mut walls = read_walls(layout)?;
    walls.insert(stage.to_string(), seconds);
    write_atomic(
        &layout.stage_walls(),
        &serde_json::to_string_pretty(&walls)?,
    )
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, text.as_bytes()).map_err(|e| anyhow!(e))
}

fn require(path: &Path, made_by: &str) -> Result<()> {
    if !path.exists() {
        bail!(
            "{} does not exist: run the {made_by} stage first (grlhf pipeline CONFIG --stage {made_by})",
            path.display()
        );
    }
    Ok(())
}

/// Runs the requested stages and, when evaluation runs, returns the report.
pub fn run_pipeline(
    request: &PipelineRequest,
    registry: &dyn Fn() -> Registry,
) -> Result<Option<Report>> {
    let layout = request.layout();
    let root = layout.root();
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(
        layout.pipeline_config(),
        toml::to_string_pretty(&request.config).context("serialising the pipeline config")?,
    )?;
    let stages: Vec<PipelineStage> = match request.only {
        Some(s) => vec![s],
        None => PipelineStage::ALL.to_vec(),
    };
    let mut report = None;
    for stage in stages {
        let started = Instant::now();
        match stage {
            PipelineStage::WarmStart => warm_start(request)?,
            PipelineStage::Stage1 => stage1(request, registry)?,
            PipelineStage::Stage2 => stage2(request, registry)?,
            PipelineStage::Eval => report = Some(evaluate(request)?),
        }
        record_wall(&layout, stage.name(), started.elapsed().as_secs_f64())?;
    }
    if let Some(report) = &mut report {
        // The evaluation's own wall time is known only now; rewrite the report with it.
        report.stage_wall_s = read_walls(&layout)?;
        write_report(request, report)?;
    }
    Ok(report)
}

fn read_walls(layout: &RunLayout) -> Result<BTreeMap<String, f64>> {
    let path = layout.stage_walls();
    Ok(match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a map of stage wall times", path.display()))?,
        Err(_) => BTreeMap::new(),
    })
}

fn warm_start(request: &PipelineRequest) -> Result<()> {
    let config = &request.config;
    let layout = request.layout();
    let ws = &config.warm_start;
    let device = (ws.device.device()).map_err(|e| anyhow!("warm_start.device: {e}"))?;
    let trainings = [
        (
            Target::Policy,
            &ws.policy,
            layout.warm_policy(),
            "policy SFT",
            false,
        ),
        (
            Target::Policy,
            &ws.policy,
            layout.warm_policy_blind(),
            "policy SFT, blind twin (blank images)",
            true,
        ),
        (Target::Grm, &ws.grm, layout.warm_grm(), "GRM SFT", false),
        (
            Target::Grm,
            &ws.grm,
            layout.warm_grm_blind(),
            "GRM SFT, blind twin (blank images)",
            true,
        ),
    ];
    let wanted = trainings
        .into_iter()
        .filter(|&(.., blind)| !blind || ws.grounding.blind_twin);
    for (target, sft, dir, label, blind) in wanted {
        say(&format!("warm start: {label} ({} steps)", sft.steps));
        let bar = step_bar(request.progress, sft.steps, label);
        let sft_request = SftRequest {
            target,
            model: config.model.clone(),
            out: dir.dir().to_path_buf(),
            config: grlhf_actors::sft::SftConfig {
                seed: config.seed,
                ..sft.clone()
            },
            world_size: config.world_size,
            sft_quality: if target == Target::Policy {
                ws.sft_quality
            } else {
                1.0
            },
            eval_per_family: 1,
            eval_split: grlhf_tasks::world::HeldOut::Validation,
            eval_pairs: 1,
            max_new_tokens: config.eval.max_new_tokens,
            device,
            evaluate: false,
            blind,
        };
        let report = run_sft(&sft_request, |s| {
            bar.set_position(s.step + 1);
            bar.set_message(format!("loss {:.3}", s.loss));
        })?;
        bar.finish_and_clear();
        eprintln!(
            "   loss {:.3} → {:.3} in {:.0} s",
            report.loss_first, report.loss_last, report.wall_s
        );
    }
    say(&format!(
        "warm start: score-only Bradley–Terry RM ({} steps)",
        ws.rm.steps
    ));
    let bar = step_bar(request.progress, ws.rm.steps, "BT reward");
    let rm = grlhf_actors::bradley_terry::BtConfig {
        seed: config.seed,
        ..ws.rm.clone()
    };
    let report = run_bt_rm(
        &config.model,
        layout.warm_rm().dir(),
        &rm,
        config.world_size,
        device,
        |s| {
            bar.set_position(s.step + 1);
            bar.set_message(format!("loss {:.3} acc {:.2}", s.loss, s.accuracy));
        },
    )?;
    bar.finish_and_clear();
    eprintln!(
        "   loss {:.3} → {:.3}, training-batch accuracy {:.2} → {:.2} in {:.0} s",
        report.loss_first,
        report.loss_last,
        report.train_accuracy_first,
        report.train_accuracy_last,
        report.wall_s
    );
    warm_start_grounding(request, device)
}

/// The grounding check of the warm-started policy and GRM (and their blind twins): prints one
/// line per model, writes `warm/grounding.json`, and warns loudly — or, with
/// `fail_when_blind`, stops — when a model does not use its image.
fn warm_start_grounding(request: &PipelineRequest, device: Device) -> Result<()> {
    let config = &request.config;
    let layout = request.layout();
    let settings = &config.warm_start.grounding;
    let measure = GroundingSettings {
        max_new_tokens: config.eval.max_new_tokens,
        min_swap_changed: settings.min_swap_changed,
    };
    let twin = |dir: WarmStartDir| -> Result<Option<VlEngine>> {
        Ok(if settings.blind_twin {
            Some(load_engine(&dir.model(), device)?)
        } else {
            None
        })
    };
    say("warm start: grounding check (image swap, blind twin)");
    let policy = load_engine(&layout.warm_policy().model(), device)?;
    let prompts = world_eval_prompts(config.seed, settings.prompts_per_family)?;
    let blind_policy = twin(layout.warm_policy_blind())?;
    let policy = policy_grounding(&policy, blind_policy.as_ref(), &prompts, measure)?;
    eprintln!("   policy: {}", policy.line());
    let grm = load_engine(&layout.warm_grm().model(), device)?;
    let pairs = world_pairs(config.seed, Split::PairsTest, settings.pairs)?;
    let judge = GroundingSettings {
        max_new_tokens: config.eval.judge_max_new_tokens,
        ..measure
    };
    let grm = grm_grounding(&grm, twin(layout.warm_grm_blind())?.as_ref(), &pairs, judge)?;
    eprintln!("   GRM:    {}", grm.line());
    let results = BTreeMap::from([("policy".to_string(), policy), ("grm".to_string(), grm)]);
    write_atomic(
        &layout.grounding(),
        &serde_json::to_string_pretty(&results)?,
    )?;
    let blind: Vec<&str> = results
        .iter()
        .filter(|(_, g)| !g.sees)
        .map(|(name, _)| if name == "grm" { "GRM" } else { "policy" })
        .collect();
    if !blind.is_empty() {
        let message = format!(
            "the warm-started {} {} BLIND: swapping the image changes fewer than {:.0}% of \
             its answers (verdicts), so no reward can teach it anything about the scene \
             (docs/world.md, \"Models must see\")",
            blind.join(" and "),
            if blind.len() == 1 { "is" } else { "are" },
            settings.min_swap_changed * 100.0
        );
        if settings.fail_when_blind {
            bail!("{message} (warm_start.grounding.fail_when_blind = true)");
        }
        eprintln!("\n   WARNING: {message}\n");
    }
    Ok(())
}

fn run_stage(
    config: RunConfig,
    request: &PipelineRequest,
    registry: &dyn Fn() -> Registry,
) -> Result<()> {
    config
        .validate_checkpoints()
        .with_context(|| format!("{}", request.config_path.display()))?;
    let held_out = config
        .evaluator
        .as_ref()
        .map(|e| e.split.to_string())
        .unwrap_or_default();
    let outcome = run(config, &request.config_path, registry(), request.progress)?;
    let s = &outcome.summary;
    eprintln!(
        "   reward {:.3} → {:.3} over {} steps in {:.0} s{}",
        s.reward_mean_first,
        s.reward_mean_last,
        s.learner_steps,
        s.wall_s,
        match (s.eval_first, s.eval_last) {
            (Some(a), Some(b)) =>
                format!("; {held_out} oracle {:.1} → {:.1}", a * 100.0, b * 100.0),
            _ => String::new(),
        }
    );
    Ok(())
}

fn stage1(request: &PipelineRequest, registry: &dyn Fn() -> Registry) -> Result<()> {
    let config = &request.config;
    require(&request.layout().warm_grm().model(), "warm-start")?;
    let run_config = config.stage1_config(&request.config_path, &config.run_dir)?;
    say(&format!(
        "stage 1: GRM trained by GRPO on preference pairs ({} steps, k = {})",
        run_config.steps, run_config.group_size
    ));
    run_stage(run_config, request, registry)
}

/// A stage-2 run config with a periodic evaluator (for the curves and the length watch).
fn stage2_run_config(
    request: &PipelineRequest,
    variant: Variant,
    run_dir: &Path,
    group_size: Option<usize>,
) -> Result<RunConfig> {
    let config = &request.config;
    let mut run_config = config.stage2_config(
        &request.config_path,
        variant,
        &config.run_dir,
        run_dir,
        group_size,
    )?;
    if run_config.evaluator.is_none() {
        run_config.evaluator = Some(EvaluatorConfig {
            every: (run_config.steps / 4).max(1),
            prompts_per_family: 2,
            max_new_tokens: config.eval.max_new_tokens,
            metric: "oracle".to_string(),
            ..EvaluatorConfig::default()
        });
    }
    Ok(run_config)
}

fn stage2(request: &PipelineRequest, registry: &dyn Fn() -> Registry) -> Result<()> {
    let layout = request.layout();
    require(&layout.warm_policy().model(), "warm-start")?;
    for variant in &request.variants {
        match variant {
            Variant::RmGrpo => require(&layout.warm_rm().model(), "warm-start")?,
            Variant::GrmSftGrouped => require(&layout.warm_grm().model(), "warm-start")?,
            Variant::OracleGrpo => {}
            _ => require(&layout.stage1().policy(), "stage1")?,
        }
        let run_config = stage2_run_config(request, *variant, layout.stage2(*variant).dir(), None)?;
        say(&format!(
            "stage 2: {} ({} steps, n = {})",
            variant.describe(),
            run_config.steps,
            run_config.group_size
        ));
        run_stage(run_config, request, registry)?;
    }
    for &n in &request.sweep_n {
        for variant in [Variant::RmGrpo, Variant::GrmRlGrouped] {
            let dir = layout.sweep(n, variant);
            let run_config = stage2_run_config(request, variant, dir.dir(), Some(n))?;
            say(&format!(
                "sweep: {} with n = {n} ({} steps)",
                variant.describe(),
                run_config.steps
            ));
            run_stage(run_config, request, registry)?;
        }
    }
    Ok(())
}

fn load_engine(dir: &Path, device: Device) -> Result<VlEngine> {
    VlEngine::load(dir, device, Kind::Float).map_err(|e| anyhow!(e))
}

/// Held-out policy evaluation (oracle, greedy), one `EvalStats` per policy.
fn policy_eval(
    request: &PipelineRequest,
    policies: &[(String, PathBuf)],
    device: Device,
) -> Result<BTreeMap<String, EvalStats>> {
    let config = &request.config;
    let prompts = world_eval_prompts(config.seed, config.eval.prompts_per_family)?;
    let bar = step_bar(request.progress, policies.len() as u64, "policies");
    let mut out = BTreeMap::new();
    for (name, dir) in policies {
        bar.set_message(name.clone());
        let engine = load_engine(dir, device)?;
        let stats = evaluate_prompts(
            &engine,
            &prompts,
            &OracleMetric,
            config.eval.max_new_tokens,
            16,
            0,
        )
        .map_err(|e| anyhow!("evaluating {name}: {e}"))?;
        out.insert(name.clone(), stats);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn to_table(stats: &EvalStats) -> BTreeMap<String, f64> {
    let mut row: BTreeMap<String, f64> = stats
        .per_family
        .iter()
        .map(|(k, v)| (k.clone(), v * 100.0))
        .collect();
    row.insert("average".into(), stats.mean * 100.0);
    row
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// Reward-model verdicts on every held-out split, appended to `judgments.jsonl`.
fn rm_verdicts(request: &PipelineRequest, device: Device) -> Result<Vec<PairVerdict>> {
    let config = &request.config;
    let layout = request.layout();
    let grm_untrained = if layout.warm_grm().init().is_dir() {
        layout.warm_grm().init()
    } else {
        PathBuf::from(&config.model)
    };
    let models: [(&str, PathBuf); 4] = [
        ("score_only_rm", layout.warm_rm().model()),
        ("grm", grm_untrained),
        ("grm_sft", layout.warm_grm().model()),
        ("grm_rl", layout.stage1().policy()),
    ];
    let bar = step_bar(
        request.progress,
        (models.len() * SPLITS.len()) as u64,
        "reward models",
    );
    let mut all = Vec::new();
    for (name, dir) in &models {
        if !dir.is_dir() {
            eprintln!("   {name}: {} not found, left out", dir.display());
            bar.inc(SPLITS.len() as u64);
            continue;
        }
        let scalar = (*name == "score_only_rm")
            .then(|| ScalarRewardModel::load(dir, device, Kind::Float).map_err(|e| anyhow!(e)))
            .transpose()?;
        let engine = if scalar.is_none() {
            Some(load_engine(dir, device)?)
        } else {
            None
        };
        for (split_name, key) in SPLITS {
            bar.set_message(format!("{name} {key}"));
            let split = Split::ALL
                .into_iter()
                .find(|s| s.name() == split_name)
                .expect("a world split");
            let pairs = world_pairs(config.seed, split, config.eval.pairs)?;
            let verdicts = match (&scalar, &engine) {
                (Some(rm), _) => scalar_verdicts(rm, name, key, &pairs)?,
                (_, Some(engine)) => {
                    grm_verdicts(engine, name, key, &pairs, config.eval.judge_max_new_tokens)?
                }
                _ => unreachable!("one of the two is loaded"),
            };
            all.extend(verdicts);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(all)
}

/// Accuracy and parse rate per (model, split), recomputed from verdicts.
pub fn accuracies_from_verdicts(
    verdicts: &[PairVerdict],
) -> BTreeMap<String, BTreeMap<String, PairAccuracy>> {
    let mut grouped: BTreeMap<(String, String), Vec<PairVerdict>> = BTreeMap::new();
    for v in verdicts {
        grouped
            .entry((v.model.clone(), v.split.clone()))
            .or_default()
            .push(v.clone());
    }
    let mut out: BTreeMap<String, BTreeMap<String, PairAccuracy>> = BTreeMap::new();
    for ((model, split), vs) in grouped {
        out.entry(model)
            .or_default()
            .insert(split, PairAccuracy::of(&vs));
    }
    out
}

fn correlations(
    request: &PipelineRequest,
    device: Device,
) -> Result<BTreeMap<String, BTreeMap<String, Option<f64>>>> {
    let config = &request.config;
    let layout = request.layout();
    let groups = candidate_groups(
        config.seed,
        config.eval.correlation_groups,
        config.eval.correlation_n,
    )?;
    let mut out = BTreeMap::new();
    let rm_dir = layout.warm_rm().model();
    if rm_dir.is_dir() {
        let rm = ScalarRewardModel::load(&rm_dir, device, Kind::Float).map_err(|e| anyhow!(e))?;
        let mut row = BTreeMap::new();
        row.insert("alone".to_string(), scalar_correlation(rm, &groups)?);
        out.insert("score_only_rm".to_string(), row);
    }
    for (name, dir) in [
        ("grm_sft", layout.warm_grm().model()),
        ("grm_rl", layout.stage1().policy()),
    ] {
        if dir.is_dir() {
            let engine = load_engine(&dir, device)?;
            out.insert(
                name.to_string(),
                grm_correlations(
                    engine,
                    &groups,
                    config.eval.judge_max_new_tokens,
                    config.seed,
                )?,
            );
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct StepLine {
    step: u64,
    reward_mean: f64,
}

#[derive(serde::Deserialize)]
struct EvalLine {
    version: u64,
    mean: f64,
    mean_tokens: f64,
}

/// The evaluation stage: every policy on the held-out prompts, every reward model on the
/// held-out and out-of-distribution pairs, the rewards' correlation with the oracle, the
/// training curves and the grounding check, gathered into the report (with its plots).
fn evaluate(request: &PipelineRequest) -> Result<Report> {
    let config = &request.config;
    let layout = request.layout();
    let device = (config.eval.device.device()).map_err(|e| anyhow!("eval.device: {e}"))?;
    std::fs::create_dir_all(layout.eval_dir())?;
    require(&layout.warm_policy().model(), "warm-start")?;

    say("evaluation: policies on held-out prompts (oracle)");
    let (policies, sweep_points) = trained_policies(request);
    let stats = policy_eval(request, &policies, device)?;
    write_atomic(
        &layout.policy_eval(),
        &serde_json::to_string_pretty(&stats)?,
    )?;
    write_answers(
        &layout.answers(),
        &world_eval_prompts(config.seed, config.eval.prompts_per_family)?,
        &stats,
    )?;

    say("evaluation: reward models on held-out and out-of-distribution pairs");
    let accuracy = judge_held_out_pairs(request, device)?;

    say("evaluation: correlation of rewards with the oracle");
    let rm_correlation = correlations(request, device)?;

    let mut report = Report {
        seed: config.seed,
        rm_pairs_per_split: config.eval.pairs,
        eval_prompts: stats.get("base").map_or(0, |s| s.prompts),
        rm_correlation,
        ..Report::default()
    };
    add_rm_accuracy(&mut report, &accuracy);
    add_policy_stats(&mut report, &stats);
    add_sweep(&mut report, &stats, &sweep_points);
    add_training_curves(&mut report, &layout)?;
    let grounding = layout.grounding();
    if grounding.is_file() {
        let text = std::fs::read_to_string(&grounding)?;
        report.grounding = serde_json::from_str::<BTreeMap<String, Grounding>>(&text)
            .with_context(|| format!("{}: not a grounding record", grounding.display()))?;
    }
    report.check_claims();
    report.plots = plots(&layout, &report, config.stage2_eval_split()?)?;
    Ok(report)
}

/// A point of the candidate sweep: n, the variant, and its policy's key in the evaluation.
type SweepPolicy = (usize, Variant, String);

/// The policies to evaluate, by key — the warm-started base, each stage-2 variant and each
/// sweep point that was trained — and the sweep points among them.
fn trained_policies(request: &PipelineRequest) -> (Vec<(String, PathBuf)>, Vec<SweepPolicy>) {
    let layout = request.layout();
    let mut policies = vec![("base".to_string(), layout.warm_policy().model())];
    for v in Variant::ALL {
        let dir = layout.stage2(v).policy();
        if dir.is_dir() {
            policies.push((v.name().to_string(), dir));
        }
    }
    let mut sweep_points = Vec::new();
    for &n in &request.sweep_n {
        for v in [Variant::RmGrpo, Variant::GrmRlGrouped] {
            let dir = layout.sweep(n, v).policy();
            if dir.is_dir() {
                let key = format!("sweep_n{n}_{}", v.name());
                policies.push((key.clone(), dir));
                sweep_points.push((n, v, key));
            }
        }
    }
    (policies, sweep_points)
}

/// Every reward model's verdicts, written to `eval/judgments.jsonl`; the accuracies per
/// (model, split) are recomputed from the saved file, as any reader would.
fn judge_held_out_pairs(
    request: &PipelineRequest,
    device: Device,
) -> Result<BTreeMap<String, BTreeMap<String, PairAccuracy>>> {
    let verdicts = rm_verdicts(request, device)?;
    let judgments_path = request.layout().judgments();
    let mut lines = String::new();
    for v in &verdicts {
        lines.push_str(&serde_json::to_string(v)?);
        lines.push('\n');
    }
    write_atomic(&judgments_path, &lines)?;
    let saved: Vec<PairVerdict> = read_jsonl(&judgments_path)?;
    Ok(accuracies_from_verdicts(&saved))
}

/// Each reward model's accuracy and parse rate per split.
fn add_rm_accuracy(
    report: &mut Report,
    accuracy: &BTreeMap<String, BTreeMap<String, PairAccuracy>>,
) {
    for (model, splits) in accuracy {
        report.rm_accuracy.insert(
            model.clone(),
            splits
                .iter()
                .map(|(k, a)| (k.clone(), a.accuracy))
                .collect(),
        );
        report.rm_parsed.insert(
            model.clone(),
            splits.iter().map(|(k, a)| (k.clone(), a.parsed)).collect(),
        );
    }
}

/// Each policy's (not the sweep's) scores, gain over the base with standard errors, and the
/// reward-hacking watch.
fn add_policy_stats(report: &mut Report, stats: &BTreeMap<String, EvalStats>) {
    let base_average = stats.get("base").map(|s| s.mean * 100.0).unwrap_or(0.0);
    for (name, s) in stats {
        if name.starts_with("sweep_") {
            continue;
        }
        report.policy_eval.insert(name.clone(), to_table(s));
        let scores: Vec<f64> = s.scores.iter().map(|x| x * 100.0).collect();
        report
            .policy_se
            .insert(name.clone(), standard_error(&scores));
        if name != "base" {
            report
                .policy_gain
                .insert(name.clone(), s.mean * 100.0 - base_average);
            if let Some(base) = stats.get("base") {
                let base: Vec<f64> = base.scores.iter().map(|x| x * 100.0).collect();
                report
                    .policy_gain_se
                    .insert(name.clone(), paired_standard_error(&scores, &base));
            }
        }
        report.policy_scores.insert(name.clone(), scores);
        report.reward_hacking.insert(
            name.clone(),
            HackingWatch {
                self_praise: s.self_praise,
                beyond_needed: s.beyond_needed,
                mean_tokens: s.mean_tokens,
                finished: s.finished,
                safe_refused: s.safe_refused,
                safety_safe_refused: s.safety_safe_refused,
            },
        );
    }
}

/// The sweep's points: each evaluated (n, variant) with its gain over the base policy.
fn add_sweep(
    report: &mut Report,
    stats: &BTreeMap<String, EvalStats>,
    sweep_points: &[SweepPolicy],
) {
    let base_average = stats.get("base").map(|s| s.mean * 100.0).unwrap_or(0.0);
    for (n, v, key) in sweep_points {
        if let Some(s) = stats.get(key) {
            report.sweep.push(SweepPoint {
                n: *n,
                variant: v.name().to_string(),
                average: s.mean * 100.0,
                gain: s.mean * 100.0 - base_average,
            });
        }
    }
}

/// Reward by step (stage 1 and each stage-2 variant), and stage 2's held-out score and
/// response length by policy version, from the stage directories.
fn add_training_curves(report: &mut Report, layout: &RunLayout) -> Result<()> {
    let mut runs: Vec<(String, StageRunDir)> = vec![("stage1".to_string(), layout.stage1())];
    for v in Variant::ALL {
        runs.push((v.name().to_string(), layout.stage2(v)));
    }
    for (name, dir) in runs {
        let metrics = dir.metrics();
        if metrics.is_file() {
            let steps: Vec<StepLine> = read_jsonl(&metrics)?;
            report.reward_curves.insert(
                name.clone(),
                steps
                    .iter()
                    .map(|s| (s.step as f64, s.reward_mean))
                    .collect(),
            );
        }
        let evals = dir.evals();
        if name != "stage1" && evals.is_file() {
            let lines: Vec<EvalLine> = read_jsonl(&evals)?;
            report.eval_curves.insert(
                name.clone(),
                lines
                    .iter()
                    .map(|e| (e.version as f64, e.mean * 100.0))
                    .collect(),
            );
            report.length_drift.insert(
                name.clone(),
                lines
                    .iter()
                    .map(|e| (e.version as f64, e.mean_tokens))
                    .collect(),
            );
        }
    }
    Ok(())
}

/// Every policy's answer to every held-out prompt with the oracle's score and findings, for
/// reading what RL changed (and how a policy games its reward model).
fn write_answers(
    path: &Path,
    prompts: &[grlhf_actors::prompt_source::PromptSpec],
    stats: &BTreeMap<String, EvalStats>,
) -> Result<()> {
    let mut lines = String::new();
    for (policy, s) in stats {
        for (prompt, answer) in prompts.iter().zip(&s.answers) {
            let world = prompt.world.as_ref().expect("world prompts");
            let score = grlhf_tasks::oracle::score(&world.scene, &world.task, answer);
            let findings: Vec<&str> = score.findings.iter().map(|f| f.phrase()).collect();
            lines.push_str(&serde_json::to_string(&serde_json::json!({
                "policy": policy,
                "id": prompt.id,
                "family": world.task.family().name(),
                "question": prompt.question,
                "answer": answer,
                "oracle": score.total,
                "findings": findings,
            }))?);
            lines.push('\n');
        }
    }
    write_atomic(path, &lines)
}

fn write_report(request: &PipelineRequest, report: &Report) -> Result<()> {
    let layout = request.layout();
    write_atomic(
        &layout.report_json(),
        &serde_json::to_string_pretty(report)?,
    )?;
    write_atomic(
        &layout.report_md(),
        &report.markdown("Generative RLHF-V on the embedded world"),
    )?;
    Ok(())
}

/// The report's PNGs, relative to the run directory. `eval_split` is the held-out set stage 2's
/// evaluator measured (the eval curves' title names it).
fn plots(layout: &RunLayout, report: &Report, eval_split: HeldOut) -> Result<Vec<String>> {
    std::fs::create_dir_all(layout.plots())?;
    let mut written = Vec::new();
    let smooth = |curve: &Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        let w = (curve.len() / 20).max(1);
        curve
            .windows(w)
            .map(|win| {
                (
                    win[w - 1].0,
                    win.iter().map(|p| p.1).sum::<f64>() / w as f64,
                )
            })
            .collect()
    };
    let stage2: Vec<(String, Vec<(f64, f64)>)> = report
        .reward_curves
        .iter()
        .filter(|(k, _)| k.as_str() != "stage1")
        .map(|(k, c)| (k.clone(), smooth(c)))
        .collect();
    let mut panels = Vec::new();
    if let Some(c) = report.reward_curves.get("stage1") {
        panels.push(LinePanel {
            title: "stage 1: GRM reward (agreement with label)".into(),
            series: vec![("grm_rl".into(), smooth(c))],
            x_label: "learner step".into(),
            y_label: "reward".into(),
        });
    }
    if !stage2.is_empty() {
        panels.push(LinePanel {
            title: "stage 2: policy reward (each judge's own scale)".into(),
            series: stage2,
            x_label: "learner step".into(),
            y_label: "reward".into(),
        });
    }
    if !panels.is_empty() {
        let path = layout.reward_curves_plot();
        line_charts(&path, &panels)?;
        written.push(layout.relative(&path));
    }
    if !report.eval_curves.is_empty() {
        let path = layout.eval_curves_plot();
        line_charts(
            &path,
            &[
                LinePanel {
                    title: format!("{eval_split} oracle score during stage 2"),
                    series: report.eval_curves.clone().into_iter().collect(),
                    x_label: "policy version".into(),
                    y_label: "oracle score (0-100)".into(),
                },
                LinePanel {
                    title: "response length during stage 2".into(),
                    series: report.length_drift.clone().into_iter().collect(),
                    x_label: "policy version".into(),
                    y_label: "mean tokens".into(),
                },
            ],
        )?;
        written.push(layout.relative(&path));
    }
    if !report.rm_accuracy.is_empty() {
        let models: Vec<(&str, &str)> = REWARD_MODELS
            .into_iter()
            .filter(|(k, _)| report.rm_accuracy.contains_key(*k))
            .collect();
        let path = layout.rm_accuracy_plot();
        grouped_bars(
            &path,
            &[BarPanel {
                title: "reward-model pairwise accuracy".into(),
                groups: SPLITS.iter().map(|(_, k)| k.to_string()).collect(),
                series: models
                    .iter()
                    .map(|(k, _)| {
                        (
                            k.to_string(),
                            SPLITS
                                .iter()
                                .map(|(_, s)| {
                                    report.rm_accuracy[*k].get(*s).copied().unwrap_or(0.0)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
                y_label: "accuracy".into(),
            }],
        )?;
        written.push(layout.relative(&path));
    }
    if !report.sweep.is_empty() {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for p in &report.sweep {
            series
                .entry(p.variant.clone())
                .or_default()
                .push((p.n as f64, p.gain));
        }
        let path = layout.sweep_plot();
        line_charts(
            &path,
            &[LinePanel {
                title: "improvement over the base policy against n".into(),
                series: series.into_iter().collect(),
                x_label: "candidates per prompt (n)".into(),
                y_label: "average gain (0-100)".into(),
            }],
        )?;
        written.push(layout.relative(&path));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::PipelineStage;

    #[test]
    fn stage_names_are_the_cli_spellings() {
        for stage in PipelineStage::ALL {
            let value = stage
                .to_possible_value()
                .expect("every stage is selectable");
            assert_eq!(value.get_name(), stage.name());
        }
        assert_eq!(PipelineStage::value_variants(), PipelineStage::ALL);
    }
}
