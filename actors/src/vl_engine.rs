//! A vision-language model with what it needs to read prompts and write text: the tokenizer, the
//! chat template, the image processor and the stop tokens. Generators, GRM judges and the learner
//! each own one on their device thread.
//!
//! [`init_world_model`] writes a fresh Qwen2-VL of a given size with the embedded world's
//! tokenizer — the default policy and GRM, trained from scratch on a CPU.

use std::path::Path;

use grlhf_models::chat_template::{ChatMessage, ChatTemplate, Role};
use grlhf_models::generation::{GeneratedSequence, GenerationConfig};
use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::logprobs::ResponseLogprobs;
use grlhf_models::mrope::expand_image_placeholders;
use grlhf_models::qwen2_vl::{MultimodalPrompt, Qwen2VlConfig, Qwen2VlForConditionalGeneration};
use grlhf_models::tokenizer::Tokenizer;
use serde_json::json;
use tch::{Device, Kind, Tensor};

/// A prompt ready for the model, with its own images' patches.
#[derive(Debug)]
pub struct EncodedPrompt {
    pub prompt: MultimodalPrompt,
    pub pixel_values: Option<Tensor>,
}

/// Model + tokenizer + processor.
pub struct VlEngine {
    pub model: Qwen2VlForConditionalGeneration,
    pub tokenizer: Tokenizer,
    pub processor: ImageProcessorConfig,
    pub template: ChatTemplate,
    pub stop_ids: Vec<i64>,
}

fn err(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: {e}")
}

