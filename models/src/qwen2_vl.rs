//! Qwen2-VL: a ViT vision tower whose merged patch features replace the image tokens of a
//! Qwen2 decoder that uses three-stream (temporal, height, width) rotary positions.
//!
//! - Paper: "Qwen2-VL: Enhancing Vision-Language Model's Perception of the World at Any
//!   Resolution", <https://arxiv.org/abs/2409.12191>
//! - Reference implementation: `transformers.models.qwen2_vl.modeling_qwen2_vl`
//!
//! Parameter names are those of Hugging Face hub checkpoints (`visual.blocks.0.attn.qkv.weight`,
//! `model.layers.0...`, `lm_head.weight`); checkpoints written in transformers 5's internal
//! layout (`model.visual.`, `model.language_model.`) are renamed on load. Images are prepared by
//! [`crate::image_processor`] and their placeholders expanded and positioned by [`crate::mrope`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::generation::{
    check_request, decode, text_positions, GeneratedSequence, GenerationConfig, Prefilled,
    TokenDecoder,
};
use crate::kv_cache::KvCache;
use crate::mrope::{batch_position_ids, rope_index, MropePositions};
use crate::qwen2::{init_like_transformers, linear_no_bias, PositionIds, Qwen2Model};
use crate::weights::{self, LoadOptions};

/// `vision_config` of a Qwen2-VL checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub depth: i64,
    pub embed_dim: i64,
    /// Output width of the merger: the text model's hidden size.
    pub hidden_size: i64,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "four")]
    pub mlp_ratio: f64,
    pub num_heads: i64,
    #[serde(default = "three")]
    pub in_channels: i64,
    #[serde(default = "fourteen")]
    pub patch_size: i64,
    #[serde(default = "two")]
    pub spatial_merge_size: i64,
    #[serde(default = "two")]
    pub temporal_patch_size: i64,
    #[serde(default)]
    pub rope_parameters: Option<crate::config::RopeParameters>,
}

fn quick_gelu() -> String {
    "quick_gelu".to_string()
}
fn four() -> f64 {
    4.0
}
fn three() -> i64 {
    3
}
fn fourteen() -> i64 {
    14
}
fn two() -> i64 {
    2
}

/// `config.json` of `Qwen2VLForConditionalGeneration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2VlConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub text_config: Config,
    pub vision_config: VisionConfig,
    pub image_token_id: i64,
    #[serde(default)]
    pub vision_start_token_id: Option<i64>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
}

impl Qwen2VlConfig {
    /// Reads and validates `config.json` (or the one in a model directory).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Qwen2VlConfig> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("config.json");
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let mut config: Qwen2VlConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::ConfigParse {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let bad = |field: &str, message: String| ModelError::ConfigValue {
            path: path.clone(),
            field: field.to_string(),
            message,
        };
        if !config.architectures.is_empty()
            && !config
                .architectures
                .iter()
                .any(|a| a == "Qwen2VLForConditionalGeneration")
        {
            return Err(bad(
                "architectures",
                format!(
                    "{:?} is not supported here; expected Qwen2VLForConditionalGeneration",
                    config.architectures
                ),
            ));
        }
        // The top-level tie flag (transformers 5) governs the head.
        if let Some(tie) = config.tie_word_embeddings {
            config.text_config.tie_word_embeddings = tie;
        }
        config.text_config.architectures.clear();
        config.text_config.validate(&path)?;
        if config.text_config.mrope_section().is_none() {
            return Err(bad(
                "text_config.rope_parameters.mrope_section",
                "Qwen2-VL needs the three rope sections".to_string(),
            ));
        }
        let v = &config.vision_config;
        if v.hidden_act != "quick_gelu" {
            return Err(bad(
                "vision_config.hidden_act",
                format!("`{}` is not supported (quick_gelu is)", v.hidden_act),
            ));
        }
        if v.num_heads <= 0
            || v.embed_dim % v.num_heads != 0
            || (v.embed_dim / v.num_heads) % 4 != 0
        {
            return Err(bad(
                "vision_config.num_heads",
                format!(
                    "embed_dim {} must split into heads whose size is a multiple of 4",
                    v.embed_dim
                ),
            ));
        }
        if v.hidden_size != config.text_config.hidden_size {
            return Err(bad(
                "vision_config.hidden_size",
                format!(
                    "{} differs from the text model's hidden_size {}",
                    v.hidden_size, config.text_config.hidden_size
                ),
            ));
        }
        Ok(config)
    }
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct VisionBlock {
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    fc1: nn::Linear,
    fc2: nn::Linear,
    num_heads: i64,
}

impl VisionBlock {
    fn new(p: nn::Path, c: &VisionConfig) -> VisionBlock {
        let hidden = (c.embed_dim as f64 * c.mlp_ratio) as i64;
        VisionBlock {
            norm1: layer_norm(&p / "norm1", c.embed_dim),
            norm2: layer_norm(&p / "norm2", c.embed_dim),
            qkv: nn::linear(
                &p / "attn" / "qkv",
                c.embed_dim,
                3 * c.embed_dim,
                Default::default(),
            ),
            proj: nn::linear(
                &p / "attn" / "proj",
                c.embed_dim,
                c.embed_dim,
                Default::default(),
            ),
            fc1: nn::linear(&p / "mlp" / "fc1", c.embed_dim, hidden, Default::default()),
            fc2: nn::linear(&p / "mlp" / "fc2", hidden, c.embed_dim, Default::default()),
            num_heads: c.num_heads,
        }
    }

