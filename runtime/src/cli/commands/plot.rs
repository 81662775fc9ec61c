//! `grlhf plot DIR`: draws a run's plots again (crate::run_plots) and lists them; given a
//! directory that is not a run (a pipeline's), every run directory below it.

use std::path::Path;

use anyhow::{bail, Result};

use crate::run_plots::{draw_run_plots, run_dirs_below};

pub fn plot(dir: &Path) -> Result<()> {
    let runs = run_dirs_below(dir)?;
    if runs.is_empty() {
        bail!(
            "{}: no metrics.jsonl here or below (is this a `grlhf run` or pipeline directory?)",
            dir.display()
        );
    }
    for run in runs {
        let plotted = draw_run_plots(&run)?;
        println!(
            "{}: {} learner steps and {} evaluations drawn{}:",
            run.display(),
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
    }
    Ok(())
}
