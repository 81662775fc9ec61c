//! The Qwen2 text-model configuration, read directly from a Hugging Face `config.json`.
//!
//! Field names and defaults follow `transformers.Qwen2Config`. Both the transformers-4 layout
//! (`rope_theta`, `rope_scaling` at the top level) and the transformers-5 layout
//! (`rope_parameters`) are accepted. Values grlhf cannot run (another activation, sliding-window
//! attention, a rope scaling type other than default/mrope) are refused with the field named,
//! never ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Architectures (the `architectures` field of `config.json`) that the text model loads.
pub const SUPPORTED_ARCHITECTURES: &[&str] =
    &["Qwen2ForCausalLM", "Qwen2ForSequenceClassification"];

/// `model_type` values of Qwen2-family text models (the text half of Qwen2-VL / Qwen2.5-VL
/// included).
pub const TEXT_MODEL_TYPES: &[&str] = &["qwen2", "qwen2_vl_text", "qwen2_5_vl_text"];

/// Either one token id or several (HF allows both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// transformers-5 rope description (`rope_parameters`), also used for the older `rope_scaling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RopeParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    /// transformers 4's name for the kind (`rope_scaling: {"type": "mrope", ...}`). transformers
    /// 5 keeps it next to `rope_type` when it re-saves such a config, so both may be present.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub legacy_type: Option<String>,
    /// Qwen2-VL's three-section multimodal rope: how many frequency pairs follow the temporal,
    /// height and width position streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrope_section: Option<Vec<i64>>,
}

/// `Qwen2Config` as found in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    /// Defaults to `num_attention_heads` (multi-head attention), as in transformers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Standard deviation of the normal initialiser used for fresh (untrained) models.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default)]
    pub use_sliding_window: bool,
    /// transformers 5 lists each layer's attention kind; only `full_attention` is implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<i64>,
    /// The checkpoint's storage dtype (`torch_dtype` in transformers 4, `dtype` in 5).
    #[serde(
        default,
        alias = "torch_dtype",
        skip_serializing_if = "Option::is_none"
    )]
    pub dtype: Option<String>,
    /// Label names of a sequence-classification head; its length is `num_labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
}

fn default_hidden_act() -> String {
    "silu".to_string()
}
fn default_max_position_embeddings() -> i64 {
    32768
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_initializer_range() -> f64 {
    0.02
}

/// Reads a JSON file into `T`: `path`, or `default_name` inside it when it is a directory.
/// Returns the file actually read, for later error messages. Parse errors carry line and column.
pub(crate) fn read_json_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    default_name: &str,
) -> Result<(T, PathBuf)> {
    let (text, path) = read_json_text(path, default_name)?;
    let value = parse_json(&text, &path)?;
    Ok((value, path))
}

/// The text of `path`, or of `default_name` inside it when it is a directory, and the file read.
pub(crate) fn read_json_text(path: &Path, default_name: &str) -> Result<(String, PathBuf)> {
    let path = if path.is_dir() {
        path.join(default_name)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    Ok((text, path))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ModelError::ConfigParse {
        path: origin.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

impl Config {
    /// Reads and validates `config.json` (or a directory holding one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let (config, path): (Config, _) = read_json_file(path.as_ref(), "config.json")?;
        config.validate(&path)?;
        Ok(config)
    }

    /// Parses JSON text; `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Config> {
        parse_json(text, origin)
    }

    /// Checks that the values describe a model grlhf can run.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |field: &str, message: String| ModelError::ConfigValue {
            path: origin.to_path_buf(),
            field: field.to_string(),
            message,
        };
        if !self.architectures.is_empty()
            && !self
                .architectures
                .iter()
                .any(|a| SUPPORTED_ARCHITECTURES.contains(&a.as_str()))
        {
            return Err(bad(
                "architectures",
                format!(
                    "{:?} is not supported; grlhf's text model loads {:?}",
                    self.architectures, SUPPORTED_ARCHITECTURES
                ),
            ));
        }
        if let Some(model_type) = &self.model_type {
            if !TEXT_MODEL_TYPES.contains(&model_type.as_str()) {
                return Err(bad(
                    "model_type",
                    format!(
                        "`{model_type}` is not supported; expected one of {TEXT_MODEL_TYPES:?}"
                    ),
                ));
            }
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
        ] {
            if value <= 0 {
                return Err(bad(field, format!("must be positive, got {value}")));
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.head_dim() % 2 != 0 || self.head_dim() <= 0 {
            return Err(bad(
                "head_dim",
                format!("must be positive and even, got {}", self.head_dim()),
            ));
        }
        if self.num_attention_heads % self.num_kv_heads() != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads,
                    self.num_kv_heads()
                ),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad(
                "hidden_act",
                format!("`{}` is not supported; Qwen2 uses silu", self.hidden_act),
            ));
        }
        if self.use_sliding_window {
            return Err(bad(
                "use_sliding_window",
                "sliding-window attention is not implemented; set it to false".to_string(),
            ));
        }
        if let Some(kind) = self
            .layer_types
            .iter()
            .flatten()
            .find(|kind| kind.as_str() != "full_attention")
        {
            return Err(bad(
                "layer_types",
                format!("`{kind}` layers are not implemented (only full_attention)"),
            ));
        }
        if self.rms_norm_eps <= 0.0 {
            return Err(bad("rms_norm_eps", "must be positive".to_string()));
        }
        let (field, rope) = self.rope_source();
        if let Some(rope) = rope {
            let kinds = [rope.rope_type.as_deref(), rope.legacy_type.as_deref()];
            // Both names must be ones grlhf runs (a re-saved config carries `default` and `mrope`).
            if let Some(kind) = kinds
                .into_iter()
                .flatten()
                .find(|k| *k != "default" && *k != "mrope")
            {
                return Err(bad(
                    field,
                    format!("rope type `{kind}` is not supported (default and mrope are)"),
                ));
            }
        }
        if let Some(sections) = self.mrope_section() {
            let sum: i64 = sections.iter().sum();
            if sections.len() != 3 || sum * 2 != self.head_dim() {
                return Err(bad(
                    field,
                    format!(
                        "mrope_section {sections:?} must have 3 entries summing to head_dim/2 = {}",
                        self.head_dim() / 2
                    ),
                ));
            }
        }
        if self.rope_theta() <= 0.0 {
            return Err(bad("rope_theta", "must be positive".to_string()));
        }
        Ok(())
    }

    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Which field holds the rope description (`rope_parameters` wins over `rope_scaling`).
    fn rope_source(&self) -> (&'static str, Option<&RopeParameters>) {
        match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) => ("rope_parameters", Some(p)),
            (None, Some(s)) => ("rope_scaling", Some(s)),
            (None, None) => ("rope_parameters", None),
        }
    }

    /// The rope base frequency: `rope_parameters.rope_theta`, else `rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }

    /// The multimodal rope sections, when the config asks for Qwen2-VL's three-section rope.
    pub fn mrope_section(&self) -> Option<&[i64]> {
        self.rope_source()
            .1
            .and_then(|r| r.mrope_section.as_deref())
    }

    /// End-of-sequence ids, used as default stop tokens.
    pub fn eos_token_ids(&self) -> Vec<i64> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Number of parameters of the model this config describes (lm_head counted once if tied).
    pub fn num_parameters(&self) -> i64 {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_attention_heads * self.head_dim(),
            self.num_kv_heads() * self.head_dim(),
        );
        let attention = h * q + q + 2 * (h * kv + kv) + q * h;
        let layer = attention + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }
}

