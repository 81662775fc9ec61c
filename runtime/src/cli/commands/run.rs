//! `grlhf run CONFIG [--resume RUN_DIR] [--listen ADDR:PORT]`: trains an RL topology from a TOML
//! config (or continues one from its newest good checkpoint) through `crate::run`, then prints
//! the run's summary; with `--listen`, as the head of a multi-process run.
//! `grlhf run CONFIG --join HEAD:PORT --node NAME`: a worker of such a run
//! (`crate::distributed`).

use crate::cluster_config::worker_node;
use crate::run::RunOutcome;
use crate::run_config::RunConfig;
use anyhow::Result;

use crate::cli::RunArgs;

/// Runs (or resumes) the topology and prints its summary.
pub fn run(args: RunArgs, registry: crate::cli::Kinds) -> Result<()> {
    let parsed = RunConfig::from_file(&args.config)?;
    let registry = registry();
    let show_progress = !args.no_progress;
    if let (Some(head), Some(node)) = (args.join, &args.node) {
        let hosted = match &args.simulate {
            Some(cost) => {
                let cost = crate::bench::read_cost_model(cost)?;
                crate::bench::simulated_run::simulated_hosted_on(&parsed, node, &cost)
            }
            None => {
                let eval_prompts = match &parsed.evaluator {
                    Some(eval) if worker_node(&eval.node) == Some(node.as_str()) => {
                        crate::run::eval_specs(&parsed, eval)?
                    }
                    _ => Vec::new(),
                };
                let (config, path) = (&parsed, &args.config);
                crate::distributed::hosted_on(config, path, registry, node, eval_prompts)?
            }
        };
        return crate::distributed::run_worker(parsed, &args.config, hosted, head, node);
    }
    let outcome = match (args.listen, args.resume) {
        (Some(listen), resume) => crate::run::run_as_head(
            parsed,
            &args.config,
            registry,
            show_progress,
            resume.as_deref(),
            listen,
        )?,
        (None, Some(run_dir)) => {
            crate::run::resume(parsed, &args.config, registry, show_progress, &run_dir)?
        }
        (None, None) => crate::run::run(parsed, &args.config, registry, show_progress)?,
    };
    print_summary(&outcome);
    Ok(())
}

/// Throughput, reward, prompt accounting, evaluation and reliability, then the run directory.
fn print_summary(outcome: &RunOutcome) {
    let s = &outcome.summary;
    println!(
        "{} steps in {:.1} s ({:?}, η = {}): reward {:.3} → {:.3}; {:.1} samples/s, {:.0} tokens/s; \
         prompts admitted {} = trained {} + dropped {} + in flight {}; max staleness seen {}",
        s.learner_steps,
        s.wall_s,
        s.mode,
        s.max_staleness,
        s.reward_mean_first,
        s.reward_mean_last,
        s.samples_per_s,
        s.tokens_per_s,
        s.prompts_admitted,
        s.prompts_trained,
        s.prompts_dropped.values().sum::<u64>(),
        s.prompts_in_flight,
        s.max_staleness_seen
    );
    if let (Some(first), Some(last)) = (s.eval_first, s.eval_last) {
        println!("held-out evaluation: {first:.3} → {last:.3} (eval.jsonl)");
    }
    let r = &s.reliability;
    if let Some(from) = &r.resumed_from {
        println!("resumed from {}", from.display());
    }
    let restarts: u64 = r.restarts.values().sum();
    if restarts > 0 || r.skipped_steps > 0 || !r.faults_injected.is_empty() {
        println!(
            "faults injected {:?}; restarts {restarts}; prompts issued again {}; steps skipped {}; checkpoint failures {}",
            r.faults_injected,
            r.prompts_reissued,
            r.skipped_steps,
            r.checkpoint_failures.len()
        );
    }
    let dir = &outcome.run_dir;
    println!("run directory: {}", dir.display());
    let (plots, tb) = (dir.join("plots"), dir.join("tb"));
    if plots.is_dir() {
        println!("plots: {}", plots.display());
    }
    if tb.is_dir() {
        println!(
            "tensorboard --logdir {}   (trace for ui.perfetto.dev: {})",
            tb.display(),
            dir.join("trace").display()
        );
    }
}