impl VlEngine {
    /// Loads a Qwen2-VL / Qwen2.5-VL directory (config, safetensors, tokenizer.json,
    /// preprocessor_config.json).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<VlEngine, String> {
        let context = dir.display().to_string();
        let model = Qwen2VlForConditionalGeneration::load(dir, device, kind)
            .map_err(|e| err(&context, e))?;
        let tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| err(&context, e))?;
        let processor = ImageProcessorConfig::from_file(dir.join("preprocessor_config.json"))
            .map_err(|e| err(&context, e))?;
        let mut stop_ids: Vec<i64> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        // The checkpoint's own end-of-sequence ids (generation_config.json), when it names any.
        let defaults = grlhf_models::generation_config::GenerationDefaults::from_dir(dir)
            .map_err(|e| err(&context, e))?;
        for id in defaults.map(|d| d.eos_token_ids()).unwrap_or_default() {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        Ok(VlEngine {
            model,
            tokenizer,
            processor,
            // The checkpoint's own template when it ships one (a hub checkpoint), else Qwen2's.
            template: ChatTemplate::for_dir(dir).map_err(|e| err(&context, e))?,
            stop_ids,
        })
    }

    /// [`VlEngine::load`], then the parameters of `weights` (a checkpoint's safetensors file)
    /// over the directory's, when given.
    pub fn load_with(
        dir: &Path,
        device: Device,
        kind: Kind,
        weights: Option<&Path>,
    ) -> Result<VlEngine, String> {
        let engine = VlEngine::load(dir, device, kind)?;
        if let Some(weights) = weights {
            crate::weight_sync::apply_file(engine.model.var_store(), weights)?;
        }
        Ok(engine)
    }

    /// Chat-formats (system, user) with the image placeholder in `user`, tokenises, and expands
    /// the placeholder to the image's token count.
    pub fn encode(
        &self,
        system: &str,
        user: &str,
        image: Option<&RgbImage>,
    ) -> Result<EncodedPrompt, String> {
        let messages = [
            ChatMessage::new(Role::System, system),
            ChatMessage::new(Role::User, user),
        ];
        let text = self
            .template
            .render(&messages, true)
            .map_err(|e| e.to_string())?;
        let tokens = self
            .tokenizer
            .encode(&text, false)
            .map_err(|e| e.to_string())?;
        let image_token = self.model.config().image_token_id;
        match image {
            None => {
                let tokens = expand_image_placeholders(&tokens, image_token, &[])
                    .map_err(|e| e.to_string())?;
                Ok(EncodedPrompt {
                    prompt: MultimodalPrompt {
                        tokens,
                        grids: vec![],
                    },
                    pixel_values: None,
                })
            }
            Some(image) => {
                let processed = preprocess(std::slice::from_ref(image), &self.processor)
                    .map_err(|e| e.to_string())?;
                let merge = self.model.config().vision_config.spatial_merge_size;
                let counts = processed.tokens_per_image(merge);
                let tokens = expand_image_placeholders(&tokens, image_token, &counts)
                    .map_err(|e| e.to_string())?;
                Ok(EncodedPrompt {
                    prompt: MultimodalPrompt {
                        tokens,
                        grids: processed.image_grid_thw,
                    },
                    pixel_values: Some(processed.pixel_values.to_device(self.model.device())),
                })
            }
        }
    }

    /// All prompts' patches, in order (what the model takes for a batch).
    fn batch_pixels(prompts: &[&EncodedPrompt]) -> Option<Tensor> {
        let pixels: Vec<&Tensor> = prompts
            .iter()
            .filter_map(|p| p.pixel_values.as_ref())
            .collect();
        (!pixels.is_empty()).then(|| Tensor::cat(&pixels, 0))
    }

    pub fn generate(
        &self,
        prompts: &[&EncodedPrompt],
        config: &GenerationConfig,
    ) -> Result<Vec<GeneratedSequence>, String> {
        let batch: Vec<MultimodalPrompt> = prompts.iter().map(|p| p.prompt.clone()).collect();
        let pixels = Self::batch_pixels(prompts);
        self.model
            .generate(&batch, pixels.as_ref(), config)
            .map_err(|e| e.to_string())
    }

    /// `samples_per_prompt` samples of each prompt with continuous batching through `slots`
    /// rows (see `grlhf_models::slot_decoding`); sample j of prompt i comes out at
    /// i·samples_per_prompt + j.
    pub fn generate_in_slots(
        &self,
        prompts: &[EncodedPrompt],
        samples_per_prompt: usize,
        slots: usize,
        config: &GenerationConfig,
    ) -> Result<Vec<GeneratedSequence>, String> {
        let batch: Vec<MultimodalPrompt> = prompts.iter().map(|p| p.prompt.clone()).collect();
        let pixels: Vec<Option<&Tensor>> =
            prompts.iter().map(|p| p.pixel_values.as_ref()).collect();
        self.model
            .generate_in_slots(&batch, &pixels, samples_per_prompt, slots, config)
            .map_err(|e| e.to_string())
    }

    /// Differentiable teacher-forced log-probs (grad mode follows the caller).
    pub fn logprobs(
        &self,
        prompts: &[&EncodedPrompt],
        responses: &[Vec<i64>],
        temperature: f64,
    ) -> Result<ResponseLogprobs, String> {
        let batch: Vec<MultimodalPrompt> = prompts.iter().map(|p| p.prompt.clone()).collect();
        let pixels = Self::batch_pixels(prompts);
        self.model
            .response_logprobs(&batch, responses, pixels.as_ref(), temperature)
            .map_err(|e| e.to_string())
    }

    /// Text of generated ids without special tokens.
    pub fn decode(&self, ids: &[i64]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// A finished response's ids, as a policy would have produced `text`: its tokens followed by
    /// the stop token `<|im_end|>` (what reward models score and SFT imitates).
    pub fn response_tokens(&self, text: &str) -> Result<Vec<i64>, String> {
        let mut ids = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| e.to_string())?;
        ids.push(
            self.tokenizer
                .token_to_id("<|im_end|>")
                .ok_or("the tokenizer has no <|im_end|>")?,
        );
        Ok(ids)
    }
}

/// Sizes of a fresh world model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldModelSize {
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub vision_depth: i64,
    /// The vision tower's width before the merger.
    pub vision_embed_dim: i64,
    /// RoPE base. The world's images are 3×3 merged tokens: with the usual 10⁴ and head size 32,
    /// M-RoPE's height and width sections turn by 0.0002–0.1 rad per grid cell, so the language
    /// model can barely tell cells apart; a base of 3 turns them by 0.4–0.8 rad.
    pub rope_theta: f64,
}

