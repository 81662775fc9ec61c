//! Qwen2 decoder-only language model: the text model of Qwen2 / Qwen2.5 and the language half
//! of Qwen2-VL / Qwen2.5-VL.
//!
//! - Paper: "Qwen2 Technical Report", <https://arxiv.org/abs/2407.10671>
//! - Reference implementation: `transformers.models.qwen2.modeling_qwen2`
//!
//! Parameter names are Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, ...), so
//! checkpoints saved by transformers load directly, and every op mirrors the reference (RMSNorm
//! in f32, rotary tables cast to the activation dtype, `scaled_dot_product_attention`) so logits
//! agree to float rounding. Rotary embeddings accept either 1-D positions or Qwen2-VL's
//! three-stream multimodal positions ([`PositionIds::Multimodal`]).

use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::fused_linear::{grad_enabled, FusedLinear};
use crate::kv_cache::{CacheWrite, KvCache};
use crate::slot_cache::SlotCache;
use crate::weights::{self, LoadOptions};

/// Position ids fed to the rotary embedding.
#[derive(Debug)]
pub enum PositionIds {
    /// `[batch, seq]` positions, as in every text-only model.
    Text(Tensor),
    /// `[3, batch, seq]` temporal / height / width positions of Qwen2-VL's multimodal rope.
    Multimodal(Tensor),
}

impl PositionIds {
    /// `0..seq` for every row (no padding).
    pub fn sequential(batch: i64, seq: i64, offset: i64, device: Device) -> PositionIds {
        let row = Tensor::arange_start(offset, offset + seq, (Kind::Int64, device));
        PositionIds::Text(row.unsqueeze(0).expand([batch, seq], false))
    }

    /// Positions that skip padding: each real token's position counts the real tokens before
    /// it in its row (what transformers derives from `attention_mask` for left-padded batches).
    pub fn from_attention_mask(mask: &Tensor) -> PositionIds {
        let mask = mask.to_kind(Kind::Int64);
        PositionIds::Text((mask.cumsum(1, Kind::Int64) - 1).clamp_min(0))
    }
}

/// Root-mean-square layer norm, computed in f32 as transformers does.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    size: i64,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(p: nn::Path, size: i64, eps: f64) -> RmsNorm {
        RmsNorm {
            weight: p.var("weight", &[size], nn::Init::Const(1.0)),
            size,
            eps,
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        let dtype = xs.kind();
        if dtype == Kind::Float {
            // libtorch's one-op RMSNorm gives the same bits as transformers' steps below in f32
            // on the CPU (tested below, `one_op_rms_norm_equals_transformers_steps_in_f32`), in one dispatch instead of five. In bf16 / f16 it
            // rounds the scale product differently, so reduced precision keeps the steps.
            return xs.rms_norm([self.size], Some(&self.weight), self.eps);
        }
        let xs32 = xs.to_kind(Kind::Float);
        let variance = xs32.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xs32 * (variance + self.eps).rsqrt();
        &self.weight * normed.to_kind(dtype)
    }
}

/// Rotary position embedding tables, with Qwen2-VL's multimodal sections as an option.
#[derive(Debug)]
struct RotaryEmbedding {
    /// `[head_dim / 2]` inverse frequencies, f32.
    inv_freq: Tensor,
    /// Pairs of frequencies driven by the temporal, height and width streams (Qwen2-VL).
    mrope_section: Option<Vec<i64>>,
}

impl RotaryEmbedding {
    fn new(config: &Config, device: Device) -> RotaryEmbedding {
        let dim = config.head_dim();
        let exponents = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / dim as f64;
        let base = Tensor::from(config.rope_theta() as f32).to_device(device);
        let inv_freq = base.pow(&exponents).reciprocal();
        RotaryEmbedding {
            inv_freq,
            mrope_section: config.mrope_section().map(<[i64]>::to_vec),
        }
    }

