//! A checkpoint directory loaded as whichever model its `config.json` names: the Qwen2 text
//! model, or Qwen2-VL / Qwen2.5-VL with its image preprocessor. The CLI commands take prompts
//! as token ids (image placeholders still collapsed, one per image) plus image files, and this
//! type does the rest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::mrope::expand_image_placeholders;
use grlhf_models::qwen2_vl::{MultimodalPrompt, Qwen2VlForConditionalGeneration, VL_ARCHITECTURES};
use grlhf_models::{generate, GeneratedSequence, GenerationConfig, PositionIds, Qwen2ForCausalLM};
use tch::{Device, Kind, Tensor};

/// A loaded checkpoint.
pub enum LoadedModel {
    Text(Box<Qwen2ForCausalLM>),
    Vision {
        model: Box<Qwen2VlForConditionalGeneration>,
        processor: ImageProcessorConfig,
    },
}

/// Whether `config.json` in `dir` names a vision-language architecture.
fn is_vision_language(dir: &Path) -> Result<bool> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(value["architectures"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x.as_str().is_some_and(|s| VL_ARCHITECTURES.contains(&s)))
    }))
}

impl LoadedModel {
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<LoadedModel> {
        let context = || format!("loading {}", dir.display());
        if is_vision_language(dir).with_context(context)? {
            let model =
                Qwen2VlForConditionalGeneration::load(dir, device, kind).with_context(context)?;
            let processor = ImageProcessorConfig::from_file(dir.join("preprocessor_config.json"))
                .with_context(context)?;
            Ok(LoadedModel::Vision {
                model: Box::new(model),
                processor,
            })
        } else {
            let model = Qwen2ForCausalLM::load(dir, device, kind).with_context(context)?;
            Ok(LoadedModel::Text(Box::new(model)))
        }
    }

    pub fn eos_token_ids(&self) -> Vec<i64> {
        match self {
            LoadedModel::Text(m) => m.config().eos_token_ids(),
            LoadedModel::Vision { model, .. } => model.config().text_config.eos_token_ids(),
        }
    }

    /// The token standing for one image in a prompt, for vision-language models.
    pub fn image_token_id(&self) -> Option<i64> {
        match self {
            LoadedModel::Text(_) => None,
            LoadedModel::Vision { model, .. } => Some(model.config().image_token_id),
        }
    }

    /// Expands the prompt's image placeholders for `images` and prepares their pixels.
    fn multimodal(
        &self,
        tokens: &[i64],
        images: &[PathBuf],
    ) -> Result<(MultimodalPrompt, Option<Tensor>)> {
        let LoadedModel::Vision { model, processor } = self else {
            if !images.is_empty() {
                bail!("--image given, but the checkpoint is a text-only model");
            }
            return Ok((
                MultimodalPrompt {
                    tokens: tokens.to_vec(),
                    grids: vec![],
                },
                None,
            ));
        };
        let decoded = images
            .iter()
            .map(|p| RgbImage::open(p).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        if decoded.is_empty() {
            let tokens = expand_image_placeholders(tokens, model.config().image_token_id, &[])?;
            return Ok((
                MultimodalPrompt {
                    tokens,
                    grids: vec![],
                },
                None,
            ));
        }
        let processed = preprocess(&decoded, processor)?;
        let counts = processed.tokens_per_image(processor.merge_size);
        let tokens = expand_image_placeholders(tokens, model.config().image_token_id, &counts)?;
        Ok((
            MultimodalPrompt {
                tokens,
                grids: processed.image_grid_thw,
            },
            Some(processed.pixel_values),
        ))
    }

    /// Logits `[seq, vocab]` of one prompt (placeholders expanded for `images`).
    pub fn logits(&self, tokens: &[i64], images: &[PathBuf]) -> Result<(Tensor, usize)> {
        match self {
            LoadedModel::Text(model) => {
                if !images.is_empty() {
                    bail!("--image given, but the checkpoint is a text-only model");
                }
                let device = model.device();
                let input = Tensor::from_slice(tokens).unsqueeze(0).to_device(device);
                let positions = PositionIds::sequential(1, tokens.len() as i64, 0, device);
                let out = tch::no_grad(|| model.forward(&input, &positions, None, None))?;
                Ok((out.get(0), tokens.len()))
            }
            LoadedModel::Vision { model, .. } => {
                let (prompt, pixels) = self.multimodal(tokens, images)?;
                let len = prompt.tokens.len();
                let out =
                    tch::no_grad(|| model.forward(std::slice::from_ref(&prompt), pixels.as_ref()))?;
                Ok((out.get(0), len))
            }
        }
    }

    /// Samples `num_samples` continuations of one prompt in a batch. Returns the prompt as the
    /// model saw it (placeholders expanded) and the samples.
    pub fn generate(
        &self,
        tokens: &[i64],
        images: &[PathBuf],
        num_samples: usize,
        config: &GenerationConfig,
    ) -> Result<(Vec<i64>, Vec<GeneratedSequence>)> {
        match self {
            LoadedModel::Text(model) => {
                if !images.is_empty() {
                    bail!("--image given, but the checkpoint is a text-only model");
                }
                let prompts = vec![tokens.to_vec(); num_samples];
                Ok((tokens.to_vec(), generate(model, &prompts, config)?))
            }
            LoadedModel::Vision { model, .. } => {
                let (prompt, pixels) = self.multimodal(tokens, images)?;
                let prompts = vec![prompt.clone(); num_samples];
                let pixels = pixels.map(|p| {
                    let copies: Vec<Tensor> = (0..num_samples).map(|_| p.shallow_clone()).collect();
                    Tensor::cat(&copies, 0)
                });
                Ok((
                    prompt.tokens,
                    model.generate(&prompts, pixels.as_ref(), config)?,
                ))
            }
        }
    }
}
