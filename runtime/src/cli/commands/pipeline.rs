//! `grlhf pipeline CONFIG`: Generative RLHF-V end to end (warm start, stage 1, stage 2 per
//! variant, evaluation and report) through `crate::pipeline`, once or once per `--seeds` seed;
//! also the single-run step that `reproduce` shares.

use std::path::PathBuf;

use crate::pipeline::{PipelineRequest, PipelineStage};
use crate::pipeline_config::{PipelineConfig, Variant};
use anyhow::Result;

use crate::cli::PipelineArgs;

/// What one invocation runs, shared by `pipeline` and `reproduce`.
#[derive(Clone)]
pub struct PipelineRun {
    pub config_path: PathBuf,
    /// `--stage`: one stage alone from saved checkpoints.
    pub stage: Option<PipelineStage>,
    pub variants: Vec<Variant>,
    /// Candidate counts of the sweep (empty: none).
    pub sweep_n: Vec<usize>,
    pub no_progress: bool,
    /// The kinds a config may name.
    pub registry: crate::cli::Kinds,
}

/// The pipeline with the config's variants, or those given with `--variants`.
pub fn pipeline(args: PipelineArgs, registry: crate::cli::Kinds) -> Result<()> {
    let parsed = PipelineConfig::from_file(&args.config)?;
    let variants = if args.variants.is_empty() {
        parsed.variants.clone()
    } else {
        args.variants
    };
    let run = PipelineRun {
        config_path: args.config,
        stage: args.stage,
        variants,
        sweep_n: vec![],
        no_progress: args.no_progress,
        registry,
    };
    if args.seeds.is_empty() {
        run_pipeline(parsed, &run)
    } else {
        super::seeds::run_seeds(parsed, &args.seeds, &run)
    }
}

/// Runs the pipeline in `config.run_dir` and, when it evaluated, prints the report's summary.
pub fn run_pipeline(config: PipelineConfig, run: &PipelineRun) -> Result<()> {
    let request = PipelineRequest {
        config,
        config_path: run.config_path.clone(),
        only: run.stage,
        variants: run.variants.clone(),
        sweep_n: run.sweep_n.clone(),
        progress: !run.no_progress,
    };
    let layout = request.layout();
    if let Some(report) = crate::pipeline::run_pipeline(&request, &*run.registry)? {
        println!("\n{}", report.terminal_summary());
        println!(
            "report: {} (plots in {})",
            layout.report_md().display(),
            layout.plots().display()
        );
    }
    Ok(())
}
