//! `grlhf-models`: the models grlhf trains and samples from, in tch (libtorch).
//!
//! - [`qwen2`]: the Qwen2 decoder (text model of Qwen2 / Qwen2.5, language half of Qwen2-VL),
//!   loaded from Hugging Face `config.json` + safetensors ([`config`], [`weights`]).
//! - [`generation`]: batched KV-cache generation ([`kv_cache`]) with greedy / temperature /
//!   top-k / top-p sampling ([`sampling`]), stop tokens, finish reasons and per-token log-probs;
//!   its sampling loop ([`decode_loop`]) never waits for the device. [`slot_decoding`]: continuous
//!   batching, with finished rows refilled from a queue ([`slot_cache`]).
//! - [`logprobs`]: teacher-forced, differentiable log-probs of responses (the learner's path).
//! - [`value_head`]: a scalar (Bradley–Terry) reward model.
//! - [`tokenizer`], [`chat_template`]: HF `tokenizer.json` and the Qwen2 chat format.
//! - [`image_processor`]: Qwen2-VL image preprocessing, exactly as transformers does it (the
//!   [`mrope`]: image placeholder expansion and Qwen2-VL's three-stream position ids, and
//!   [`qwen2_vl`]: the Qwen2-VL model (vision tower + decoder; Qwen2.5-VL is not built yet).
//!
//! Models own their parameters in a `tch::nn::VarStore` and must stay on the thread that
//! created them (libtorch keeps grad mode and CUDA streams per thread; `Tensor` is not `Sync`).

pub mod chat_template;
pub mod config;
pub mod cuda_graph;
pub mod decode_loop;
pub mod device;
pub mod error;
mod fused_linear;
pub mod generation;
pub mod generation_config;
pub mod generation_io;
pub mod image_processor;
pub mod kv_cache;
pub mod logprobs;
pub mod mrope;
pub mod qwen2;
pub mod qwen2_vl;
pub mod sampling;
pub mod slot_cache;
pub mod slot_decoding;
pub mod tokenizer;
pub mod value_head;
pub mod weights;

pub use config::Config;
pub use error::{ModelError, Result};
pub use generation::{generate, FinishReason, GeneratedSequence, GenerationConfig};
pub use qwen2::{PositionIds, Qwen2ForCausalLM};
pub use sampling::SamplingParams;
pub use value_head::Qwen2RewardModel;

/// The libtorch version this crate was built against (read at build time).
pub const LIBTORCH_VERSION: &str = env!("GRLHF_LIBTORCH_VERSION");