    /// Rotary tables of shape `[batch, 1, seq, head_dim]` in `dtype`.
    fn tables(&self, positions: &PositionIds, dtype: Kind) -> Result<RotaryTables> {
        let angles = |pos: &Tensor| -> Tensor {
            let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
            Tensor::cat(&[&freqs, &freqs], -1)
        };
        let emb = match positions {
            PositionIds::Text(pos) => angles(pos),
            PositionIds::Multimodal(pos) => {
                let Some(sections) = &self.mrope_section else {
                    return Err(ModelError::invalid(
                        "position_ids",
                        "multimodal positions given to a model without mrope_section",
                    ));
                };
                // [3, B, T, D]; the head dimension is split into (t, h, w, t, h, w) sections
                // (the section list repeated for both halves) and chunk i follows stream i % 3.
                let all = angles(pos);
                let doubled: Vec<i64> = sections.iter().chain(sections.iter()).copied().collect();
                let chunks = all.split_with_sizes(&doubled, -1);
                let picked: Vec<Tensor> = chunks
                    .iter()
                    .enumerate()
                    .map(|(i, chunk)| chunk.get((i % 3) as i64))
                    .collect();
                Tensor::cat(&picked, -1)
            }
        };
        let cos = emb.cos().to_kind(dtype).unsqueeze(1);
        let sin = emb.sin().to_kind(dtype).unsqueeze(1);
        let half = sin.size()[3] / 2;
        let signed_sin = Tensor::cat(
            &[&sin.narrow(-1, 0, half).neg(), &sin.narrow(-1, half, half)],
            -1,
        );
        Ok(RotaryTables {
            cos,
            signed_sin,
            half,
        })
    }
}

/// Per-forward rotary tables, shared by every layer.
///
/// transformers computes `x * cos + rotate_half(x) * sin` with
/// `rotate_half(x) = cat(-x2, x1)`. Here `rotate_half(x) * sin` is `roll(x, D/2) * signed_sin`
/// with `signed_sin = cat(-sin1, sin2)`: the same products bit for bit (negation is exact),
/// in 4 ops per tensor instead of 7 (GPU decode steps are bound by op dispatch).
#[derive(Debug)]
struct RotaryTables {
    cos: Tensor,
    signed_sin: Tensor,
    half: i64,
}

impl RotaryTables {
    fn apply(&self, xs: &Tensor) -> Tensor {
        xs * &self.cos + xs.roll([self.half], [-1]) * &self.signed_sin
    }
}

/// How attention masks keys for one forward pass.
#[derive(Debug)]
enum AttentionMask {
    /// Every query may see every cached key (single-token decode without padding).
    None,
    /// Plain causal attention over a fresh sequence.
    Causal,
    /// Explicit `[batch, 1, q_len, kv_len]` boolean mask (padding or a cache offset).
    Explicit(Tensor),
}

