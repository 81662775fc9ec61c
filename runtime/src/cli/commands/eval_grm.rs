//! `grlhf eval-grm`: a generative reward model's parse rate and pairwise accuracy on the
//! world's held-out pairs (validation, or the test pairs and the out-of-distribution splits).

use crate::warm_start;
use anyhow::Result;

use crate::cli::EvalGrmArgs;

/// Loads the GRM on the CPU, judges the pairs, and prints one line (or JSON) per split.
pub fn eval_grm(args: EvalGrmArgs) -> Result<()> {
    let engine =
        grlhf_actors::vl_engine::VlEngine::load(&args.model, tch::Device::Cpu, tch::Kind::Float)
            .map_err(|e| anyhow::anyhow!(e))?;
    let results = warm_start::grm_eval_all(
        &engine,
        args.seed,
        args.split.into(),
        args.pairs,
        args.max_new_tokens,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for (split, eval) in &results {
            println!(
                "{split:<18} parsed {:>5.1}%  accuracy {:.3}  ({} pairs)",
                100.0 * eval.parsed,
                eval.accuracy,
                eval.pairs
            );
        }
    }
    Ok(())
}
