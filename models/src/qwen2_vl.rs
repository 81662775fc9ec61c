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
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::{parse_json, read_json_text, Config};
use crate::error::{ModelError, Result};
use crate::generation::{
    check_request, decode, text_positions, GeneratedSequence, GenerationConfig, Prefilled,
    TokenDecoder,
};
use crate::kv_cache::KvCache;
use crate::logprobs::{ResponseLogprobs, TeacherForcing};
use crate::mrope::{batch_position_ids, rope_index, MropePositions};
use crate::qwen2::{init_like_transformers, linear_no_bias, PositionIds, Qwen2Model, RmsNorm};
use crate::slot_cache::SlotCache;
use crate::slot_decoding::{decode_in_slots, Admitted, SlotDecoder};
use crate::weights::{self, LoadOptions};

/// Writes a whole number as an integer: Hugging Face configs spell `mlp_ratio` as `4`, and
/// transformers ≥ 5 refuses a saved `4.0` (its config fields are type-checked), so a directory
/// grlhf saves would not load there.
fn whole_as_integer<S: serde::Serializer>(x: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

/// `vision_config` of a Qwen2-VL or Qwen2.5-VL checkpoint. The two name their widths
/// differently (see [`VisionConfig::embed_dim`], [`VisionConfig::out_dim`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// `qwen2_vl_vision` / `qwen2_5_vl_vision` (written on save; transformers reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    pub depth: i64,
    /// Qwen2-VL: the tower's width. (Qwen2.5-VL uses `hidden_size` for it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<i64>,
    /// Qwen2-VL: the merger's output width; Qwen2.5-VL: the tower's width.
    pub hidden_size: i64,
    /// Qwen2.5-VL: the merger's output width (the text model's hidden size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_hidden_size: Option<i64>,
    /// Qwen2.5-VL: the SwiGLU MLP width. (Qwen2-VL uses `embed_dim · mlp_ratio`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<i64>,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "four", serialize_with = "whole_as_integer")]
    pub mlp_ratio: f64,
    pub num_heads: i64,
    #[serde(default = "three")]
    pub in_channels: i64,
    /// transformers 4's name for `in_channels`; transformers 5 keeps both when it re-saves.
    #[serde(default, rename = "in_chans", skip_serializing)]
    pub legacy_in_chans: Option<i64>,
    #[serde(default = "fourteen")]
    pub patch_size: i64,
    #[serde(default = "two")]
    pub spatial_merge_size: i64,
    #[serde(default = "two")]
    pub temporal_patch_size: i64,
    /// Qwen2.5-VL: window attention everywhere except these blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullatt_block_indexes: Option<Vec<i64>>,
    /// Qwen2.5-VL: attention window side in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<crate::config::RopeParameters>,
}

impl VisionConfig {
    /// Whether this is Qwen2.5-VL's tower (RMSNorm, SwiGLU, window attention).
    pub fn is_qwen2_5(&self) -> bool {
        self.out_hidden_size.is_some()
    }

    /// Width of the tower's blocks.
    pub fn embed_dim(&self) -> i64 {
        if self.is_qwen2_5() {
            self.hidden_size
        } else {
            self.embed_dim.unwrap_or(self.hidden_size)
        }
    }

    /// Width of the merged features (the text model's hidden size).
    pub fn out_dim(&self) -> i64 {
        self.out_hidden_size.unwrap_or(self.hidden_size)
    }

    fn mlp_dim(&self) -> i64 {
        match self.intermediate_size {
            Some(i) if self.is_qwen2_5() => i,
            _ => (self.embed_dim() as f64 * self.mlp_ratio) as i64,
        }
    }
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

/// Architectures this module loads.
pub const VL_ARCHITECTURES: &[&str] = &[
    "Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
];

/// `config.json` of `Qwen2VLForConditionalGeneration` / `Qwen2_5_VLForConditionalGeneration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2VlConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `qwen2_vl` / `qwen2_5_vl`: written on save, so transformers' Auto classes recognise the
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    pub text_config: Config,
    pub vision_config: VisionConfig,
    pub image_token_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_start_token_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
}

