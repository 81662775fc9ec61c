//! `grlhf bench CONFIG`: async-RL throughput of a topology — where time goes, which role is the
//! bottleneck, how far from the ideal the run is, and how it changes with the topology.
//!
//! ```text
//! OUT/bench.json       everything below, machine-readable
//! OUT/bench.md         the same as tables
//! OUT/trace.json       the baseline run's timeline (Chrome / Perfetto trace events)
//! OUT/timeline.png     … as a Gantt chart
//! OUT/queues.png       the baseline's queue depths over time
//! OUT/sweep.png        samples/s per sweep variant, with each variant's ideal bound
//! OUT/scale.png        simulated throughput against actor count (with `[bench] scale`)
//! OUT/profile.json     the cost model fitted to the baseline run (real runs)
//! OUT/runs/<variant>/  each run's own run directory
//! ```
//!
//! A real config loads models; a config with `[bench.simulate]` (or `--simulate PROFILE`) runs
//! every role as a simulated actor with that cost model. Held-out evaluation is switched off:
//! it is not part of the pipeline being measured.

pub mod measure;
pub mod processes;
pub mod profile;
pub mod render;
pub mod simulated_run;
pub mod sweep;
pub mod timeline;

/// `[bench]`, defined beside `run_config` (which holds it) so the config does not depend on
/// this module.
pub use crate::bench_settings as settings;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grlhf_actors::activity::ActivityLog;
use grlhf_actors::registry::Registry;
use grlhf_actors::simulated::CostModel;
use grlhf_actors::trace_file::read_trace;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::run::{run, RunOutcome};
use crate::run_config::RunConfig;
use measure::{measure, step_shape, BenchReport};
use settings::BenchSettings;
use simulated_run::{judge_count, run_simulated};

/// What `grlhf bench` was asked to do.
pub struct BenchRequest {
    pub config: RunConfig,
    pub config_path: PathBuf,
    pub out: PathBuf,
    /// Overrides `[bench] steps`.
    pub steps: Option<u64>,
    /// A cost-model file (`profile.json` of an earlier bench); overrides `[bench.simulate]`.
    pub simulate: Option<PathBuf>,
    pub sweep: bool,
    pub scale: bool,
    pub show_progress: bool,
    /// The kinds the config may name (the built-ins, or a user binary's own).
    pub registry: std::sync::Arc<dyn Fn() -> Registry + Send + Sync>,
    /// The program started as the workers of a config that places roles on worker nodes
    /// (this binary: a user's own registers the same kinds).
    pub program: PathBuf,
}

/// The simulator replaying the baseline run from its fitted cost model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatorCheck {
    pub real_samples_per_s: f64,
    pub simulated_samples_per_s: f64,
    /// simulated / real − 1.
    pub relative_error: f64,
    pub simulated: BenchReport,
}

/// One sweep variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    pub label: String,
    pub axis: String,
    pub report: BenchReport,
    /// This variant's samples/s over the sync run's.
    pub over_sync: f64,
    /// Sync and async rows: samples/s over the perfect-overlap throughput of the sync run's
    /// stage times (measured with no stage competing for the machine; the staleness window
    /// left out, as if η were large enough).
    pub of_sync_ideal: Option<f64>,
}

/// One simulated scale run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRow {
    pub actors: usize,
    pub generators: usize,
    pub judges: usize,
    pub samples_per_s: f64,
    /// The cost model's perfect-overlap throughput.
    pub ideal_samples_per_s: f64,
    pub bottleneck: String,
    /// Measured step time over the cost model's perfect-overlap step time, minus 1.
    pub runtime_overhead: f64,
    /// The learner's busy share of the steady window.
    pub learner_busy: f64,
    /// The learner's measured stage time over the cost model's, minus 1: time the simulator's
    /// own waiting adds (thread hand-off), not the runtime's.
    pub learner_cost_overrun: f64,
    /// The same topology with every cost zero: the runtime's own time per group.
    pub zero_cost_us_per_group: f64,
    /// Most groups in flight at once (taken and not yet trained).
    pub peak_in_flight_groups: usize,
    /// Resident-memory growth over the run divided by that peak: an upper estimate of the
    /// memory one in-flight group costs (the allocator keeps what it freed).
    pub bytes_per_in_flight_group: f64,
}

/// `bench.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchOutput {
    pub machine: String,
    pub config: String,
    pub date: String,
    pub baseline: BenchReport,
    pub cost_model: Option<CostModel>,
    pub simulator_check: Option<SimulatorCheck>,
    pub sweep: Vec<SweepRow>,
    pub scale: Vec<ScaleRow>,
    /// A baseline run across processes: the same topology in one process, for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_process: Option<ProcessComparison>,
}

