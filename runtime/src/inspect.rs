//! `grlhf inspect logits`: raw logits of a checkpoint for given token ids (and images, for
//! Qwen2-VL / Qwen2.5-VL), as one JSON object, for debugging a model against another
//! implementation.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use tch::{Device, Kind};

use crate::loaded_model::LoadedModel;

/// `{"shape": [...], "logits": [...]}`, row-major.
#[derive(Debug, Serialize)]
pub struct LogitsDump {
    pub shape: Vec<i64>,
    pub logits: Vec<f32>,
}

/// Logits of the last position (`[vocab]`) or of every position (`[seq, vocab]`). For a
/// vision-language checkpoint each image token in `tokens` stands for one of `images`, in order,
/// and is expanded as the Hugging Face processor does.
pub fn logits(
    model_dir: &Path,
    tokens: &[i64],
    images: &[PathBuf],
    all_positions: bool,
    device: Device,
    kind: Kind,
) -> Result<LogitsDump> {
    let model = LoadedModel::load(model_dir, device, kind)?;
    let (out, len) = model.logits(tokens, images)?;
    let out = if all_positions {
        out
    } else {
        out.get(len as i64 - 1)
    };
    let out = out.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    Ok(LogitsDump {
        shape: out.size(),
        logits: Vec::<f32>::try_from(out.flatten(0, -1))?,
    })
}