/// `config.json` before the text model's keys are found: nested in `text_config` (transformers
/// 5, and 4.5x re-saves) or at the top level, as transformers 4 wrote Qwen2-VL-2B-Instruct and
/// Qwen2.5-VL-*-Instruct on the hub.
#[derive(Deserialize)]
struct VlConfigLayout {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    text_config: Option<Config>,
    vision_config: VisionConfig,
    image_token_id: i64,
    #[serde(default)]
    vision_start_token_id: Option<i64>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

impl Qwen2VlConfig {
    /// Reads and validates `config.json` (or the one in a model directory), in either layout.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Qwen2VlConfig> {
        let (text, path) = read_json_text(path.as_ref(), "config.json")?;
        let layout: VlConfigLayout = parse_json(&text, &path)?;
        let text_config = match layout.text_config {
            Some(nested) => nested,
            // The flat layout: the same keys read as a text model's (line and column in errors
            // still point into this file). Its `model_type` names the whole model.
            None => {
                let mut flat: Config = parse_json(&text, &path)?;
                flat.model_type = flat.model_type.map(|t| match t.as_str() {
                    "qwen2_vl" | "qwen2_5_vl" => format!("{t}_text"),
                    _ => t,
                });
                flat
            }
        };
        let mut vision_config = layout.vision_config;
        if let Some(legacy) = vision_config.legacy_in_chans.take() {
            if vision_config.in_channels != 3 && vision_config.in_channels != legacy {
                return Err(ModelError::ConfigValue {
                    path,
                    field: "vision_config.in_chans".into(),
                    message: format!(
                        "{legacy} disagrees with vision_config.in_channels {}",
                        vision_config.in_channels
                    ),
                });
            }
            vision_config.in_channels = legacy;
        }
        let mut config = Qwen2VlConfig {
            architectures: layout.architectures,
            model_type: layout.model_type,
            text_config,
            vision_config,
            image_token_id: layout.image_token_id,
            vision_start_token_id: layout.vision_start_token_id,
            tie_word_embeddings: layout.tie_word_embeddings,
        };
        let bad = |field: &str, message: String| ModelError::ConfigValue {
            path: path.clone(),
            field: field.to_string(),
            message,
        };
        if !config.architectures.is_empty()
            && !config
                .architectures
                .iter()
                .any(|a| VL_ARCHITECTURES.contains(&a.as_str()))
        {
            return Err(bad(
                "architectures",
                format!(
                    "{:?} is not supported here; expected one of {VL_ARCHITECTURES:?}",
                    config.architectures
                ),
            ));
        }
        if let Some(model_type) = &config.model_type {
            if !["qwen2_vl", "qwen2_5_vl"].contains(&model_type.as_str()) {
                return Err(bad(
                    "model_type",
                    format!(
                        "`{model_type}` is not supported here; expected qwen2_vl or qwen2_5_vl"
                    ),
                ));
            }
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
        let act = if v.is_qwen2_5() { "silu" } else { "quick_gelu" };
        if v.hidden_act != act {
            return Err(bad(
                "vision_config.hidden_act",
                format!("`{}` is not supported here ({act} is)", v.hidden_act),
            ));
        }
        let embed = v.embed_dim();
        if v.num_heads <= 0 || embed % v.num_heads != 0 || (embed / v.num_heads) % 4 != 0 {
            return Err(bad(
                "vision_config.num_heads",
                format!("width {embed} must split into heads whose size is a multiple of 4"),
            ));
        }
        if v.out_dim() != config.text_config.hidden_size {
            return Err(bad(
                "vision_config",
                format!(
                    "merger output {} differs from the text model's hidden_size {}",
                    v.out_dim(),
                    config.text_config.hidden_size
                ),
            ));
        }
        if v.is_qwen2_5() && v.window_size.unwrap_or(0) < v.patch_size * v.spatial_merge_size {
            return Err(bad(
                "vision_config.window_size",
                "must be at least patch_size × spatial_merge_size".to_string(),
            ));
        }
        Ok(config)
    }
}

/// LayerNorm (Qwen2-VL) or RMSNorm (Qwen2.5-VL), both with eps 1e-6.
#[derive(Debug)]
enum VisionNorm {
    Layer(nn::LayerNorm),
    Rms(RmsNorm),
}

impl VisionNorm {
    fn new(p: nn::Path, dim: i64, rms: bool) -> VisionNorm {
        if rms {
            VisionNorm::Rms(RmsNorm::new(p, dim, 1e-6))
        } else {
            let config = nn::LayerNormConfig {
                eps: 1e-6,
                ..Default::default()
            };
            VisionNorm::Layer(nn::layer_norm(p, vec![dim], config))
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        match self {
            VisionNorm::Layer(n) => n.forward(xs),
            VisionNorm::Rms(n) => n.forward(xs),
        }
    }
}

/// QuickGELU MLP (Qwen2-VL) or SwiGLU MLP with biases (Qwen2.5-VL).
#[derive(Debug)]
enum VisionMlp {
    QuickGelu {
        fc1: nn::Linear,
        fc2: nn::Linear,
    },
    SwiGlu {
        gate: nn::Linear,
        up: nn::Linear,
        down: nn::Linear,
    },
}

impl VisionMlp {
    fn new(p: nn::Path, c: &VisionConfig) -> VisionMlp {
        let (d, h) = (c.embed_dim(), c.mlp_dim());
        let lin = |name: &str, i, o| nn::linear(&p / name, i, o, Default::default());
        if c.is_qwen2_5() {
            VisionMlp::SwiGlu {
                gate: lin("gate_proj", d, h),
                up: lin("up_proj", d, h),
                down: lin("down_proj", h, d),
            }
        } else {
            VisionMlp::QuickGelu {
                fc1: lin("fc1", d, h),
                fc2: lin("fc2", h, d),
            }
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        match self {
            VisionMlp::QuickGelu { fc1, fc2 } => {
                let h = fc1.forward(xs);
                fc2.forward(&(&h * (&h * 1.702).sigmoid()))
            }
            VisionMlp::SwiGlu { gate, up, down } => {
                down.forward(&(gate.forward(xs).silu() * up.forward(xs)))
            }
        }
    }
}

#[derive(Debug)]
struct VisionBlock {
    norm1: VisionNorm,
    norm2: VisionNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    mlp: VisionMlp,
    num_heads: i64,
}

impl VisionBlock {
    fn new(p: nn::Path, c: &VisionConfig) -> VisionBlock {
        let (d, rms) = (c.embed_dim(), c.is_qwen2_5());
        VisionBlock {
            norm1: VisionNorm::new(&p / "norm1", d, rms),
            norm2: VisionNorm::new(&p / "norm2", d, rms),
            qkv: nn::linear(&p / "attn" / "qkv", d, 3 * d, Default::default()),
            proj: nn::linear(&p / "attn" / "proj", d, d, Default::default()),
            mlp: VisionMlp::new(&p / "mlp", c),
            num_heads: c.num_heads,
        }
    }

