//! `grlhf bench CONFIG`: measures a run config's async-RL throughput through `crate::bench`
//! (baseline, sweep, simulator check, simulated scale runs) and prints the baseline's numbers.

use crate::bench::{self, BenchRequest};
use crate::run_config::RunConfig;
use anyhow::Result;

use crate::cli::BenchArgs;

/// Runs the bench, writing its files under `--out`, and prints one summary line.
pub fn bench(args: BenchArgs, registry: crate::cli::Kinds) -> Result<()> {
    let config = args.config;
    let parsed = RunConfig::from_file(&config)?;
    let out = args.out.unwrap_or_else(|| bench::default_out(&config));
    let output = bench::bench(BenchRequest {
        config: parsed,
        config_path: config.clone(),
        out: out.clone(),
        steps: args.steps,
        simulate: args.simulate,
        sweep: !args.no_sweep,
        scale: !args.no_scale,
        show_progress: !args.no_progress,
        registry,
        program: std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("finding this program to start workers: {e}"))?,
    })?;
    let b = &output.baseline;
    println!(
        "{}: {:.1} samples/s, step {:.3} s (ideal {:.3} s, efficiency {:.2}, bottleneck {}); {} sweep runs, {} scale runs; see {}/bench.md",
        config.display(),
        b.samples_per_s,
        b.step_s,
        b.ideal.overlap_step_s,
        b.overlap_efficiency,
        b.ideal.bottleneck,
        output.sweep.len(),
        output.scale.len(),
        out.display()
    );
    Ok(())
}