/// A multi-process baseline against the same config run in one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessComparison {
    pub report: BenchReport,
    /// The multi-process baseline's samples/s over this run's.
    pub processes_over_one: f64,
}

fn progress(show: bool, steps: u64, label: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:>16} step {pos}/{len} [{bar:30}] ({elapsed})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Runs one measured run: simulated when `cost` is given.
fn run_one(
    request: &BenchRequest,
    label: &str,
    mut config: RunConfig,
    cost: Option<&CostModel>,
    warmup: Option<u64>,
) -> Result<(BenchReport, RunOutcome)> {
    let slug: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    config.run_dir = request.out.join("runs").join(slug);
    config.evaluator = None;
    // Every step and every span is measured: the trace holds what the window drops.
    config.telemetry.steps_window = config.telemetry.steps_window.max(config.steps as usize);
    config.telemetry.trace = true;
    // Periodic checkpoints would land inside the measured window; the final one (after the
    // last step) stays.
    config.checkpoint.every = 0;
    let warmup = warmup.unwrap_or((config.steps / 10).max(1));
    let judges = judge_count(&config);
    let outcome = match cost {
        _ if processes::spans_processes(&config) => {
            let bar = progress(request.show_progress && cost.is_some(), config.steps, label);
            let outcome = processes::run_across_processes(request, &config, cost, bar.clone());
            bar.finish_and_clear();
            outcome?
        }
        Some(cost) => {
            let bar = progress(request.show_progress, config.steps, label);
            let registry = (request.registry)();
            let outcome = run_simulated(
                &config,
                &request.config_path,
                &registry,
                cost,
                bar.clone(),
                None,
            );
            bar.finish_and_clear();
            outcome?
        }
        None => run(
            config.clone(),
            &request.config_path,
            (request.registry)(),
            request.show_progress,
        )?,
    };
    let mut outcome = outcome;
    let (spans, events) = outcome.activity.evicted();
    if spans + events > 0 {
        // The in-memory window lost the oldest spans; the trace file has every one, unless
        // writing it failed or left a line unreadable.
        let trace = config.run_dir.join("trace");
        let problem = match (outcome.activity.trace_error(), read_trace(&trace, true)) {
            (Some(e), _) => Err(format!("writing it failed: {e}")),
            (None, Err(e)) => Err(format!("reading it failed: {e}")),
            (None, Ok(all)) if all.bad_lines > 0 => {
                Err(format!("{} lines are unreadable", all.bad_lines))
            }
            (None, Ok(all)) => Ok(all),
        };
        match problem {
            Ok(all) => outcome.activity = ActivityLog::from_records(all.spans, all.events),
            Err(why) => bail!(
                "{}: bench `{label}` outgrew its activity window ({spans} spans and {events} \
                 group events dropped) and its trace {} is incomplete ({why}), so its busy \
                 times would be wrong: raise [telemetry] activity_window above {}",
                request.config_path.display(),
                trace.display(),
                outcome.activity.window()
            ),
        }
    }
    let report = measure(label, &config, &outcome, judges, warmup, cost);
    if request.show_progress {
        eprintln!(
            "{label:>18}: {:8.1} samples/s  step {:.3} s  ideal {:.3} s  efficiency {:.2}  bottleneck {}",
            report.samples_per_s,
            report.step_s,
            report.ideal.overlap_step_s,
            report.overlap_efficiency,
            report.ideal.bottleneck
        );
    }
    Ok((report, outcome))
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Runs the bench and writes its files; returns what `bench.json` holds.
pub fn bench(request: BenchRequest) -> Result<BenchOutput> {
    let settings: BenchSettings = request.config.bench.clone().unwrap_or_default();
    let cost: Option<CostModel> = match &request.simulate {
        Some(path) => Some(read_cost_model(path)?),
        None => settings.simulate.clone(),
    };
    let mut base = request.config.clone();
    if let Some(steps) = request.steps.or(settings.steps) {
        if steps == 0 {
            bail!("--steps / bench.steps must be at least 1");
        }
        base.steps = steps;
    }
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("creating {}", request.out.display()))?;
    let warmup = settings.warmup_steps;

    let baseline = run_baseline(&request, &base, cost.as_ref(), warmup, &settings)?;
    // The sweep runs like the baseline: simulated only with a given cost model.
    let sweep = if request.sweep {
        run_sweep(&request, &base, &settings, cost.as_ref(), warmup)?
    } else {
        Vec::new()
    };
    // The scale runs are always simulated: with the given cost model, else the fitted one.
    let cost = cost.or(baseline.fitted);
    let scale = if request.scale && !settings.scale.is_empty() {
        let cost = cost.as_ref().expect("a cost model: given or fitted");
        run_scale(&request, &base, &settings.scale, cost, warmup)?
    } else {
        Vec::new()
    };

    let output = BenchOutput {
        machine: crate::machine::machine_name(base.learner.device.as_str()),
        config: request.config_path.display().to_string(),
        date: render::today(),
        baseline: baseline.report,
        cost_model: cost,
        simulator_check: baseline.simulator_check,
        sweep,
        scale,
        one_process: baseline.one_process,
    };
    std::fs::write(
        request.out.join("bench.json"),
        serde_json::to_string_pretty(&output)?,
    )?;
    std::fs::write(request.out.join("bench.md"), render::markdown(&output))?;
    render::plots(&request.out, &output)?;
    Ok(output)
}

