//! `grlhf export RUN_DIR --out DIR [--step N]`: a checkpoint of a run as a model directory that
//! transformers (and so vLLM) loads — the run's starting model with the checkpoint's weights, in
//! transformers 5's `config.json`, with the starting directory's tokenizer, chat template,
//! processor and generation files beside it. The run's `policy/` is the final weights already;
//! this is for the checkpoints along the way, and for a run that was stopped.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::checkpoint;
use grlhf_models::qwen2_vl::Qwen2VlForConditionalGeneration;

use crate::model_source::ModelSource;
use crate::run_config::RunConfig;

/// Files of a model directory that are not weights or config, copied as they are.
const COMPANION_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// Writes the checkpoint at `step` (default: the newest that verifies) of `run_dir` into `out`;
/// returns the checkpoint directory used.
pub fn export(run_dir: &Path, step: Option<u64>, out: &Path) -> Result<PathBuf> {
    let config_path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "reading {} (is {} a run directory?)",
            config_path.display(),
            run_dir.display()
        )
    })?;
    let config: RunConfig =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    let base = match ModelSource::parse("model.policy", &config.model.policy)
        .with_context(|| format!("{}: the run's starting model", config_path.display()))?
    {
        ModelSource::Dir(dir) => dir,
        // A fresh world model was written into the run when it started.
        ModelSource::World { .. } => run_dir.join("init-policy"),
    };
    let root = run_dir.join("checkpoints");
    let dir = match step {
        None => {
            checkpoint::latest_valid(&root)
                .map_err(|e| anyhow!("{e}"))?
                .0
        }
        Some(step) => {
            let dir = root.join(format!("step-{step:06}"));
            if !dir.is_dir() {
                let kept: Vec<String> = checkpoint::list(&root)
                    .iter()
                    .map(|(v, _)| v.to_string())
                    .collect();
                bail!(
                    "--step {step}: no checkpoint {} (kept: {})",
                    dir.display(),
                    kept.join(", ")
                );
            }
            checkpoint::verify(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            dir
        }
    };
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "--out {}: not empty; export writes a fresh model directory",
            out.display()
        );
    }
    let kind = config
        .model
        .dtype
        .kind()
        .map_err(|e| anyhow!("model.dtype: {e}"))?;
    let model = Qwen2VlForConditionalGeneration::load(&base, tch::Device::Cpu, kind)
        .with_context(|| format!("loading the run's starting model {}", base.display()))?;
    grlhf_actors::weight_sync::apply_file(model.var_store(), &dir.join(checkpoint::WEIGHTS))
        .map_err(|e| anyhow!("{e}"))?;
    model.save(out)?;
    for file in COMPANION_FILES {
        let from = base.join(file);
        if from.is_file() {
            std::fs::copy(&from, out.join(file))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(dir)
}