    /// `xs`: `[patches, embed]`; attention stays within each frame (`lengths`).
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, lengths: &[i64]) -> Result<Tensor> {
        let n = xs.size()[0];
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(xs))
            .reshape([n, 3, self.num_heads, -1])
            .permute([1, 0, 2, 3]);
        let dtype = xs.kind();
        // Rotary in f32, as transformers' apply_rotary_pos_emb_vision.
        let rotate = |t: Tensor| -> Tensor {
            let t = t.to_kind(Kind::Float);
            let half = t.size()[2] / 2;
            let rotated = Tensor::cat(
                &[&t.narrow(-1, half, half).neg(), &t.narrow(-1, 0, half)],
                -1,
            );
            (&t * cos + rotated * sin).to_kind(dtype)
        };
        let q = rotate(qkv.get(0)).transpose(0, 1).unsqueeze(0);
        let k = rotate(qkv.get(1)).transpose(0, 1).unsqueeze(0);
        let v = qkv.get(2).transpose(0, 1).unsqueeze(0);
        let head_dim = q.size()[3];
        let scale = (head_dim as f64).powf(-0.5);
        let qs = q.split_with_sizes(lengths, 2);
        let ks = k.split_with_sizes(lengths, 2);
        let vs = v.split_with_sizes(lengths, 2);
        let mut outs = Vec::with_capacity(lengths.len());
        for ((q, k), v) in qs.iter().zip(&ks).zip(&vs) {
            let o = Tensor::f_scaled_dot_product_attention::<Tensor>(
                q, k, v, None, 0.0, false, scale, false,
            )?;
            outs.push(o.transpose(1, 2));
        }
        let attn = Tensor::cat(&outs, 1).reshape([n, -1]);
        let xs = xs + self.proj.forward(&attn);
        let h = self.fc1.forward(&self.norm2.forward(&xs));
        let h = &h * (&h * 1.702).sigmoid();
        Ok(&xs + self.fc2.forward(&h))
    }
}

/// The Qwen2-VL vision transformer (`visual.*`).
#[derive(Debug)]
pub struct VisionTransformer {
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    ln_q: nn::LayerNorm,
    mlp0: nn::Linear,
    mlp2: nn::Linear,
    inv_freq: Tensor,
    config: VisionConfig,
}

impl VisionTransformer {
    pub fn new(p: nn::Path, c: &VisionConfig) -> VisionTransformer {
        let patch_embed = (&p / "patch_embed" / "proj").var(
            "weight",
            &[
                c.embed_dim,
                c.in_channels,
                c.temporal_patch_size,
                c.patch_size,
                c.patch_size,
            ],
            nn::Init::Const(0.0),
        );
        let blocks = (0..c.depth)
            .map(|i| VisionBlock::new(&p / "blocks" / i, c))
            .collect();
        let merged = c.embed_dim * c.spatial_merge_size * c.spatial_merge_size;
        let head_dim = c.embed_dim / c.num_heads;
        let spatial = head_dim / 2;
        let theta = c
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .unwrap_or(10000.0);
        let exponents = Tensor::arange_start_step(0, spatial, 2, (Kind::Int64, p.device()))
            .to_kind(Kind::Float)
            / spatial as f64;
        let inv_freq = Tensor::from(theta as f32)
            .to_device(p.device())
            .pow(&exponents)
            .reciprocal();
        VisionTransformer {
            patch_embed,
            blocks,
            ln_q: layer_norm(&p / "merger" / "ln_q", c.embed_dim),
            mlp0: nn::linear(
                &p / "merger" / "mlp" / 0,
                merged,
                merged,
                Default::default(),
            ),
            mlp2: nn::linear(
                &p / "merger" / "mlp" / 2,
                merged,
                c.hidden_size,
                Default::default(),
            ),
            inv_freq,
            config: c.clone(),
        }
    }