/// A cost-model file (`profile.json` of an earlier bench), checked like `[bench.simulate]`.
pub fn read_cost_model(path: &Path) -> Result<CostModel> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cost model {}", path.display()))?;
    let parsed: Result<CostModel, _> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text));
    let cost = parsed.map_err(|e| {
        anyhow::anyhow!(
            "{}: not a cost model: field `{}`: {}",
            path.display(),
            e.path(),
            e.inner()
        )
    })?;
    if let Some(problem) = settings::cost_model_problems(&cost, "").first() {
        bail!("{}: {problem}", path.display());
    }
    Ok(cost)
}

/// The baseline run and what is learnt from it.
struct Baseline {
    report: BenchReport,
    /// A real run: the cost model fitted to it (also in `profile.json`).
    fitted: Option<CostModel>,
    /// A real run with `check_simulator`: the simulator replaying it from `fitted`.
    simulator_check: Option<SimulatorCheck>,
    /// A multi-process baseline: the same config in one process.
    one_process: Option<ProcessComparison>,
}

/// Runs the baseline and writes its timeline; a real baseline also gets its cost model fitted
/// (`profile.json`) and, with `check_simulator`, replayed in the simulator.
fn run_baseline(
    request: &BenchRequest,
    base: &RunConfig,
    cost: Option<&CostModel>,
    warmup: Option<u64>,
    settings: &BenchSettings,
) -> Result<Baseline> {
    let (report, outcome) = run_one(request, "baseline", base.clone(), cost, warmup)?;
    timeline::write_timeline(
        &request.out,
        &format!(
            "{} — {} ({})",
            request.config_path.display(),
            report.mode,
            if cost.is_some() { "simulated" } else { "real" }
        ),
        &outcome.activity.spans(),
        &report.queue_depths,
    )?;
    let mut simulator_check = None;
    let mut fitted = None;
    if cost.is_none() {
        let profile = profile::fit_cost_model(base, &outcome);
        std::fs::write(
            request.out.join("profile.json"),
            serde_json::to_string_pretty(&profile)?,
        )?;
        if settings.check_simulator {
            let (simulated, _) = run_one(
                request,
                "simulated replay",
                base.clone(),
                Some(&profile),
                warmup,
            )?;
            simulator_check = Some(SimulatorCheck {
                real_samples_per_s: report.samples_per_s,
                simulated_samples_per_s: simulated.samples_per_s,
                relative_error: simulated.samples_per_s / report.samples_per_s.max(1e-12) - 1.0,
                simulated,
            });
        }
        fitted = Some(profile);
    }
    let one_process = if processes::spans_processes(base) {
        let one = processes::in_one_process(base);
        let (one, _) = run_one(request, "one process", one, cost, warmup)?;
        Some(ProcessComparison {
            processes_over_one: report.samples_per_s / one.samples_per_s.max(1e-12),
            report: one,
        })
    } else {
        None
    };
    Ok(Baseline {
        report,
        fitted,
        simulator_check,
        one_process,
    })
}

/// One run per sweep variant (the sync run first), each against the sync run.
fn run_sweep(
    request: &BenchRequest,
    base: &RunConfig,
    settings: &BenchSettings,
    cost: Option<&CostModel>,
    warmup: Option<u64>,
) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::new();
    let mut sync: Option<BenchReport> = None;
    for (label, axis, config) in sweep::variants(base, &settings.sweep) {
        let (report, _) = run_one(request, &label, config, cost, warmup)?;
        let sync = sync.get_or_insert_with(|| report.clone());
        // Perfect overlap of the sync run's uncontended stages, with a wide enough window.
        let ideal = (sync.batch_groups * sync.group_size) as f64
            / sync.ideal.stage_times.stages_overlap_step_s().max(1e-12);
        rows.push(SweepRow {
            over_sync: report.samples_per_s / sync.samples_per_s.max(1e-12),
            of_sync_ideal: (axis == "mode").then(|| report.samples_per_s / ideal),
            label,
            axis,
            report,
        });
    }
    Ok(rows)
}

