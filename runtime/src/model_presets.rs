//! Random Qwen2 configurations by name, for demos, tests and benchmarks when no checkpoint is
//! at hand (`grlhf init-model --preset NAME`).

use anyhow::{bail, Result};
use grlhf_models::Config;

/// Preset names and what they are for.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "tiny",
        "2 layers, hidden 64, vocab 512: instant on a CPU (~0.1M parameters)",
    ),
    (
        "small",
        "4 layers, hidden 256, vocab 4096: a few million parameters",
    ),
    (
        "100m",
        "12 layers, hidden 768, vocab 32000: ~100M parameters, the CPU benchmark size",
    ),
    (
        "0.5b",
        "Qwen2-0.5B's shape: 24 layers, hidden 896, vocab 151936 (~0.5B parameters)",
    ),
];

/// The configuration of a preset.
pub fn preset(name: &str) -> Result<Config> {
    let (vocab, hidden, inter, layers, heads, kv, tied) = match name {
        "tiny" => (512, 64, 128, 2, 4, 2, true),
        "small" => (4096, 256, 688, 4, 8, 2, true),
        "100m" => (32000, 768, 2048, 12, 12, 2, true),
        "0.5b" => (151936, 896, 4864, 24, 14, 2, true),
        other => bail!(
            "unknown preset `{other}`; known presets: {}",
            PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
        ),
    };
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    Ok(serde_json::from_value(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_sized_as_described() {
        for (name, _) in PRESETS {
            let c = preset(name).unwrap();
            c.validate(std::path::Path::new(name)).unwrap();
        }
        let n = preset("100m").unwrap().num_parameters();
        assert!(
            (90_000_000..130_000_000).contains(&n),
            "100m preset has {n} parameters"
        );
        let n = preset("0.5b").unwrap().num_parameters();
        assert!(
            (450_000_000..550_000_000).contains(&n),
            "0.5b preset has {n} parameters"
        );
        assert!(preset("huge").unwrap_err().to_string().contains("tiny"));
    }
}