#[derive(Debug)]
struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    o_proj: nn::Linear,
    /// q, k and v in one buffer for inference (see [`crate::fused_linear`]); set once the
    /// parameters have their final dtype and device.
    qkv: Option<FusedLinear>,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: nn::Path, config: &Config) -> Attention {
        let (h, d) = (config.hidden_size, config.head_dim());
        let (nh, nkv) = (config.num_attention_heads, config.num_kv_heads());
        Attention {
            q_proj: nn::linear(&p / "q_proj", h, nh * d, Default::default()),
            k_proj: nn::linear(&p / "k_proj", h, nkv * d, Default::default()),
            v_proj: nn::linear(&p / "v_proj", h, nkv * d, Default::default()),
            o_proj: linear_no_bias(&p / "o_proj", nh * d, h),
            qkv: None,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: d,
        }
    }

    fn fuse(&mut self) {
        let parts = &mut [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj];
        self.qkv = Some(FusedLinear::bind(parts));
    }

    /// Rotated queries and keys and the values, `[batch, heads, seq, head_dim]` each.
    fn project(&self, xs: &Tensor, rotary: &RotaryTables, fused: bool) -> (Tensor, Tensor, Tensor) {
        let (b, t) = (xs.size()[0], xs.size()[1]);
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        match self.qkv.as_ref().filter(|_| fused) {
            Some(qkv) => {
                // One matmul, one rotary pass over the query and key heads together.
                let heads = qkv
                    .forward(xs)
                    .view([b, t, nh + 2 * nkv, d])
                    .transpose(1, 2);
                let qk = rotary.apply(&heads.narrow(1, 0, nh + nkv));
                (
                    qk.narrow(1, 0, nh),
                    qk.narrow(1, nh, nkv),
                    heads.narrow(1, nh + nkv, nkv),
                )
            }
            None => {
                let heads =
                    |proj: &nn::Linear, n: i64| proj.forward(xs).view([b, t, n, d]).transpose(1, 2);
                (
                    rotary.apply(&heads(&self.q_proj, nh)),
                    rotary.apply(&heads(&self.k_proj, nkv)),
                    heads(&self.v_proj, nkv),
                )
            }
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &RotaryTables,
        mask: &AttentionMask,
        cache: CacheWrite<'_>,
        fused: bool,
    ) -> Result<Tensor> {
        let (b, t) = (xs.size()[0], xs.size()[1]);
        let (q, k, v) = self.project(xs, rotary, fused);
        let (k, v) = cache.store(k, v)?;
        let (attn_mask, is_causal) = match mask {
            AttentionMask::None => (None, false),
            AttentionMask::Causal => (None, t > 1),
            AttentionMask::Explicit(m) => (Some(m), false),
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            attn_mask,
            0.0,
            is_causal,
            scale,
            self.num_kv_heads != self.num_heads,
        )?;
        let out = out
            .transpose(1, 2)
            .reshape([b, t, self.num_heads * self.head_dim]);
        Ok(self.o_proj.forward(&out))
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: nn::Linear,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
    /// gate and up in one buffer for inference (see [`crate::fused_linear`]).
    gate_up: Option<FusedLinear>,
}

impl Mlp {
    fn new(p: nn::Path, config: &Config) -> Mlp {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Mlp {
            gate_proj: linear_no_bias(&p / "gate_proj", h, i),
            up_proj: linear_no_bias(&p / "up_proj", h, i),
            down_proj: linear_no_bias(&p / "down_proj", i, h),
            gate_up: None,
        }
    }

    fn fuse(&mut self) {
        self.gate_up = Some(FusedLinear::bind(&mut [
            &mut self.gate_proj,
            &mut self.up_proj,
        ]));
    }

    fn forward(&self, xs: &Tensor, fused: bool) -> Tensor {
        let gated = match self.gate_up.as_ref().filter(|_| fused) {
            Some(gate_up) => {
                let parts = gate_up.forward(xs).split_with_sizes(gate_up.sizes(), -1);
                parts[0].silu() * &parts[1]
            }
            None => self.gate_proj.forward(xs).silu() * self.up_proj.forward(xs),
        };
        self.down_proj.forward(&gated)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(p: nn::Path, config: &Config) -> DecoderLayer {
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        DecoderLayer {
            self_attn: Attention::new(&p / "self_attn", config),
            mlp: Mlp::new(&p / "mlp", config),
            input_layernorm: RmsNorm::new(&p / "input_layernorm", h, eps),
            post_attention_layernorm: RmsNorm::new(&p / "post_attention_layernorm", h, eps),
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &RotaryTables,
        mask: &AttentionMask,
        cache: CacheWrite<'_>,
        fused: bool,
    ) -> Result<Tensor> {
        let normed = self.input_layernorm.forward(xs);
        let attn = self
            .self_attn
            .forward(&normed, rotary, mask, cache, fused)?;
        let xs = xs + attn;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&xs), fused);
        Ok(xs + mlp)
    }
}

/// The Qwen2 decoder stack without a head (`Qwen2Model` in transformers).
#[derive(Debug)]
pub struct Qwen2Model {
    embed_tokens: nn::Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rotary: RotaryEmbedding,
    config: Config,
}

impl Qwen2Model {
    /// Creates the parameters under `p` (normally the `model` prefix).
    pub fn new(p: nn::Path, config: &Config) -> Qwen2Model {
        let rotary = RotaryEmbedding::new(config, p.device());
        let embed_tokens = nn::embedding(
            &p / "embed_tokens",
            config.vocab_size,
            config.hidden_size,
            Default::default(),
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(&p / "layers" / i, config))
            .collect();
        let norm = RmsNorm::new(&p / "norm", config.hidden_size, config.rms_norm_eps);
        Qwen2Model {
            embed_tokens,
            layers,
            norm,
            rotary,
            config: config.clone(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Puts q/k/v and gate/up of every layer into shared buffers (see [`crate::fused_linear`]).
    /// Called once the parameters have their final dtype and device.
    pub(crate) fn fuse_projections(&mut self) {
        for layer in &mut self.layers {
            layer.self_attn.fuse();
            layer.mlp.fuse();
        }
    }

    /// Whether this forward may use the fused projections: no gradient is being recorded, and
    /// the buffers still hold the parameters (an error when they do not).
    fn use_fused(&self) -> Result<bool> {
        if grad_enabled() {
            return Ok(false);
        }
        match self.layers.first() {
            Some(DecoderLayer {
                self_attn:
                    Attention {
                        qkv: Some(qkv),
                        q_proj,
                        ..
                    },
                ..
            }) => {
                if qkv.is_bound(q_proj) {
                    Ok(true)
                } else {
                    Err(FusedLinear::unbound_error())
                }
            }
            _ => Ok(false),
        }
    }

    /// Token embeddings, `[batch, seq, hidden]`. Ids must be in range (see
    /// [`check_token_ids`]); on CUDA an out-of-range id is a device assert, not an error.
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(
            &self.embed_tokens.ws,
            input_ids,
            -1,
            false,
            false,
        )?)
    }

    /// The embedding matrix, `[vocab, hidden]` (the tied output projection).
    pub fn embedding_weight(&self) -> &Tensor {
        &self.embed_tokens.ws
    }

    /// Vocabulary logits of hidden states through `lm_head`, or through the embedding matrix
    /// when the head is tied (`None`).
    pub fn project(&self, hidden: &Tensor, lm_head: Option<&nn::Linear>) -> Result<Tensor> {
        let weight = lm_head.map_or(self.embedding_weight(), |head| &head.ws);
        Ok(hidden.f_linear::<Tensor>(weight, None)?)
    }

    /// Runs the decoder over input embeddings and returns the final-norm hidden states.
    ///
    /// - `attention_mask`: `[batch, seq]`, 1 for real tokens, 0 for padding; `None` = all real.
    /// - `cache`: when given, the new positions are appended to it and attention covers the
    ///   whole cached prefix.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        positions: &PositionIds,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (batch, seq) = (embeds.size()[0], embeds.size()[1]);
        let device = embeds.device();
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let mask = match cache.as_deref_mut() {
            Some(cache) => {
                let valid = match attention_mask {
                    Some(m) => m.shallow_clone(),
                    None => Tensor::f_ones([batch, seq], (Kind::Bool, device))?,
                };
                cache.stage(&valid, attention_mask.is_some())?;
                if cache.has_padding() || (offset > 0 && seq > 1) {
                    AttentionMask::Explicit(explicit_mask(&cache.key_valid(seq), offset, seq))
                } else if offset == 0 {
                    AttentionMask::Causal
                } else {
                    AttentionMask::None
                }
            }
            None => match attention_mask {
                Some(m) => AttentionMask::Explicit(explicit_mask(&m.to_kind(Kind::Bool), 0, seq)),
                None => AttentionMask::Causal,
            },
        };
        let rotary = self.rotary.tables(positions, embeds.kind())?;
        let fused = self.use_fused()?;
        let mut xs = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let write = match cache.as_deref_mut() {
                Some(c) => CacheWrite::At(&mut c.layers[i], offset),
                None => CacheWrite::None,
            };
            xs = layer.forward(&xs, &rotary, &mask, write, fused)?;
        }
        if let Some(cache) = cache {
            cache.advance(seq);
        }
        Ok(self.norm.forward(&xs))
    }
}

