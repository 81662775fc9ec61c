//! The grounding check tells a model that uses its image from one that does not.
//!
//! - The world's image processor maps the scene background to zero, so a blank image carries no
//!   signal and objects carry all of it (the fix for the vision tower's collapse), in 9 tokens.
//! - A tiny policy warm-started from scratch uses its image: an image swap changes its answers.
//! - The same policy with its vision merger zeroed receives every image as the same tokens: the
//!   check calls it blind, and its blind twin (evaluated on blank images) too.

use grlhf::grounding::{blank_prompts, policy_grounding, GroundingSettings};
use grlhf::warm_start::{run_sft, world_eval_prompts, SftRequest, Target};
use grlhf_actors::sft::SftConfig;
use grlhf_actors::vl_engine::{world_processor_config, VlEngine};
use grlhf_models::image_processor::{preprocess, ImageProcessorConfig};

fn processor() -> ImageProcessorConfig {
    serde_json::from_value(world_processor_config()).unwrap()
}

#[test]
fn the_world_processor_maps_the_background_to_zero_and_a_scene_to_one_token_per_cell() {
    let config = processor();
    let scene = world_eval_prompts(0, 1).unwrap()[0].image.clone().unwrap();
    let blank = grlhf::grounding::blank_like(&scene).unwrap();
    let blank = preprocess(&[(*blank).clone()], &config).unwrap();
    let max = blank.pixel_values.abs().max().double_value(&[]);
    // 8-bit rounding of the mean leaves at most half a level: 0.5/255/0.26 ≈ 0.008.
    assert!(max < 0.01, "a blank image normalises to {max}, not 0");
    let seen = preprocess(&[(*scene).clone()], &config).unwrap();
    assert!(seen.pixel_values.abs().max().double_value(&[]) > 1.0);
    // 112 px scenes become 84 px: 6×6 patches, merged 2×2 into 3×3 tokens — one per grid cell.
    assert_eq!(seen.image_grid_thw, vec![[1, 6, 6]]);
    assert_eq!(seen.tokens_per_image(2), vec![9]);
}

#[test]
fn a_warm_started_policy_sees_and_the_same_policy_with_its_vision_cut_is_called_blind() {
    let tmp = tempfile::tempdir().unwrap();
    let request = SftRequest {
        target: Target::Policy,
        model: "world:tiny".into(),
        out: tmp.path().to_path_buf(),
        config: SftConfig {
            steps: 300,
            ..SftConfig::default()
        },
        world_size: 2000,
        sft_quality: 1.0,
        eval_per_family: 4,
        eval_pairs: 1,
        max_new_tokens: 32,
        eval_split: grlhf_tasks::world::HeldOut::Evaluation,
        device: tch::Device::Cpu,
        evaluate: true,
        blind: false,
    };
    let report = run_sft(&request, |_| {}).unwrap();
    let seeing = report.grounding.expect("the warm start measures grounding");
    assert!(
        seeing.sees && seeing.image_swap_changed >= 0.1,
        "a warm-started policy ignores its image: {seeing:?}"
    );
    assert_eq!(seeing.items, 28);

    // Cut the vision path: the merger's output projection to zero, so every image arrives as the
    // same (zero) tokens. Answers can no longer depend on the image.
    let mut engine = VlEngine::load(&report.out, tch::Device::Cpu, tch::Kind::Float).unwrap();
    tch::no_grad(|| {
        for (name, mut tensor) in engine.model.var_store_mut().variables() {
            if name.contains("merger.mlp.2") {
                let _ = tensor.zero_();
            }
        }
    });
    let settings = GroundingSettings {
        max_new_tokens: 32,
        min_swap_changed: 0.1,
    };
    let prompts = world_eval_prompts(0, 4).unwrap();
    let cut = policy_grounding(&engine, None, &prompts, settings).unwrap();
    assert_eq!(cut.image_swap_changed, 0.0, "{cut:?}");
    assert!(!cut.sees);

    // As a blind twin, the cut model is evaluated on blank images: its score is its own, and
    // what the seeing policy gains over it is reported.
    let seeing_engine = VlEngine::load(&report.out, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let with_twin = policy_grounding(&seeing_engine, Some(&engine), &prompts, settings).unwrap();
    let twin =
        policy_grounding(&engine, None, &blank_prompts(&prompts).unwrap(), settings).unwrap();
    assert_eq!(with_twin.blind_average, Some(twin.average));
    assert_eq!(with_twin.average, seeing.average);
    assert_eq!(
        with_twin.gain_over_blind(),
        Some(seeing.average - twin.average)
    );
    assert_eq!(with_twin.blind_per_family.len(), 7);
}

/// A world model as grlhf writes it loads in `transformers` as it is, and both sides agree on the
/// world processor's pixels and on the vision tower's image tokens for a rendered scene.
#[test]
fn transformers_loads_a_world_model_and_agrees_on_its_image_tokens() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let size = grlhf_actors::vl_engine::WorldModelSize::preset("tiny").unwrap();
    grlhf_actors::vl_engine::init_world_model(tmp.path(), size, 0).unwrap();
    let record = grlhf::run::world_eval_records(0, 1).unwrap().remove(0);
    let scene = &record.world.as_ref().unwrap().scene;
    let png = tmp.path().join("scene.png");
    std::fs::write(&png, grlhf_tasks::render::render_png(scene)).unwrap();

    let engine = VlEngine::load(tmp.path(), tch::Device::Cpu, tch::Kind::Float).unwrap();
    let image = grlhf_models::image_processor::RgbImage::open(&png).unwrap();
    let processed = preprocess(&[image], &engine.processor).unwrap();
    let tokens = engine
        .model
        .encode_images(&processed.pixel_values, &processed.image_grid_thw)
        .unwrap();
    let ours: Vec<f32> = Vec::try_from(tokens.flatten(0, -1)).unwrap();
    let pixels: Vec<f32> = Vec::try_from(processed.pixel_values.flatten(0, -1)).unwrap();

    let script = r#"
import json, sys, torch
from PIL import Image
from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
model = Qwen2VLForConditionalGeneration.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
batch = Qwen2VLImageProcessor.from_pretrained(sys.argv[1])(images=[Image.open(sys.argv[2]).convert("RGB")], return_tensors="pt")
with torch.no_grad():
    out = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
out = getattr(out, "pooler_output", out)
print(json.dumps({"grid": batch["image_grid_thw"].tolist(), "pixels": batch["pixel_values"].flatten().tolist(), "tokens": out.flatten().tolist()}))
"#;
    let run = std::process::Command::new(&python)
        .args([
            "-c",
            script,
            tmp.path().to_str().unwrap(),
            png.to_str().unwrap(),
        ])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(theirs["grid"], serde_json::json!([[1, 6, 6]]));
    let max_diff = |a: &[f32], b: &serde_json::Value| {
        let b: Vec<f32> = serde_json::from_value(b.clone()).unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let pixel_diff = max_diff(&pixels, &theirs["pixels"]);
    assert!(pixel_diff < 1e-4, "pixels differ by {pixel_diff}");
    let token_diff = max_diff(&ours, &theirs["tokens"]);
    assert!(token_diff < 1e-4, "image tokens differ by {token_diff}");
}
