//! Fused q/k/v and gate/up projections (`grlhf_models::fused_linear`): inference through the one
//! shared buffer gives the same bits as training's separate projections, the var store keeps
//! Hugging Face's parameters without a second copy, and every in-place write (loading, an
//! optimiser step) reaches the fused path. On the device `GRLHF_TEST_DEVICE` names (the CPU by
//! default): bit for bit on the CPU, to rounding on a GPU (cuBLAS picks kernels per shape).

mod support;

use grlhf_models::generation::left_pad;
use grlhf_models::{generate, Config, GenerationConfig, PositionIds, Qwen2ForCausalLM};
use support::device;
use tch::{Device, Kind, Tensor};

fn config(tie: bool) -> Config {
    serde_json::from_value(serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 10000.0, "tie_word_embeddings": tie
    }))
    .unwrap()
}

fn model(kind: Kind) -> Qwen2ForCausalLM {
    tch::manual_seed(5);
    Qwen2ForCausalLM::new(&config(false), device(), kind).unwrap()
}

/// Logits of a left-padded batch: with gradients recorded (separate projections) or not (fused).
fn padded_logits(model: &Qwen2ForCausalLM, record_grad: bool) -> Tensor {
    let prompts = vec![vec![5i64, 17, 3], vec![9, 8, 7, 6, 5, 4], vec![42]];
    let (ids, mask) = left_pad(&prompts, 6, device()).unwrap();
    let positions = PositionIds::from_attention_mask(&mask);
    let run = || model.forward(&ids, &positions, Some(&mask), None).unwrap();
    if record_grad {
        let logits = run();
        assert!(logits.requires_grad(), "grad mode should build a graph");
        logits.detach()
    } else {
        tch::no_grad(run)
    }
}

/// Equal bits on the CPU; on a GPU, equal to the parity tests' rounding bounds.
fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    let bound = if a.kind() == Kind::BFloat16 {
        2e-2
    } else {
        1e-4
    };
    let (a, b) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
    match device() {
        Device::Cpu => a.equal(&b),
        _ => (a - b).abs().max().double_value(&[]) <= bound,
    }
}

#[test]
fn fused_inference_equals_separate_projections_bit_for_bit() {
    for kind in [Kind::Float, Kind::BFloat16] {
        let model = model(kind);
        let fused = padded_logits(&model, false);
        let separate = padded_logits(&model, true);
        assert!(
            same_bits(&fused, &separate),
            "{kind:?}: max |Δ| = {}",
            (fused.to_kind(Kind::Float) - separate.to_kind(Kind::Float))
                .abs()
                .max()
                .double_value(&[])
        );
    }
}

#[test]
fn parameters_keep_their_names_and_share_one_buffer() {
    let model = model(Kind::Float);
    let vars = model.var_store().variables();
    let var = |name: &str| &vars[&format!("model.layers.1.{name}.weight")];
    for name in [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
    ] {
        assert!(var(name).requires_grad(), "{name} is no longer trainable");
        assert!(var(name).is_contiguous(), "{name}");
    }
    // k follows q, v follows k, up follows gate: slices of one buffer, not copies.
    let end = |t: &Tensor| t.data_ptr() as usize + t.numel() * 4;
    assert_eq!(
        end(var("self_attn.q_proj")),
        var("self_attn.k_proj").data_ptr() as usize
    );
    assert_eq!(
        end(var("self_attn.k_proj")),
        var("self_attn.v_proj").data_ptr() as usize
    );
    assert_eq!(
        end(var("mlp.gate_proj")),
        var("mlp.up_proj").data_ptr() as usize
    );
    let bias = |name: &str| &vars[&format!("model.layers.1.self_attn.{name}.bias")];
    assert_eq!(end(bias("q_proj")), bias("k_proj").data_ptr() as usize);
}

#[test]
fn in_place_writes_reach_the_fused_path() {
    let model = model(Kind::Float);
    let before = padded_logits(&model, false);
    // What an optimiser step or a weight update does: write into the parameters in place.
    tch::no_grad(|| {
        for (name, mut var) in model.var_store().variables() {
            if name.contains("v_proj") || name.contains("up_proj") || name.contains("k_proj.bias") {
                let _ = var.g_add_scalar_(0.05);
            }
        }
    });
    let fused = padded_logits(&model, false);
    assert!(
        !same_bits(&before, &fused),
        "the update did not reach the fused weights"
    );
    assert!(same_bits(&fused, &padded_logits(&model, true)));

    // Loading a checkpoint copies into the parameters: a loaded model infers as the saved one.
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = Qwen2ForCausalLM::load(dir.path(), device(), Kind::Float).unwrap();
    assert!(same_bits(&padded_logits(&loaded, false), &fused));
    let greedy = GenerationConfig::greedy(6);
    assert_eq!(
        generate(&loaded, &[vec![3, 1, 4]], &greedy).unwrap(),
        generate(&model, &[vec![3, 1, 4]], &greedy).unwrap()
    );
}

#[test]
fn a_var_store_recast_after_construction_is_refused_for_inference() {
    let mut model = model(Kind::Float);
    model.var_store_mut().set_kind(Kind::Double);
    let ids = Tensor::from_slice(&[3i64, 9, 27])
        .unsqueeze(0)
        .to_device(device());
    let positions = PositionIds::sequential(1, 3, 0, device());
    let err = tch::no_grad(|| model.forward(&ids, &positions, None, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no longer share") && err.contains("set_kind"),
        "{err}"
    );
}