    /// `xs`: `[patches, embed]`; attention stays within each chunk of `lengths` (frames, or
    /// windows for Qwen2.5-VL's windowed blocks).
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
        Ok(&xs + self.mlp.forward(&self.norm2.forward(&xs)))
    }
}

/// Qwen2.5-VL's windows: the order in which merge units are visited (window by window) and
/// each window's length in patches, as transformers' `get_vision_window_index`.
fn window_layout(grids: &[[i64; 3]], merge: i64, window_units: i64) -> (Vec<i64>, Vec<i64>) {
    let mut order = Vec::new();
    let mut lengths = Vec::new();
    let mut offset = 0;
    for &[t, h, w] in grids {
        let (gh, gw) = (h / merge, w / merge);
        for frame in 0..t {
            for wh in 0..(gh + window_units - 1) / window_units {
                for ww in 0..(gw + window_units - 1) / window_units {
                    let mut count = 0;
                    for ih in wh * window_units..((wh + 1) * window_units).min(gh) {
                        for iw in ww * window_units..((ww + 1) * window_units).min(gw) {
                            order.push(offset + frame * gh * gw + ih * gw + iw);
                            count += 1;
                        }
                    }
                    if count > 0 {
                        lengths.push(count * merge * merge);
                    }
                }
            }
        }
        offset += t * gh * gw;
    }
    (order, lengths)
}

/// The Qwen2-VL vision transformer (`visual.*`).
#[derive(Debug)]
pub struct VisionTransformer {
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    ln_q: VisionNorm,
    mlp0: nn::Linear,
    mlp2: nn::Linear,
    inv_freq: Tensor,
    config: VisionConfig,
}

impl VisionTransformer {
    pub fn new(p: nn::Path, c: &VisionConfig) -> VisionTransformer {
        let embed = c.embed_dim();
        let shape = [
            embed,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ];
        let patch_embed = (&p / "patch_embed" / "proj").var("weight", &shape, nn::Init::Const(0.0));
        let blocks = (0..c.depth)
            .map(|i| VisionBlock::new(&p / "blocks" / i, c))
            .collect();
        let merged = embed * c.spatial_merge_size * c.spatial_merge_size;
        let spatial = embed / c.num_heads / 2;
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
        let merger = &p / "merger";
        VisionTransformer {
            patch_embed,
            blocks,
            ln_q: VisionNorm::new(&merger / "ln_q", embed, c.is_qwen2_5()),
            mlp0: nn::linear(&merger / "mlp" / 0, merged, merged, Default::default()),
            mlp2: nn::linear(&merger / "mlp" / 2, merged, c.out_dim(), Default::default()),
            inv_freq,
            config: c.clone(),
        }
    }

