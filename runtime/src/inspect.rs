//! `grlhf inspect logits`: raw logits of a checkpoint for given token ids, as one JSON object,
//! for debugging a model against another implementation.

use std::path::Path;

use anyhow::{Context, Result};
use grlhf_models::{PositionIds, Qwen2ForCausalLM};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// `{"shape": [...], "logits": [...]}`, row-major.
#[derive(Debug, Serialize)]
pub struct LogitsDump {
    pub shape: Vec<i64>,
    pub logits: Vec<f32>,
}

/// Logits of the last position (`[vocab]`) or of every position (`[seq, vocab]`).
pub fn logits(
    model_dir: &Path,
    tokens: &[i64],
    all_positions: bool,
    device: Device,
    kind: Kind,
) -> Result<LogitsDump> {
    let model = Qwen2ForCausalLM::load(model_dir, device, kind)
        .with_context(|| format!("loading {}", model_dir.display()))?;
    let input = Tensor::from_slice(tokens).unsqueeze(0).to_device(device);
    let positions = PositionIds::sequential(1, tokens.len() as i64, 0, device);
    let out = tch::no_grad(|| model.forward(&input, &positions, None, None))?.get(0);
    let out = if all_positions {
        out
    } else {
        out.get(tokens.len() as i64 - 1)
    };
    let out = out.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    Ok(LogitsDump {
        shape: out.size(),
        logits: Vec::<f32>::try_from(out.flatten(0, -1))?,
    })
}
