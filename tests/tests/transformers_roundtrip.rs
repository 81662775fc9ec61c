//! What grlhf writes, transformers reads: a fresh world model and the policy a run trained load
//! with `AutoModelForImageTextToText.from_pretrained` (so `config.json` names its model types
//! and carries no nulls), and give the same logits as grlhf for a prompt with an image.

use std::path::{Path, PathBuf};

use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::registry::Registry;
use grlhf_actors::vl_engine::VlEngine;
use grlhf_tests::fixtures::fixture;
use tch::{Device, Kind, Tensor};

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    python
}

/// transformers' logits for grlhf's own encoding of one world prompt (its token ids with the
/// image placeholders expanded, its pixels and grid), against grlhf's: the largest difference.
fn logits_gap(model: &Path) -> f64 {
    let engine = VlEngine::load(model, Device::Cpu, Kind::Float).unwrap();
    let record = grlhf::run::world_eval_records(0, 1).unwrap().remove(0);
    let spec = grlhf::run::policy_spec(record, "you answer questions about the image.").unwrap();
    let encoded = engine
        .encode(&spec.system, &spec.user, spec.image.as_deref())
        .unwrap();
    let pixels = encoded.pixel_values.as_ref().unwrap();
    let ours = tch::no_grad(|| {
        engine
            .model
            .forward(std::slice::from_ref(&encoded.prompt), Some(pixels))
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs.safetensors");
    let ids = Tensor::from_slice(&encoded.prompt.tokens).view([1, -1]);
    let grid: Vec<i64> = encoded.prompt.grids.iter().flatten().copied().collect();
    let grid = Tensor::from_slice(&grid).view([-1, 3]);
    Tensor::write_safetensors(
        &[
            ("input_ids", ids),
            ("pixel_values", pixels.shallow_clone()),
            ("image_grid_thw", grid),
        ],
        &inputs,
    )
    .unwrap();
    let output = dir.path().join("logits.safetensors");
    let script = r#"
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
inputs = load_file(sys.argv[2])
# What the processor returns beside input_ids: 1 on image tokens (transformers 5 wants it).
inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).long()
with torch.no_grad():
    logits = model(**inputs).logits
save_file({"logits": logits.contiguous()}, sys.argv[3])
"#;
    let run = std::process::Command::new(python())
        .args([
            "-c",
            script,
            model.to_str().unwrap(),
            inputs.to_str().unwrap(),
            output.to_str().unwrap(),
        ])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "transformers could not load {}: {}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs = Tensor::read_safetensors(&output).unwrap().remove(0).1;
    assert_eq!(theirs.size(), ours.size());
    (theirs - ours).abs().max().double_value(&[])
}

/// `config.json` as written: model types named, no nulls anywhere.
fn check_config(model: &Path, model_type: &str) {
    let text = std::fs::read_to_string(model.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["model_type"], model_type);
    assert_eq!(
        config["text_config"]["model_type"],
        format!("{model_type}_text")
    );
    assert_eq!(
        config["vision_config"]["model_type"],
        format!("{model_type}_vision")
    );
    assert!(!text.contains("null"), "{text}");
}

#[test]
fn a_hub_checkpoint_saved_again_by_grlhf_loads_in_transformers_with_the_same_logits() {
    // Qwen2-VL-2B's and Qwen2.5-VL-3B's config layouts as on the hub (tiny sizes), read by
    // grlhf and written again: the hub files' form is not kept, transformers' is.
    for (case, model_type) in [
        ("qwen2_vl_hub", "qwen2_vl"),
        ("qwen2_5_vl_hub", "qwen2_5_vl"),
    ] {
        let hub = fixture(case);
        let tmp = tempfile::tempdir().unwrap();
        let model = grlhf_models::qwen2_vl::Qwen2VlForConditionalGeneration::load(
            &hub,
            Device::Cpu,
            Kind::Float,
        )
        .unwrap();
        model.save(tmp.path()).unwrap();
        for file in ["tokenizer.json", "preprocessor_config.json"] {
            std::fs::copy(hub.join(file), tmp.path().join(file)).unwrap();
        }
        check_config(tmp.path(), model_type);
        let gap = logits_gap(tmp.path());
        assert!(gap < 1e-4, "{case} saved by grlhf: logits differ by {gap}");
    }
}

#[test]
fn a_fresh_world_model_and_a_trained_policy_load_in_transformers_with_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let size = grlhf_actors::vl_engine::WorldModelSize::preset("tiny").unwrap();
    grlhf_actors::vl_engine::init_world_model(&fresh, size, 0).unwrap();
    check_config(&fresh, "qwen2_vl");
    let gap = logits_gap(&fresh);
    assert!(gap < 1e-4, "a fresh world model: logits differ by {gap}");

    // Two learner steps move the weights; the run's `policy/` is what a user would deploy.
    let text = format!(
        r#"
mode = "sync"
steps = 2
run_dir = "{}"
group_size = 2
batch_groups = 2
[model]
policy = "{}"
[generator]
max_new_tokens = 4
[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
[learner]
lr = 1e-2
warmup_steps = 0
"#,
        tmp.path().join("run").display(),
        fresh.display()
    );
    let config = RunConfig::from_toml(&text, Path::new("roundtrip.toml")).unwrap();
    let outcome = match run(
        config,
        Path::new("roundtrip.toml"),
        Registry::with_builtins(),
        false,
    ) {
        Ok(outcome) => outcome,
        Err(e) => panic!("{e:#}"),
    };
    let policy = outcome.run_dir.join("policy");
    check_config(&policy, "qwen2_vl");
    let trained = VlEngine::load(&policy, Device::Cpu, Kind::Float).unwrap();
    let start = VlEngine::load(&fresh, Device::Cpu, Kind::Float).unwrap();
    let moved = trained
        .model
        .var_store()
        .variables()
        .iter()
        .any(|(name, t)| {
            let before = &start.model.var_store().variables()[name];
            (t - before).abs().max().double_value(&[]) > 0.0
        });
    assert!(moved, "training changed no weight");
    let gap = logits_gap(&policy);
    assert!(gap < 1e-4, "the trained policy: logits differ by {gap}");

    // The run's last checkpoint exported as a model directory: transformers loads it too, and
    // its weights are the final ones.
    let exported = tmp.path().join("exported");
    let used = grlhf::export::export(&outcome.run_dir, None, &exported).unwrap();
    assert!(used.ends_with("step-000002"), "{}", used.display());
    check_config(&exported, "qwen2_vl");
    for file in ["tokenizer.json", "preprocessor_config.json"] {
        assert!(exported.join(file).is_file(), "{file} not exported");
    }
    let from_checkpoint = VlEngine::load(&exported, Device::Cpu, Kind::Float).unwrap();
    for (name, t) in trained.model.var_store().variables() {
        let other = &from_checkpoint.model.var_store().variables()[&name];
        assert!(
            t.equal(other),
            "{name} differs between policy/ and the exported checkpoint"
        );
    }
    let gap = logits_gap(&exported);
    assert!(
        gap < 1e-4,
        "the exported checkpoint: logits differ by {gap}"
    );
    // A non-empty --out, or a step that was not kept, is refused by name.
    let err = grlhf::export::export(&outcome.run_dir, None, &exported).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    let err = grlhf::export::export(&outcome.run_dir, Some(7), &tmp.path().join("x")).unwrap_err();
    assert!(format!("{err:#}").contains("--step 7"), "{err:#}");
}