    /// Merged features `[sum of t·h·w / merge², hidden]` for preprocessed `pixel_values`.
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[i64; 3]]) -> Result<Tensor> {
        let c = &self.config;
        let device = self.patch_embed.device();
        let dtype = self.patch_embed.kind();
        let patches = pixel_values.to_device(device).to_kind(dtype).view([
            -1,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ]);
        let kernel = [c.temporal_patch_size, c.patch_size, c.patch_size];
        let xs = patches
            .f_conv3d::<Tensor>(&self.patch_embed, None, kernel, [0, 0, 0], [1, 1, 1], 1)?
            .view([-1, c.embed_dim]);
        let (cos, sin) = self.rotary(grids, device);
        let lengths: Vec<i64> = grids
            .iter()
            .flat_map(|&[t, h, w]| std::iter::repeat_n(h * w, t as usize))
            .collect();
        let mut xs = xs;
        for block in &self.blocks {
            xs = block.forward(&xs, &cos, &sin, &lengths)?;
        }
        let merged = c.embed_dim * c.spatial_merge_size * c.spatial_merge_size;
        let h = self
            .mlp0
            .forward(&self.ln_q.forward(&xs).view([-1, merged]));
        Ok(self.mlp2.forward(&h.gelu("none")))
    }

    /// `(cos, sin)` `[patches, 1, head_dim]` f32 from each patch's (row, column), laid out in
    /// merge-window order like the patches.
    fn rotary(&self, grids: &[[i64; 3]], device: Device) -> (Tensor, Tensor) {
        let m = self.config.spatial_merge_size;
        let mut rows = Vec::new();
        let mut cols = Vec::new();
        for &[t, h, w] in grids {
            for _ in 0..t {
                for bh in 0..h / m {
                    for bw in 0..w / m {
                        for ih in 0..m {
                            for iw in 0..m {
                                rows.push(bh * m + ih);
                                cols.push(bw * m + iw);
                            }
                        }
                    }
                }
            }
        }
        let freqs = |pos: &[i64]| {
            Tensor::from_slice(pos)
                .to_device(device)
                .to_kind(Kind::Float)
                .unsqueeze(-1)
                * &self.inv_freq
        };
        let (fh, fw) = (freqs(&rows), freqs(&cols));
        let both = |f: fn(&Tensor) -> Tensor| {
            let hw = Tensor::cat(&[f(&fh), f(&fw)], -1);
            Tensor::cat(&[&hw, &hw], -1).unsqueeze(1)
        };
        (both(Tensor::cos), both(Tensor::sin))
    }
}

/// A prompt with its images, ready for the model: tokens with image placeholders already
/// expanded, and the images' patch grids.
#[derive(Debug, Clone)]
pub struct MultimodalPrompt {
    pub tokens: Vec<i64>,
    pub grids: Vec<[i64; 3]>,
}

/// `Qwen2VLForConditionalGeneration`.
#[derive(Debug)]
pub struct Qwen2VlForConditionalGeneration {
    vs: nn::VarStore,
    visual: VisionTransformer,
    model: Qwen2Model,
    lm_head: Option<nn::Linear>,
    config: Qwen2VlConfig,
}

impl Qwen2VlForConditionalGeneration {
    pub fn new(config: &Qwen2VlConfig, device: Device, kind: Kind) -> Result<Self> {
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let visual = VisionTransformer::new(&root / "visual", &config.vision_config);
        let text = &config.text_config;
        let model = Qwen2Model::new(&root / "model", text);
        let lm_head = (!text.tie_word_embeddings)
            .then(|| linear_no_bias(&root / "lm_head", text.hidden_size, text.vocab_size));
        init_like_transformers(&vs, text.initializer_range);
        vs.set_kind(kind);
        Ok(Qwen2VlForConditionalGeneration {
            vs,
            visual,
            model,
            lm_head,
            config: config.clone(),
        })
    }

    /// Loads a Hugging Face Qwen2-VL checkpoint directory.
    pub fn load(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Qwen2VlConfig::from_file(dir)?;
        let mut model = Self::new(&config, device, kind)?;
        let mut options = LoadOptions {
            renames: vec![
                ("model.language_model.".to_string(), "model.".to_string()),
                ("model.visual.".to_string(), "visual.".to_string()),
            ],
            ..Default::default()
        };
        if config.text_config.tie_word_embeddings {
            options.ignore.push("lm_head.weight".to_string());
        }
        weights::load_checkpoint(&mut model.vs, dir, &options)?;
        Ok(model)
    }

    pub fn config(&self) -> &Qwen2VlConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Logits `[batch, width, vocab]` for left-padded prompts with their images;
    /// `pixel_values` holds the patches of all images of all prompts, in order.
    pub fn forward(
        &self,
        prompts: &[MultimodalPrompt],
        pixel_values: Option<&Tensor>,
    ) -> Result<Tensor> {
        let hidden = self.hidden_states(prompts, pixel_values, None)?;
        self.logits(&hidden)
    }