    /// Merged features `[sum of t·h·w / merge², out_dim]` for preprocessed `pixel_values`.
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[i64; 3]]) -> Result<Tensor> {
        let c = &self.config;
        let device = self.patch_embed.device();
        let dtype = self.patch_embed.kind();
        let (embed, unit) = (c.embed_dim(), c.spatial_merge_size * c.spatial_merge_size);
        let patches = pixel_values.to_device(device).to_kind(dtype).view([
            -1,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ]);
        let kernel = [c.temporal_patch_size, c.patch_size, c.patch_size];
        let mut xs = patches
            .f_conv3d::<Tensor>(&self.patch_embed, None, kernel, [0, 0, 0], [1, 1, 1], 1)?
            .view([-1, embed]);
        let (mut cos, mut sin) = self.rotary(grids, device);
        let frames: Vec<i64> = grids
            .iter()
            .flat_map(|&[t, h, w]| std::iter::repeat_n(h * w, t as usize))
            .collect();
        // Qwen2.5-VL regroups merge units window by window (and restores the order at the end).
        let windows = c.is_qwen2_5().then(|| {
            let units = c.window_size.unwrap_or(0) / c.spatial_merge_size / c.patch_size;
            window_layout(grids, c.spatial_merge_size, units)
        });
        let permute = |t: &Tensor, order: &Tensor| -> Tensor {
            let n = t.size()[0];
            t.reshape([n / unit, unit, -1])
                .index_select(0, order)
                .reshape([n, -1])
                .view(t.size().as_slice())
        };
        let order = windows
            .as_ref()
            .map(|(order, _)| Tensor::from_slice(order).to_device(device));
        if let Some(order) = &order {
            xs = permute(&xs, order);
            cos = permute(&cos, order);
            sin = permute(&sin, order);
        }
        let full: Vec<i64> = c.fullatt_block_indexes.clone().unwrap_or_default();
        for (i, block) in self.blocks.iter().enumerate() {
            let lengths = match &windows {
                Some((_, window_lengths)) if !full.contains(&(i as i64)) => window_lengths,
                _ => &frames,
            };
            xs = block.forward(&xs, &cos, &sin, lengths)?;
        }
        let merged = embed * unit;
        let h = self
            .mlp0
            .forward(&self.ln_q.forward(&xs).view([-1, merged]));
        let out = self.mlp2.forward(&h.gelu("none"));
        Ok(match &order {
            Some(order) => out.index_select(0, &order.argsort(0, false)),
            None => out,
        })
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
        let mut model = Qwen2Model::new(&root / "model", text);
        let lm_head = (!text.tie_word_embeddings)
            .then(|| linear_no_bias(&root / "lm_head", text.hidden_size, text.vocab_size));
        init_like_transformers(&vs, text.initializer_range);
        vs.set_kind(kind);
        model.fuse_projections();
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

    /// The parameters, mutably (for optimisers and weight sync).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Writes `config.json` and `model.safetensors` (our parameter names, which [`Self::load`]
    /// reads back) to `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut config = self.config.clone();
        let qwen2_5 = usize::from(config.vision_config.is_qwen2_5());
        if config.architectures.is_empty() {
            config.architectures = vec![VL_ARCHITECTURES[qwen2_5].to_string()];
        }
        // What transformers needs to read the directory back: the model types (its Auto classes
        // dispatch on them) and an explicit tie flag (the head follows the text model's).
        let model_type = ["qwen2_vl", "qwen2_5_vl"][qwen2_5];
        config.model_type = Some(model_type.to_string());
        config.text_config.model_type = Some(format!("{model_type}_text"));
        config.vision_config.model_type = Some(format!("{model_type}_vision"));
        config.tie_word_embeddings = Some(config.text_config.tie_word_embeddings);
        let path = dir.join("config.json");
        let json = serde_json::to_string_pretty(&config).expect("config serialises");
        std::fs::write(&path, json).map_err(|e| ModelError::io(&path, e))?;
        weights::save_varstore(&self.vs, &dir.join(weights::SINGLE_FILE))
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

    /// Merged image features `[tokens, hidden]` of preprocessed images (the vision tower alone).
    pub fn encode_images(&self, pixel_values: &Tensor, grids: &[[i64; 3]]) -> Result<Tensor> {
        self.visual.forward(pixel_values, grids)
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
                prompts: tokens.clone(),
            };
            decode(self, prefilled, config)
        })
    }

    /// [`generate`](Self::generate) with continuous batching (see [`crate::slot_decoding`]):
    /// `samples_per_prompt` samples of each prompt, `slots` of them decoding at once, a finished
    /// one replaced by the next. Each prompt runs its prompt pass alone, with its own images
    /// (`pixel_values[i]`: prompt `i`'s patches), once for all its samples. Sample `j` of prompt
    /// `i` is request `i * samples_per_prompt + j`: it samples what that row of
    /// [`generate`](Self::generate) over the prompts, each repeated, samples.
    pub fn generate_in_slots(
        &self,
        prompts: &[MultimodalPrompt],
        pixel_values: &[Option<&Tensor>],
        samples_per_prompt: usize,
        slots: usize,
        config: &GenerationConfig,
    ) -> Result<Vec<GeneratedSequence>> {
        let tokens: Vec<Vec<i64>> = prompts.iter().map(|p| p.tokens.clone()).collect();
        check_request(&tokens, &self.config.text_config, config)?;
        if pixel_values.len() != prompts.len() || samples_per_prompt == 0 {
            return Err(ModelError::invalid(
                "pixel_values",
                format!(
                    "{} prompts, {} pixel entries, {samples_per_prompt} samples per prompt: one \
                     entry per prompt and at least one sample are needed",
                    prompts.len(),
                    pixel_values.len()
                ),
            ));
        }
        let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
        let mut last: Option<(usize, Admitted)> = None;
        let mut admit = |request: usize| -> Result<Admitted> {
            let prompt = request / samples_per_prompt;
            if last.as_ref().map(|(seen, _)| *seen) != Some(prompt) {
                last = Some((
                    prompt,
                    self.prefill_alone(&prompts[prompt], pixel_values[prompt])?,
                ));
            }
            Ok(last.as_ref().expect("set above").1.share())
        };
        let requests = prompts.len() * samples_per_prompt;
        tch::no_grad(|| decode_in_slots(self, requests, longest, &mut admit, slots, config))
    }

    /// One prompt's pass into its own batch-1 cache, continuing at its max position + 1.
    fn prefill_alone(
        &self,
        prompt: &MultimodalPrompt,
        pixel_values: Option<&Tensor>,
    ) -> Result<Admitted> {
        let len = prompt.tokens.len() as i64;
        let mut cache = self.new_cache(1, len)?;
        let one = std::slice::from_ref(prompt);
        let hidden = self.hidden_states(one, pixel_values, Some(&mut cache))?;
        let delta = self.positions(one)?[0].delta;
        Ok(Admitted {
            logits: self.logits(&hidden.select(1, len - 1))?,
            cache: Rc::new(cache),
            next_position: len + delta,
        })
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.model.project(hidden, self.lm_head.as_ref())
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
        let grids: Vec<[i64; 3]> = prompts.iter().flat_map(|p| p.grids.clone()).collect();
        let embeds = self.embed_with_images(&ids, &grids, pixel_values)?;
        let position_ids = PositionIds::Multimodal(batch_position_ids(&positions, width, device));
        let padded = prompts.iter().any(|p| p.tokens.len() != width);
        self.model
            .forward_embeds(&embeds, &position_ids, padded.then_some(&mask), cache)
    }
}

