//! `grlhf sft`: the warm start on its own — supervised fine-tuning of a policy (on the world's
//! answers) or a GRM (on its judgments), measured on held-out prompts or pairs before and after,
//! with the grounding check; prints the before/after numbers and where the model went.

use crate::run_layout::WarmStartDir;
use crate::warm_start::{self, SftReport, SftRequest};
use anyhow::Result;

use crate::cli::SftArgs;

/// Trains, evaluates and prints the report (`OUT/sft.json` holds all of it).
pub fn sft(args: SftArgs) -> Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.sft_quality),
        "--sft-quality must be in [0, 1]"
    );
    let request = SftRequest {
        target: args.target,
        model: args.model,
        out: args.out.clone(),
        config: grlhf_actors::sft::SftConfig {
            steps: args.steps,
            batch: args.batch,
            lr: args.lr,
            seed: args.seed,
            warmup_steps: args.warmup_steps,
            freeze_vision_tower: args.freeze_vision_tower,
            ..Default::default()
        },
        world_size: args.world_size,
        sft_quality: args.sft_quality,
        eval_per_family: args.eval_per_family,
        eval_pairs: args.eval_pairs,
        eval_split: args.eval_split.into(),
        max_new_tokens: args.max_new_tokens,
        device: tch::Device::Cpu,
        evaluate: true,
        blind: args.blind,
    };
    let bar = indicatif::ProgressBar::new(args.steps);
    let report = warm_start::run_sft(&request, |s| {
        bar.set_position(s.step + 1);
        bar.set_message(format!("loss {:.3}", s.loss));
    })?;
    bar.finish_and_clear();
    print_report(&report, &request);
    Ok(())
}

/// The training line, the held-out numbers before → after, and the grounding verdict.
fn print_report(report: &SftReport, request: &SftRequest) {
    println!(
        "{:?} SFT: {} steps on {} examples in {:.1} s, loss {:.3} → {:.3}",
        report.target,
        request.config.steps,
        report.examples,
        report.wall_s,
        report.loss_first,
        report.loss_last
    );
    print_policy_eval(report);
    print_grm_eval(report);
    if let Some(g) = &report.grounding {
        println!("grounding: {}", g.line());
        if !g.sees {
            eprintln!("WARNING: the model is BLIND: an image swap changes almost nothing it says");
        }
    }
    println!(
        "model: {}  (report: {})",
        report.out.display(),
        WarmStartDir::new(&request.out).sft_record().display()
    );
}

/// A policy's held-out oracle score before → after, and per family after (with how often an
/// image swap changes the answer).
fn print_policy_eval(report: &SftReport) {
    let (Some(b), Some(a)) = (&report.policy_before, &report.policy_after) else {
        return;
    };
    println!(
        "held-out oracle score: {:.3} → {:.3} (answers finished: {:.0}% → {:.0}%)",
        b.mean,
        a.mean,
        100.0 * b.finished,
        100.0 * a.finished
    );
    for (family, score) in &a.per_family {
        let swap = report
            .grounding
            .as_ref()
            .and_then(|g| g.swap_changed_per_family.get(family))
            .map(|c| format!("   image swap changes {:.0}%", c * 100.0))
            .unwrap_or_default();
        println!("  {family:<12} {score:.3}{swap}");
    }
}

/// A GRM's held-out parse rate and accuracy before → after, and on each out-of-distribution
/// split after.
fn print_grm_eval(report: &SftReport) {
    let (Some(b), Some(a)) = (&report.grm_before, &report.grm_after) else {
        return;
    };
    println!(
        "held-out pairs: parsed {:.0}% → {:.0}%, accuracy {:.3} → {:.3}",
        100.0 * b.parsed,
        100.0 * a.parsed,
        b.accuracy,
        a.accuracy
    );
    for (split, eval) in &report.grm_after_ood {
        println!(
            "  {split:<18} parsed {:.0}%, accuracy {:.3}",
            100.0 * eval.parsed,
            eval.accuracy
        );
    }
}
