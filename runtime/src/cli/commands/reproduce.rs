//! `grlhf reproduce CONFIG`: the paper's comparison — the pipeline with every stage-2 variant
//! (each baseline and the full method), optionally with a sweep over the candidate count n and
//! once per `--seeds` seed.

use crate::pipeline_config::{PipelineConfig, Variant};
use anyhow::Result;

use super::pipeline::{run_pipeline, PipelineRun};
use crate::cli::ReproduceArgs;

/// Every variant, with `--sweep-n` (default: the config's `sweep_n`).
pub fn reproduce(args: ReproduceArgs, registry: crate::cli::Kinds) -> Result<()> {
    let parsed = PipelineConfig::from_file(&args.config)?;
    let sweep_n = if args.sweep_n.is_empty() {
        parsed.sweep_n.clone()
    } else {
        args.sweep_n
    };
    if let Some(n) = sweep_n.iter().find(|&&n| n < 2) {
        anyhow::bail!("--sweep-n {n}: need at least 2 candidates per prompt");
    }
    let run = PipelineRun {
        config_path: args.config,
        stage: args.stage,
        variants: Variant::ALL.to_vec(),
        sweep_n,
        no_progress: args.no_progress,
        registry,
    };
    if args.seeds.is_empty() {
        run_pipeline(parsed, &run)
    } else {
        super::seeds::run_seeds(parsed, &args.seeds, &run)
    }
}