impl Qwen2Model {
    /// One decode step for every slot of `cache`: `embeds` is `[slots, 1, hidden]`, `positions`
    /// the rotary position of each slot's token. Returns final-norm hidden states
    /// `[slots, 1, hidden]`; every slot's cache grows by one. Shapes do not depend on the
    /// slots' lengths, and nothing is read back from the device.
    pub fn forward_slots(
        &self,
        embeds: &Tensor,
        positions: &PositionIds,
        cache: &mut SlotCache,
    ) -> Result<Tensor> {
        let step = cache.step()?;
        let mask = AttentionMask::Explicit(step.mask);
        let rotary = self.rotary.tables(positions, embeds.kind())?;
        let fused = self.use_fused()?;
        let mut xs = embeds.shallow_clone();
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let write = CacheWrite::Slots(layer_cache, &step.index);
            xs = layer.forward(&xs, &rotary, &mask, write, fused)?;
        }
        cache.advance();
        Ok(self.norm.forward(&xs))
    }
}

/// Builds the `[batch, 1, q_len, kv_len]` mask: causal, restricted to valid keys. A query may
/// always see itself, so left-padding rows (which see no valid key) stay finite instead of NaN;
/// their outputs are never used.
fn explicit_mask(key_valid: &Tensor, offset: i64, q_len: i64) -> Tensor {
    let device = key_valid.device();
    let kv_len = key_valid.size()[1];
    let q_pos = Tensor::arange_start(offset, offset + q_len, (Kind::Int64, device)).unsqueeze(1);
    let k_pos = Tensor::arange(kv_len, (Kind::Int64, device)).unsqueeze(0);
    let causal = k_pos.le_tensor(&q_pos).unsqueeze(0);
    let itself = k_pos.eq_tensor(&q_pos).unsqueeze(0);
    causal
        .logical_and(&key_valid.unsqueeze(1))
        .logical_or(&itself)
        .unsqueeze(1)
}