impl Qwen2VlForConditionalGeneration {
    /// Token embeddings with the image features of `grids` (all prompts' images, in order)
    /// written over the image tokens.
    fn embed_with_images(
        &self,
        ids: &Tensor,
        grids: &[[i64; 3]],
        pixel_values: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.embed_with_images_before(ids, grids, pixel_values, None)
    }

    /// As [`Self::embed_with_images`], with image tokens recognised only in columns before
    /// `limit` (the prompt part of a teacher-forced batch).
    fn embed_with_images_before(
        &self,
        ids: &Tensor,
        grids: &[[i64; 3]],
        pixel_values: Option<&Tensor>,
        limit: Option<i64>,
    ) -> Result<Tensor> {
        let embeds = self.model.embed(ids)?;
        let pixels = match (grids.is_empty(), pixel_values) {
            (true, _) => return Ok(embeds),
            (false, None) => {
                return Err(ModelError::invalid(
                    "pixel_values",
                    "prompts have images but no pixel values were given",
                ))
            }
            (false, Some(pixels)) => pixels,
        };
        let features = self.visual.forward(pixels, grids)?.to_kind(embeds.kind());
        let image_mask = ids.eq(self.config.image_token_id);
        if let Some(limit) = limit {
            let width = image_mask.size()[1];
            if limit < width {
                let _ = image_mask.narrow(1, limit, width - limit).fill_(0);
            }
        }
        let image_mask = image_mask.unsqueeze(-1);
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
        Ok(embeds.masked_scatter(&image_mask.expand_as(&embeds), &features))
    }

