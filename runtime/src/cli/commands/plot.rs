//! `grlhf plot RUN_DIR`: draws a run's plots again (crate::run_plots) and lists them.

use std::path::Path;

use anyhow::Result;

use crate::run_plots::draw_run_plots;

pub fn plot(run_dir: &Path) -> Result<()> {
    let plotted = draw_run_plots(run_dir)?;
    println!(
        "{} learner steps and {} evaluations drawn{}:",
        plotted.steps,
        plotted.evals,
        match plotted.skipped_lines {
            0 => String::new(),
            n => format!(" ({n} unreadable lines skipped: a run killed mid-write)"),
        }
    );
    for file in &plotted.files {
        println!("  {}", file.display());
    }
    Ok(())
}