/// A linear layer without bias (every Qwen2 projection except q/k/v).
pub(crate) fn linear_no_bias(p: nn::Path, input: i64, output: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        bias: false,
        ..Default::default()
    };
    nn::linear(p, input, output, config)
}

/// Writes `config.json` (with derived sizes spelled out, so readers with other defaults build
/// the same shape) and `model.safetensors` into `dir`.
pub(crate) fn write_checkpoint(
    dir: &Path,
    mut config: Config,
    vs: &nn::VarStore,
    kind: Kind,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    config.model_type = Some("qwen2".to_string());
    config.head_dim = Some(config.head_dim());
    config.num_key_value_heads = Some(config.num_kv_heads());
    config.dtype = Some(
        match kind {
            Kind::BFloat16 => "bfloat16",
            Kind::Half => "float16",
            _ => "float32",
        }
        .to_string(),
    );
    let path = dir.join("config.json");
    let json = serde_json::to_string_pretty(&config).expect("config serialises");
    std::fs::write(&path, json).map_err(|e| ModelError::io(&path, e))?;
    weights::save_varstore(vs, &dir.join(weights::SINGLE_FILE))
}

/// Re-initialises fresh parameters the way transformers' `Qwen2PreTrainedModel` does: weight
/// matrices and embeddings ~ N(0, `initializer_range`), biases 0, norm scales 1. (tch's own
/// defaults, N(0, 1) embeddings in particular, make random models emit near-one-hot outputs.)
pub(crate) fn init_like_transformers(vs: &nn::VarStore, std: f64) {
    // The var store is a HashMap: draw in name order, so one seed gives one model in every
    // process (iteration order differs per process and would reorder the draws).
    let mut variables: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in variables {
            // 1-D weights are norm scales (RMSNorm and LayerNorm); matrices, convolutions and
            // embeddings are drawn from the normal.
            if name.ends_with(".weight") && var.dim() == 1 {
                let _ = var.fill_(1.0);
            } else if name.ends_with(".bias") {
                let _ = var.zero_();
            } else {
                let _ = var.normal_(0.0, std);
            }
        }
    });
}

/// Checks token ids against the vocabulary before they reach an embedding lookup.
pub fn check_token_ids(ids: &[i64], vocab_size: i64, what: &str) -> Result<()> {
    match ids.iter().position(|&id| id < 0 || id >= vocab_size) {
        Some(position) => Err(ModelError::TokenOutOfRange {
            what: what.to_string(),
            token: ids[position],
            position,
            vocab_size,
        }),
        None => Ok(()),
    }
}

/// Qwen2 with its language-modelling head (`Qwen2ForCausalLM`). Owns its parameters.
#[derive(Debug)]
pub struct Qwen2ForCausalLM {
    vs: nn::VarStore,
    model: Qwen2Model,
    /// `None` when the head is tied to the token embeddings.
    lm_head: Option<nn::Linear>,
    config: Config,
}

impl Qwen2ForCausalLM {
    /// A randomly initialised model (transformers' initialisation) on `device` in `kind`.
    pub fn new(config: &Config, device: Device, kind: Kind) -> Result<Qwen2ForCausalLM> {
        config.validate(&crate::config::in_memory())?;
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut model = Qwen2Model::new(&root / "model", config);
        let lm_head = (!config.tie_word_embeddings)
            .then(|| linear_no_bias(&root / "lm_head", config.hidden_size, config.vocab_size));
        init_like_transformers(&vs, config.initializer_range);
        vs.set_kind(kind);
        model.fuse_projections();
        Ok(Qwen2ForCausalLM {
            vs,
            model,
            lm_head,
            config: config.clone(),
        })
    }