impl WorldModelSize {
    /// Known presets: `tiny` (tests and quick checks) and `small` (the smallest size measured to
    /// copy words from the question and use the image; docs/world.md).
    pub fn preset(name: &str) -> Result<WorldModelSize, String> {
        match name {
            "tiny" => Ok(WorldModelSize {
                hidden: 64,
                layers: 2,
                heads: 4,
                vision_depth: 1,
                vision_embed_dim: 32,
                rope_theta: 3.0,
            }),
            "small" => Ok(WorldModelSize {
                hidden: 128,
                layers: 4,
                heads: 4,
                vision_depth: 2,
                vision_embed_dim: 64,
                rope_theta: 3.0,
            }),
            other => Err(format!(
                "unknown world model preset `{other}` (known: tiny, small)"
            )),
        }
    }
}

/// The image processor of a world model: Qwen2-VL's, with two world-specific settings.
///
/// - `image_mean` is the scene background, so background patches normalise to zero (with CLIP's
///   mean the background becomes +1.7 in every channel and a from-scratch vision tower collapses
///   to one constant token within ~50 steps);
/// - `max_pixels` 84² turns the 112 px scenes into 84 px ones: 6×6 patches, 3×3 merged tokens,
///   one token per grid cell.
pub fn world_processor_config() -> serde_json::Value {
    let mean = grlhf_tasks::render::BACKGROUND_RGB.map(|c| c as f64 / 255.0);
    json!({
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "min_pixels": 56 * 56, "max_pixels": 84 * 84,
        "image_mean": mean,
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 0.00392156862745098
    })
}

/// Writes a random Qwen2-VL with the embedded world's tokenizer to `dir`.
pub fn init_world_model(dir: &Path, size: WorldModelSize, seed: i64) -> Result<(), String> {
    let vocab = grlhf_tasks::vocabulary::tokens().len() as i64;
    let id = |t: &str| grlhf_tasks::vocabulary::special_token_id(t).expect("world specials") as i64;
    let head_dim = size.hidden / size.heads;
    let half = head_dim / 2;
    let t = half / 4;
    let rest = half - t;
    let config = json!({
        "architectures": ["Qwen2VLForConditionalGeneration"],
        // transformers ≥ 5 reads these at the top level and checks types strictly
        // (`mlp_ratio` an integer): written so, the directory loads there as it is.
        "tie_word_embeddings": true,
        "image_token_id": id("<|image_pad|>"),
        "vision_start_token_id": id("<|vision_start|>"),
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": size.hidden,
            "intermediate_size": size.hidden * 2,
            "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.heads / 2,
            "max_position_embeddings": 1024,
            "initializer_range": 0.02,
            "tie_word_embeddings": true,
            "bos_token_id": id("<|endoftext|>"),
            "eos_token_id": id("<|im_end|>"),
            "rope_parameters": {"rope_type": "default", "rope_theta": size.rope_theta, "mrope_section": [t, rest - rest / 2, rest / 2]}
        },
        "vision_config": {
            "depth": size.vision_depth,
            "embed_dim": size.vision_embed_dim,
            "hidden_size": size.hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2
        }
    });
    std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap())
        .map_err(|e| err(&config_path.display().to_string(), e))?;
    let parsed = Qwen2VlConfig::from_file(&config_path).map_err(|e| e.to_string())?;
    tch::manual_seed(seed);
    let model = Qwen2VlForConditionalGeneration::new(&parsed, Device::Cpu, Kind::Float)
        .map_err(|e| e.to_string())?;
    model.save(dir).map_err(|e| e.to_string())?;
    let processor = world_processor_config();
    std::fs::write(
        dir.join("preprocessor_config.json"),
        serde_json::to_string_pretty(&processor).unwrap(),
    )
    .map_err(|e| err(&dir.display().to_string(), e))?;
    std::fs::write(
        dir.join("tokenizer.json"),
        grlhf_tasks::vocabulary::tokenizer_file(),
    )
    .map_err(|e| err(&dir.display().to_string(), e))?;
    Ok(())
}