    /// Teacher-forced, differentiable log-probs of `responses` after multimodal `prompts`
    /// (the learner's path with images): as [`crate::logprobs::response_logprobs`], with the
    /// image features in the prompts and response tokens positioned after each prompt's
    /// largest position.
    pub fn response_logprobs(
        &self,
        prompts: &[MultimodalPrompt],
        responses: &[Vec<i64>],
        pixel_values: Option<&Tensor>,
        temperature: f64,
    ) -> Result<ResponseLogprobs> {
        let tokens: Vec<Vec<i64>> = prompts.iter().map(|p| p.tokens.clone()).collect();
        let vocab = self.config.text_config.vocab_size;
        let layout = TeacherForcing::new(&tokens, responses, vocab, temperature)?;
        let device = self.device();
        let (ids, attention) = layout.inputs(device);
        let grids: Vec<[i64; 3]> = prompts.iter().flat_map(|p| p.grids.clone()).collect();
        // Image features go into the prompt columns only: a response may contain the image
        // token id as ordinary text (generation embeds it as text too).
        let embeds =
            self.embed_with_images_before(&ids, &grids, pixel_values, Some(layout.p_width as i64))?;
        // Prompt positions from get_rope_index; response token j continues at len + delta + j.
        let mut rows = self.positions(prompts)?;
        for (row, response) in rows.iter_mut().zip(responses) {
            let next = row.positions.len() as i64 + row.delta;
            let start = row.positions.len();
            row.positions
                .extend((0..response.len() as i64).map(|j| [next + j; 3]));
            // Right padding after the response: batch_position_ids left-aligns by length, so
            // pad the tail explicitly to keep responses at column p_width.
            let tail = layout.r_width - response.len();
            row.positions.extend(std::iter::repeat_n([0; 3], tail));
            debug_assert_eq!(row.positions.len(), start + layout.r_width);
        }
        let positions = batch_position_ids(&rows, layout.width(), device);
        let hidden = self.model.forward_embeds(
            &embeds,
            &PositionIds::Multimodal(positions),
            layout.padded().then_some(&attention),
            None,
        )?;
        layout.score(&hidden, |h| self.logits(h))
    }
}

impl SlotDecoder for Qwen2VlForConditionalGeneration {
    fn device(&self) -> Device {
        self.vs.device()
    }

    fn new_slot_cache(&self, slots: i64, capacity: i64) -> Result<SlotCache> {
        let kind = self.model.embedding_weight().kind();
        SlotCache::for_decoder(
            &self.config.text_config,
            slots,
            capacity,
            kind,
            self.device(),
        )
    }

    fn decode_slots(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut SlotCache,
    ) -> Result<Tensor> {
        // Generated tokens are text: the same position on all three rope streams.
        let embeds = self.model.embed(tokens)?;
        let hidden = self
            .model
            .forward_slots(&embeds, &text_positions(positions), cache)?;
        self.logits(&hidden.select(1, 0))
    }
}

impl TokenDecoder for Qwen2VlForConditionalGeneration {
    fn device(&self) -> Device {
        self.vs.device()
    }

    fn decode_step(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        // Generated tokens are text: the same position on all three rope streams.
        let embeds = self.model.embed(tokens)?;
        let positions = text_positions(positions);
        let hidden = self
            .model
            .forward_embeds(&embeds, &positions, None, Some(cache))?;
        self.logits(&hidden.select(1, 0))
    }
}