    /// Loads `config.json` and safetensors weights from a Hugging Face model directory.
    pub fn load(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Qwen2ForCausalLM> {
        let dir = dir.as_ref();
        let config = Config::from_file(dir.join("config.json"))?;
        let mut model = Qwen2ForCausalLM::new(&config, device, kind)?;
        let mut options = LoadOptions::default();
        if config.tie_word_embeddings {
            options.ignore.push("lm_head.weight".to_string());
        }
        weights::load_checkpoint(&mut model.vs, dir, &options)?;
        Ok(model)
    }

    /// Saves `config.json` and `model.safetensors` in HF layout.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut config = self.config.clone();
        if config.architectures.is_empty() {
            config.architectures = vec!["Qwen2ForCausalLM".to_string()];
        }
        write_checkpoint(dir.as_ref(), config, &self.vs, self.kind())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn model(&self) -> &Qwen2Model {
        &self.model
    }

    /// The parameters (for optimisers and weight sync).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The parameters' floating dtype.
    pub fn kind(&self) -> Kind {
        self.model.embedding_weight().kind()
    }

    /// A KV cache sized for `batch` rows of `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        KvCache::new(
            self.config.num_hidden_layers,
            batch,
            self.config.num_kv_heads(),
            self.config.head_dim(),
            capacity,
            self.kind(),
            self.device(),
        )
    }

    /// Projects hidden states to vocabulary logits (in the model dtype).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.model.project(hidden, self.lm_head.as_ref())
    }

    /// Logits for every position, `[batch, seq, vocab]`. Checks token ids (one device sync).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &PositionIds,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        self.check_ids_tensor(input_ids, "input_ids")?;
        let hidden = self.hidden_states(input_ids, positions, attention_mask, cache)?;
        self.logits(&hidden)
    }

    /// Final hidden states without the head. Token ids are not range-checked here.
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        positions: &PositionIds,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let embeds = self.model.embed(input_ids)?;
        self.model
            .forward_embeds(&embeds, positions, attention_mask, cache)
    }

    /// Errors if any id of `ids` is outside the vocabulary.
    pub fn check_ids_tensor(&self, ids: &Tensor, what: &str) -> Result<()> {
        let flat: Vec<i64> = Vec::<i64>::try_from(ids.flatten(0, -1).to_device(Device::Cpu))?;
        check_token_ids(&flat, self.config.vocab_size, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> Config {
        let mut base = serde_json::json!({
            "vocab_size": 61, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn logits(model: &Qwen2ForCausalLM, positions: &PositionIds) -> Tensor {
        let ids = Tensor::from_slice(&[3i64, 9, 27, 4, 50]).unsqueeze(0);
        tch::no_grad(|| model.forward(&ids, positions, None, None)).unwrap()
    }

    #[test]
    fn multimodal_rope_with_equal_streams_equals_text_rope() {
        // Qwen2-VL's three-section rope reduces to 1-D rope when the temporal, height and
        // width positions coincide (text tokens); anything else would shift text positions.
        let c = config(serde_json::json!({
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        }));
        tch::manual_seed(1);
        let model = Qwen2ForCausalLM::new(&c, Device::Cpu, Kind::Float).unwrap();
        let text = PositionIds::sequential(1, 5, 0, Device::Cpu);
        let PositionIds::Text(pos) = &text else {
            unreachable!()
        };
        let multi = PositionIds::Multimodal(pos.unsqueeze(0).expand([3, 1, 5], false));
        let diff = (logits(&model, &text) - logits(&model, &multi))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0);
        // Different streams must matter (the sections are wired to the streams).
        let shifted =
            PositionIds::Multimodal(Tensor::stack(&[pos.shallow_clone(), pos * 2, pos * 3], 0));
        let diff = (logits(&model, &text) - logits(&model, &shifted))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff > 1e-6, "height/width streams had no effect");
    }

    #[test]
    fn one_op_rms_norm_equals_transformers_steps_in_f32() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = RmsNorm::new(vs.root() / "norm", 896, 1e-6);
        tch::no_grad(|| {
            let _ = norm.weight.shallow_clone().normal_(1.0, 0.1);
        });
        for rows in [1, 7, 64] {
            let xs = Tensor::randn([rows, 896], (Kind::Float, Device::Cpu)) * 3.0;
            let variance = xs.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
            let steps = &norm.weight * (&xs * (variance + 1e-6).rsqrt());
            let one_op = tch::no_grad(|| norm.forward(&xs));
            assert!(one_op.equal(&steps), "{rows} rows differ");
        }
    }

    #[test]
    fn multimodal_positions_need_mrope_sections() {
        tch::manual_seed(1);
        let model = Qwen2ForCausalLM::new(&config(serde_json::json!({})), Device::Cpu, Kind::Float)
            .unwrap();
        let pos = PositionIds::Multimodal(Tensor::zeros([3, 1, 5], (Kind::Int64, Device::Cpu)));
        let ids = Tensor::from_slice(&[3i64, 9, 27, 4, 50]).unsqueeze(0);
        let err = model
            .forward(&ids, &pos, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mrope_section"), "{err}");
    }
}
