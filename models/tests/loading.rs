//! Checkpoint loading: round trips, dtypes, and every kind of bad checkpoint giving an error
//! that names the tensor, field or file (never a panic or a silently zero parameter).

mod support;

use std::path::Path;

use grlhf_models::weights::{decode_safetensors, encode_safetensors, read_tensors, save_tensors};
use grlhf_models::{Config, PositionIds, Qwen2ForCausalLM};
use support::*;
use tch::{Device, Kind, Tensor};

fn copy_case(name: &str, to: &Path) {
    let from = fixtures().join("qwen2").join(name);
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    Qwen2ForCausalLM::load(dir, Device::Cpu, Kind::Float)
        .expect_err("loading should fail")
        .to_string()
}

fn logits(model: &Qwen2ForCausalLM, tokens: &[i64]) -> Tensor {
    let input = Tensor::from_slice(tokens)
        .unsqueeze(0)
        .to_device(model.device());
    let pos = PositionIds::sequential(1, tokens.len() as i64, 0, model.device());
    tch::no_grad(|| model.forward(&input, &pos, None, None)).unwrap()
}

/// Rewrites `model.safetensors` of `dir` through `edit`.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = read_tensors(&path).unwrap();
    edit(&mut tensors);
    save_tensors(&tensors, &path).unwrap();
}

#[test]
fn save_then_load_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(5);
    let config = Config::from_file(fixtures().join("qwen2/gqa_untied_bf16/config.json")).unwrap();
    for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
        let model = Qwen2ForCausalLM::new(&config, Device::Cpu, kind).unwrap();
        model.save(dir.path()).unwrap();
        let loaded = Qwen2ForCausalLM::load(dir.path(), Device::Cpu, kind).unwrap();
        assert_eq!(loaded.kind(), kind);
        let err = max_abs_diff(&logits(&model, &[3, 4, 5]), &logits(&loaded, &[3, 4, 5]));
        assert_eq!(err, 0.0, "{kind:?}: reloaded model differs");
    }
}

/// Tensors whose memory is not one plain block: encoding reads each tensor's bytes in place,
/// so layouts other than a contiguous tensor at the start of its storage must come out as
/// their values, not as their storage.
fn awkward_tensors() -> Vec<(String, Tensor)> {
    tch::manual_seed(9);
    let base = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
    vec![
        ("transposed".into(), base.tr()),
        ("offset_rows".into(), base.narrow(0, 2, 3)),
        ("strided_column".into(), base.select(1, 3)),
        ("bf16".into(), base.to_kind(Kind::BFloat16)),
        ("ids".into(), Tensor::arange(7, (Kind::Int64, Device::Cpu))),
        (
            "empty".into(),
            Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
        ),
        ("scalar".into(), Tensor::from(2.5f32)),
    ]
}

fn assert_same_tensors(original: &[(String, Tensor)], decoded: &[(String, Tensor)]) {
    assert_eq!(decoded.len(), original.len());
    for (name, tensor) in original {
        let (_, got) = decoded.iter().find(|(n, _)| n == name).expect(name);
        assert_eq!(got.size(), tensor.size(), "{name}: shape");
        assert_eq!(got.kind(), tensor.kind(), "{name}: dtype");
        assert!(got.equal(tensor), "{name}: values differ");
    }
}

#[test]
fn encoding_and_saving_keep_any_layout_exactly() {
    let tensors = awkward_tensors();
    let bytes = encode_safetensors(&tensors, Path::new("memory")).unwrap();
    assert_same_tensors(
        &tensors,
        &decode_safetensors(&bytes, Path::new("memory")).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("awkward.safetensors");
    save_tensors(&tensors, &path).unwrap();
    assert_same_tensors(&tensors, &read_tensors(&path).unwrap());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "file and memory bytes differ"
    );
}

#[test]
fn f16_and_bf16_track_f32_logits() {
    let dir = fixtures().join("qwen2/gqa_tied_f32");
    let want = logits(
        &Qwen2ForCausalLM::load(&dir, Device::Cpu, Kind::Float).unwrap(),
        &[7, 8, 9, 10],
    );
    for kind in [Kind::Half, Kind::BFloat16] {
        let got = logits(
            &Qwen2ForCausalLM::load(&dir, Device::Cpu, kind).unwrap(),
            &[7, 8, 9, 10],
        );
        let err = max_abs_diff(&got, &want);
        assert!(err < 0.1, "{kind:?} drifts from f32 by {err}");
        assert!(
            err > 0.0,
            "{kind:?} gave bit-identical logits: dtype not applied?"
        );
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    edit_weights(dir.path(), |t| {
        t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight")
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("`model.layers.1.mlp.up_proj.weight` is missing"),
        "{err}"
    );
}

#[test]
fn extra_tensor_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    edit_weights(dir.path(), |t| {
        t.push((
            "model.layers.9.bogus".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ))
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("unexpected tensor `model.layers.9.bogus`")
            && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    edit_weights(dir.path(), |t| {
        for (name, tensor) in t.iter_mut() {
            if name == "model.norm.weight" {
                *tensor = Tensor::ones([63], (Kind::BFloat16, Device::Cpu));
            }
        }
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("`model.norm.weight`") && err.contains("[63]") && err.contains("[64]"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 100, 64, 5] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("model.safetensors") && err.contains("not a valid safetensors"),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn sharded_index_pointing_at_a_missing_shard_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("mha_untied_f32_sharded", dir.path());
    std::fs::remove_file(dir.path().join("model-00003-of-00012.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model-00003-of-00012.safetensors") && err.contains("weight_map"),
        "{err}"
    );
}

#[test]
fn config_problems_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("Qwen2ForCausalLM", "MistralForCausalLM"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json")
            && err.contains("`architectures`")
            && err.contains("MistralForCausalLM"),
        "{err}"
    );
    std::fs::write(&path, "{\"vocab_size\": 10,\n \"hidden_size\": \"big\"}").unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("config.json:2:"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn missing_weights_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("gqa_untied_bf16", dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("no model.safetensors"), "{err}");
}
