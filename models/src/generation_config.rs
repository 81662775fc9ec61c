//! `generation_config.json`: the decoding defaults a checkpoint ships (Qwen2.5-Instruct's, for
//! instance: sampling at temperature 0.7, top-p 0.8, top-k 20, repetition penalty 1.05, and
//! both `<|im_end|>` and `<|endoftext|>` as end-of-sequence tokens). `grlhf generate` starts
//! from them and its flags override each one; generators of a run take the end-of-sequence ids
//! (their sampling is the run config's, chosen for RL). Keys grlhf does not use are ignored.

use std::path::Path;

use serde::Deserialize;

use crate::config::TokenIds;
use crate::error::{ModelError, Result};
use crate::sampling::SamplingParams;

/// The keys of `generation_config.json` grlhf reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationDefaults {
    /// Sample (with the settings below) rather than decode greedily.
    #[serde(default)]
    pub do_sample: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
}

impl GenerationDefaults {
    /// The directory's `generation_config.json`, if it has one (a malformed one is an error
    /// with its line and column).
    pub fn from_dir(dir: &Path) -> Result<Option<GenerationDefaults>> {
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let defaults: GenerationDefaults =
            serde_json::from_str(&text).map_err(|e| ModelError::ConfigParse {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let bad = |field: &str, value: String| ModelError::ConfigValue {
            path: path.clone(),
            field: field.to_string(),
            message: format!("{value} is out of range"),
        };
        if let Some(p) = defaults.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(bad("top_p", format!("{p} (must be in (0, 1])")));
        }
        if let Some(k) = defaults.top_k.filter(|k| *k < 0) {
            return Err(bad("top_k", format!("{k} (must be >= 0)")));
        }
        if let Some(t) = defaults
            .temperature
            .filter(|t| !(t.is_finite() && *t >= 0.0))
        {
            return Err(bad("temperature", format!("{t} (must be >= 0)")));
        }
        if defaults.do_sample == Some(true) && defaults.temperature == Some(0.0) {
            return Err(bad("temperature", "0 with do_sample".into()));
        }
        if let Some(r) = defaults
            .repetition_penalty
            .filter(|r| !(r.is_finite() && *r > 0.0))
        {
            return Err(bad("repetition_penalty", format!("{r} (must be > 0)")));
        }
        Ok(Some(defaults))
    }

    /// The decoding the file asks for: sampling with its temperature (1 when unset), top-p and
    /// top-k when `do_sample` is true, else greedy; its repetition penalty either way (a
    /// penalty of exactly 1 is no penalty). transformers ignores top-p 1 and top-k 0, and so
    /// does this.
    pub fn sampling(&self) -> SamplingParams {
        let repetition_penalty = self.repetition_penalty.filter(|&r| r != 1.0);
        if self.do_sample != Some(true) {
            return SamplingParams {
                repetition_penalty,
                ..SamplingParams::greedy()
            };
        }
        SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_k: self.top_k.filter(|&k| k > 0),
            top_p: self.top_p.filter(|&p| p < 1.0),
            repetition_penalty,
        }
    }

    /// The end-of-sequence ids it names (empty when none).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_5_instruct_defaults_sample_with_its_settings_and_stop_on_both_ids() {
        // The keys and values of Qwen2.5-0.5B-Instruct's generation_config.json.
        let text = r#"{"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true,
            "eos_token_id": [151645, 151643], "repetition_penalty": 1.1, "temperature": 0.7,
            "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"}"#;
        let d: GenerationDefaults = serde_json::from_str(text).unwrap();
        assert_eq!(
            d.sampling(),
            SamplingParams {
                temperature: 0.7,
                top_k: Some(20),
                top_p: Some(0.8),
                repetition_penalty: Some(1.1),
            }
        );
        assert_eq!(d.eos_token_ids(), vec![151645, 151643]);
        let greedy: GenerationDefaults =
            serde_json::from_str(r#"{"eos_token_id": 2, "temperature": 0.7}"#).unwrap();
        assert!(greedy.sampling().is_greedy());
        assert_eq!(greedy.eos_token_ids(), vec![2]);
    }

    #[test]
    fn a_bad_generation_config_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"do_sample": true, "top_p": 2.0}"#,
        )
        .unwrap();
        let err = GenerationDefaults::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("generation_config.json") && err.contains("top_p"),
            "{err}"
        );
        std::fs::write(dir.path().join("generation_config.json"), "{").unwrap();
        let err = GenerationDefaults::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("generation_config.json:1:"), "{err}");
    }
}
