//! `grlhf init-model`: writes a randomly initialised Qwen2 checkpoint of a named size preset,
//! for demos, tests and benchmarks when no real checkpoint is at hand.

use crate::model_presets;
use anyhow::{Context, Result};
use grlhf_models::device::dtype_name;
use grlhf_models::Qwen2ForCausalLM;

use crate::cli::InitModelArgs;

/// Writes `config.json` + `model.safetensors` to `--out`.
pub fn init_model(args: InitModelArgs) -> Result<()> {
    let InitModelArgs {
        out,
        preset,
        seed,
        dtype,
    } = args;
    let config = model_presets::preset(preset.name())?;
    tch::manual_seed(seed);
    let model = Qwen2ForCausalLM::new(&config, tch::Device::Cpu, dtype.kind())?;
    model
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote a random `{}` Qwen2 ({:.1}M parameters, {}) to {}",
        preset.name(),
        config.num_parameters() as f64 / 1e6,
        dtype_name(dtype.kind()),
        out.display()
    );
    Ok(())
}
