//! `grlhf pipeline CONFIG`: Generative RLHF-V end to end (warm start, stage 1, stage 2 per
//! variant, evaluation and report) through `grlhf::pipeline`, once or once per `--seeds` seed;
//! also the single-run step that `reproduce` shares.

use std::path::PathBuf;

use anyhow::{Context, Result};
use grlhf::pipeline::{PipelineRequest, PipelineStage};
use grlhf::pipeline_config::{PipelineConfig, Variant};
use grlhf_actors::registry::Registry;

use crate::PipelineArgs;

/// What one invocation runs, shared by `pipeline` and `reproduce`.
#[derive(Clone)]
pub struct PipelineRun {
    pub config_path: PathBuf,
    /// `--stage`: one stage alone from saved checkpoints.
    pub stage: Option<String>,
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
            .iter()
            .map(|v| {
                Variant::parse(v).with_context(|| {
                    format!("--variants {v}: use rm_grpo, grm_sft_grouped, grm_rl_single, grm_rl_grouped or oracle_grpo")
                })
            })
            .collect::<Result<Vec<_>>>()?
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
    let only = run.stage.as_deref().map(PipelineStage::parse).transpose()?;
    let run_dir = config.run_dir.clone();
    let request = PipelineRequest {
        config,
        config_path: run.config_path.clone(),
        only,
        variants: run.variants.clone(),
        sweep_n: run.sweep_n.clone(),
        progress: !run.no_progress,
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
