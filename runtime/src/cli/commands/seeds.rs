//! `--seeds` of `pipeline` and `reproduce`: the whole run once per seed (in RUN_DIR/seed-N),
//! then the across-seed report (`seeds.json`, `seeds.md`: every number as mean ± SE, each claim
//! judged across seeds).

use crate::pipeline_config::PipelineConfig;
use crate::run_layout::RunLayout;
use crate::seeds::aggregate;
use anyhow::{Context, Result};

use super::pipeline::{run_pipeline, PipelineRun};

/// Runs `run` once per seed, then writes and prints the across-seed report (left out, with a
/// note, while a seed has no report yet).
pub fn run_seeds(config: PipelineConfig, seeds: &[u64], run: &PipelineRun) -> Result<()> {
    let mut unique = seeds.to_vec();
    unique.sort_unstable();
    unique.dedup();
    anyhow::ensure!(
        unique.len() == seeds.len(),
        "--seeds {seeds:?}: a seed is listed twice"
    );
    let root = RunLayout::new(&config.run_dir);
    let mut reports = Vec::new();
    let mut runs = Vec::new();
    for &seed in seeds {
        let layout = root.seed(seed);
        eprintln!("==> seed {seed} ({})", layout.root().display());
        let mut per_seed = config.clone();
        per_seed.seed = seed;
        per_seed.run_dir = layout.root().to_path_buf();
        run_pipeline(per_seed, run)?;
        let path = layout.report_json();
        if !path.is_file() {
            eprintln!(
                "seed {seed} has no report yet ({}): the across-seed report needs every seed evaluated",
                path.display()
            );
            return Ok(());
        }
        let text = std::fs::read_to_string(&path)?;
        reports.push(
            serde_json::from_str::<crate::report::Report>(&text)
                .with_context(|| format!("{}: not a pipeline report", path.display()))?,
        );
        runs.push(layout.root().to_path_buf());
    }
    let across = aggregate(seeds, &reports, runs);
    std::fs::write(root.seeds_json(), serde_json::to_string_pretty(&across)?)?;
    std::fs::write(
        root.seeds_md(),
        across.markdown("Generative RLHF-V reproduction across seeds"),
    )?;
    println!("\n{}", across.terminal_summary());
    println!("report: {}", root.seeds_md().display());
    Ok(())
}