/// The simulated scale runs: async, one generator device, one judge kind, with `actors` in
/// all split between generators and judges by their work.
fn run_scale(
    request: &BenchRequest,
    base: &RunConfig,
    scale: &[usize],
    cost: &CostModel,
    warmup: Option<u64>,
) -> Result<Vec<ScaleRow>> {
    // Scale runs are about actor counts, in one process (a config's placements are dropped).
    let mut one = processes::in_one_process(base);
    one.mode = crate::run_config::Mode::Async;
    let unit = cost.stage_times(&step_shape(&one, 1));
    let mut rows = Vec::new();
    for &actors in scale {
        let (generators, judges) = sweep::scale_split(actors, unit.generate_s, unit.judge_s);
        let mut config = one.clone();
        config.generator.count = generators;
        config.generator.devices = vec!["cpu".into()];
        config.judges.truncate(1);
        if let Some(j) = config.judges.first_mut() {
            j.count = judges;
        }
        // Enough steps for about 8 s at the ideal pace, the first half as warm-up: a wide
        // staleness window admits up to (η + 1)·B groups at the start, and the backlog that
        // builds must drain before the rate is the steady one.
        let ideal_step = cost
            .stage_times(&step_shape(&config, judges))
            .overlap_step_s();
        config.steps = base
            .steps
            .max((8.0 / ideal_step.max(1e-6)).ceil() as u64)
            .min(600);
        let warmup = Some(warmup.unwrap_or(1).max(config.steps / 2));
        rows.push(scale_row(
            request,
            config,
            cost,
            warmup,
            actors,
            (generators, judges),
        )?);
    }
    Ok(rows)
}

/// One scale point: the run with `cost`, and the same topology with every cost zero (the
/// runtime's own time per group).
fn scale_row(
    request: &BenchRequest,
    config: RunConfig,
    cost: &CostModel,
    warmup: Option<u64>,
    actors: usize,
    (generators, judges): (usize, usize),
) -> Result<ScaleRow> {
    let before = resident_bytes();
    let (report, outcome) = run_one(
        request,
        &format!("scale {actors}"),
        config.clone(),
        Some(cost),
        warmup,
    )?;
    let grown = resident_bytes().saturating_sub(before);
    let peak = report
        .queue_depths
        .iter()
        .map(|q| q.generating + q.awaiting_judge + q.awaiting_learner)
        .max()
        .unwrap_or(0);
    drop(outcome);
    let zero = CostModel {
        generate_s_per_call: 0.0,
        generate_s_per_token: 0.0,
        judge_s_per_group: 0.0,
        judge_s_per_pair: 0.0,
        learn_s_per_step: 0.0,
        learn_s_per_token: 0.0,
        sync_s_per_subscriber: 0.0,
        ..cost.clone()
    };
    // With every cost zero a step takes about a millisecond, so the config's dozen steps would
    // measure scheduler jitter: run enough steps that the steady window is long.
    let mut zero_config = config.clone();
    zero_config.steps = config.steps.max(ZERO_COST_STEPS);
    let (zero_report, _) = run_one(
        request,
        &format!("scale {actors} zero-cost"),
        zero_config,
        Some(&zero),
        Some(ZERO_COST_STEPS / 10),
    )?;
    let analytic = report
        .analytic
        .clone()
        .expect("simulated runs carry the analytic bound");
    Ok(ScaleRow {
        actors,
        generators,
        judges,
        samples_per_s: report.samples_per_s,
        ideal_samples_per_s: analytic.ideal_samples_per_s,
        bottleneck: analytic.bottleneck.clone(),
        runtime_overhead: report.step_s / analytic.overlap_step_s - 1.0,
        learner_busy: report.role_busy.get("learner").copied().unwrap_or(0.0),
        learner_cost_overrun: report.ideal.stage_times.learn_s
            / analytic.stage_times.learn_s.max(1e-12)
            - 1.0,
        zero_cost_us_per_group: zero_report.step_s / config.batch_groups as f64 * 1e6,
        peak_in_flight_groups: peak,
        bytes_per_in_flight_group: grown as f64 / peak.max(1) as f64,
    })
}

/// Learner steps of a zero-cost scale run (a tenth of them warm-up).
const ZERO_COST_STEPS: u64 = 300;

/// Where `grlhf bench` writes by default: `target/bench/<config stem>`.
pub fn default_out(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or("bench".into(), |s| s.to_string_lossy().to_string());
    PathBuf::from("target/bench").join(stem)
}