/// A path for error messages when a config did not come from a file.
pub(crate) fn in_memory() -> PathBuf {
    PathBuf::from("<in-memory config>")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
        "eos_token_id": [5, 7]
    }"#;

    fn parse(text: &str) -> Result<Config> {
        let config = Config::from_json_str(text, Path::new("config.json"))?;
        config.validate(Path::new("config.json"))?;
        Ok(config)
    }

    #[test]
    fn reads_transformers_5_layout() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.rope_theta(), 1e6);
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.num_kv_heads(), 2);
        assert_eq!(c.eos_token_ids(), vec![5, 7]);
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn reads_transformers_4_layout() {
        let text = BASE.replace(
            r#""rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}"#,
            r#""rope_theta": 500.0, "rope_scaling": null"#,
        );
        assert_eq!(parse(&text).unwrap().rope_theta(), 500.0);
    }

    #[test]
    fn reads_rope_parameters_that_carry_both_type_names() {
        // What transformers 5 writes when it re-saves a config given in the legacy form.
        let text = BASE.replace(
            r#""rope_type": "default"}"#,
            r#""rope_type": "default", "type": "mrope", "mrope_section": [2, 3, 3]}"#,
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.mrope_section(), Some(&[2, 3, 3][..]));
        assert_eq!(c.rope_theta(), 1e6);
    }

    #[test]
    fn refuses_an_unsupported_rope_kind_under_either_name() {
        for rope in [
            r#""rope_type": "default", "type": "yarn"}"#,
            r#""type": "dynamic"}"#,
        ] {
            let err = parse(&BASE.replace(r#""rope_type": "default"}"#, rope))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`rope_parameters`") && err.contains("is not supported"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_architecture_names_the_field() {
        let err = parse(&BASE.replace("Qwen2ForCausalLM", "LlamaForCausalLM"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("`architectures`"),
            "{err}"
        );
        assert!(err.contains("LlamaForCausalLM"), "{err}");
    }

    #[test]
    fn missing_field_reports_line_and_column() {
        let err = parse(&BASE.replace(r#""hidden_size": 64,"#, ""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.json:"), "{err}");
        assert!(err.contains("hidden_size"), "{err}");
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for (from, to, field) in [
            (
                r#""num_key_value_heads": 2"#,
                r#""num_key_value_heads": 3"#,
                "num_key_value_heads",
            ),
            (
                r#""model_type": "qwen2""#,
                r#""model_type": "llama""#,
                "model_type",
            ),
            (
                r#""rope_type": "default""#,
                r#""rope_type": "yarn""#,
                "rope_parameters",
            ),
            (r#""vocab_size": 256"#, r#""vocab_size": 0"#, "vocab_size"),
        ] {
            let err = parse(&BASE.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{to}: {err}");
        }
        let sliding = BASE.replace(
            r#""eos_token_id""#,
            r#""use_sliding_window": true, "eos_token_id""#,
        );
        assert!(parse(&sliding)
            .unwrap_err()
            .to_string()
            .contains("use_sliding_window"));
    }

    #[test]
    fn counts_parameters() {
        let c = parse(BASE).unwrap();
        // embed 256*64 + lm_head 256*64 + norm 64 + 2 layers of
        // (q 64*64+64, k/v 2*(64*32+32), o 64*64, mlp 3*64*128, norms 128).
        let layer = (64 * 64 + 64) + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 128;
        assert_eq!(c.num_parameters(), 2 * 256 * 64 + 64 + 2 * layer);
    }
}
