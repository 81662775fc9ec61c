//! `grlhf pipeline CONFIG`: Generative RLHF-V end to end (warm start, stage 1, stage 2 per
//! variant, evaluation and report) through `grlhf::pipeline`, once or once per `--seeds` seed;
//! also the single-run step that `reproduce` shares.

use std::path::PathBuf;

use anyhow::Result;
use grlhf::pipeline::{PipelineRequest, PipelineStage};
use grlhf::pipeline_config::{PipelineConfig, Variant};
use grlhf_actors::registry::Registry;

use crate::PipelineArgs;

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
}

/// The pipeline with the config's variants, or those given with `--variants`.
pub fn pipeline(args: PipelineArgs) -> Result<()> {
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
    if let Some(report) = grlhf::pipeline::run_pipeline(&request, &Registry::with_builtins)? {
        println!("\n{}", report.terminal_summary());
        println!(
            "report: {} (plots in {})",
            layout.report_md().display(),
            layout.plots().display()
        );
    }
    Ok(())
}