    /// A KV cache for `batch` rows of `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        let text = &self.config.text_config;
        KvCache::new(
            text.num_hidden_layers,
            batch,
            text.num_kv_heads(),
            text.head_dim(),
            capacity,
            self.model.embedding_weight().kind(),
            self.device(),
        )
    }

    /// Generates continuations of multimodal prompts with the shared sampling loop (KV cache,
    /// every sampling option, stop tokens, log-probs) — see [`crate::generation`].
    pub fn generate(
        &self,
        prompts: &[MultimodalPrompt],
        pixel_values: Option<&Tensor>,
        config: &GenerationConfig,
    ) -> Result<Vec<GeneratedSequence>> {
        let tokens: Vec<Vec<i64>> = prompts.iter().map(|p| p.tokens.clone()).collect();
        check_request(&tokens, &self.config.text_config, config)?;
        tch::no_grad(|| {
            let width = tokens.iter().map(Vec::len).max().unwrap_or(0) as i64;
            let capacity = width + config.max_new_tokens as i64;
            let mut cache = self.new_cache(prompts.len() as i64, capacity)?;
            let hidden = self.hidden_states(prompts, pixel_values, Some(&mut cache))?;
            let logits = self.logits(&hidden.select(1, width - 1))?;
            // Each row continues at its own max position + 1 (= length + delta).
            let next_positions = self
                .positions(prompts)?
                .iter()
                .zip(&tokens)
                .map(|(p, t)| t.len() as i64 + p.delta)
                .collect();
            let prefilled = Prefilled {
                logits,
                cache,
                next_positions,
            };
            decode(self, prefilled, config)
        })
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(match &self.lm_head {
            Some(head) => hidden.f_linear::<Tensor>(&head.ws, None)?,
            None => hidden.f_linear::<Tensor>(self.model.embedding_weight(), None)?,
        })
    }

    /// Positions of each prompt (for continuing with decoding: see [`MropePositions::delta`]).
    pub fn positions(&self, prompts: &[MultimodalPrompt]) -> Result<Vec<MropePositions>> {
        prompts
            .iter()
            .map(|p| {
                rope_index(
                    &p.tokens,
                    self.config.image_token_id,
                    &p.grids,
                    self.config.vision_config.spatial_merge_size,
                )
            })
            .collect()
    }

    /// Final hidden states of left-padded prompts; with `cache`, the prompts fill it.
    pub fn hidden_states(
        &self,
        prompts: &[MultimodalPrompt],
        pixel_values: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        if prompts.is_empty() || prompts.iter().any(|p| p.tokens.is_empty()) {
            return Err(ModelError::invalid(
                "prompts",
                "empty batch or empty prompt",
            ));
        }
        let vocab = self.config.text_config.vocab_size;
        for (i, p) in prompts.iter().enumerate() {
            crate::qwen2::check_token_ids(&p.tokens, vocab, &format!("prompt {i}"))?;
        }
        let device = self.device();
        let positions = self.positions(prompts)?;
        let width = prompts.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
        let token_lists: Vec<Vec<i64>> = prompts.iter().map(|p| p.tokens.clone()).collect();
        let (ids, mask) = crate::generation::left_pad(&token_lists, width as i64, device)?;
        let mut embeds = self.model.embed(&ids)?;
        let grids: Vec<[i64; 3]> = prompts.iter().flat_map(|p| p.grids.clone()).collect();
        match (grids.is_empty(), pixel_values) {
            (true, _) => {}
            (false, None) => {
                return Err(ModelError::invalid(
                    "pixel_values",
                    "prompts have images but no pixel values were given",
                ))
            }
            (false, Some(pixels)) => {
                let features = self.visual.forward(pixels, &grids)?.to_kind(embeds.kind());
                let image_mask = ids.eq(self.config.image_token_id).unsqueeze(-1);
                let slots = image_mask.sum(Kind::Int64).int64_value(&[]);
                if slots != features.size()[0] {
                    return Err(ModelError::invalid(
                        "images",
                        format!(
                            "{slots} image tokens but {} image features",
                            features.size()[0]
                        ),
                    ));
                }
                embeds = embeds.masked_scatter(&image_mask.expand_as(&embeds), &features);
            }
        }
        let position_ids = PositionIds::Multimodal(batch_position_ids(&positions, width, device));
        let padded = prompts.iter().any(|p| p.tokens.len() != width);
        self.model
            .forward_embeds(&embeds, &position_ids, padded.then_some(&mask), cache)
    }
}

impl TokenDecoder for Qwen2VlForConditionalGeneration {
    fn device(&self) -> Device {
        self.vs.device()
    }

    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &[i64],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        // Generated tokens are text: the same position on all three rope streams.
        let embeds = self.model.embed(tokens)?;
        let positions = text_positions(positions, self.vs.device());
        let hidden = self
            .model
            .forward_embeds(&embeds, &positions, None, Some(cache))?;
        self.logits(&hidden.select(1, 0))
    }
}
