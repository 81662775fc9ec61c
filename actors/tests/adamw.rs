//! grlhf's AdamW against tch's (libtorch's `torch::optim::AdamW`), and its state round trip:
//! a checkpoint resumes the same trajectory only if both hold.

use std::sync::Mutex;

use grlhf_actors::adamw::{AdamW, AdamWConfig};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The tests of this file run one at a time. Run concurrently in one process they diverged by
/// up to one learning rate in 4 runs of 10 — two identical trajectories computed on the same
/// thread disagreed after a few steps — while running each alone, or any number of copies of
/// the same trajectories on plain threads, never did; the cause is not found (see the issue
/// note). Exact agreement is what these tests are for, so they do not share the process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small model with two parameters and a loss that depends on both.
fn model(seed: i64) -> (nn::VarStore, Tensor, Tensor) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let w = root.randn("w", &[4, 3], 0.0, 1.0);
    let b = root.randn("b", &[3], 0.0, 1.0);
    (vs, w, b)
}

fn loss(w: &Tensor, b: &Tensor, step: i64) -> Tensor {
    tch::manual_seed(100 + step);
    let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
    (x.matmul(w) + b)
        .tanh()
        .pow_tensor_scalar(2)
        .mean(Kind::Float)
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn adamw_matches_tch() {
    let _serial = serial();
    let (vs_ref, w_ref, b_ref) = model(0);
    let (vs, w, b) = model(0);
    let mut reference = nn::AdamW {
        wd: 0.05,
        ..Default::default()
    }
    .build(&vs_ref, 1e-2)
    .unwrap();
    let mut ours = AdamW::new(
        &vs,
        AdamWConfig {
            weight_decay: 0.05,
            // tch's AdamW decays every parameter (one group); compare like with like.
            decay_all: true,
            ..Default::default()
        },
    );
    for step in 0..20 {
        let lr = 1e-2 * (1.0 - step as f64 / 40.0);
        reference.set_lr(lr);
        reference.zero_grad();
        loss(&w_ref, &b_ref, step).backward();
        reference.step();
        ours.zero_grad();
        loss(&w, &b, step).backward();
        ours.step(lr);
    }
    assert!(
        max_difference(&w, &w_ref) < 1e-6,
        "{}",
        max_difference(&w, &w_ref)
    );
    assert!(max_difference(&b, &b_ref) < 1e-6);
    assert!(
        max_difference(&w, &model(0).1) > 1e-3,
        "nothing was trained"
    );
}

#[test]
fn restored_moments_continue_the_same_trajectory() {
    let _serial = serial();
    let (vs, w, b) = model(1);
    let mut straight = AdamW::new(&vs, AdamWConfig::default());
    let (vs2, w2, b2) = model(1);
    let mut first = AdamW::new(&vs2, AdamWConfig::default());
    for step in 0..5 {
        for (opt, w, b) in [(&mut straight, &w, &b), (&mut first, &w2, &b2)] {
            opt.zero_grad();
            loss(w, b, step).backward();
            opt.step(1e-2);
        }
    }
    // "Resume": a fresh optimizer over the same weights, given the saved moments and steps.
    let saved = first.state_tensors();
    let saved: Vec<(String, Tensor)> = saved.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    let mut resumed = AdamW::new(&vs2, AdamWConfig::default());
    resumed.load_state(&saved, first.steps()).unwrap();
    for step in 5..10 {
        for (opt, w, b) in [(&mut straight, &w, &b), (&mut resumed, &w2, &b2)] {
            opt.zero_grad();
            loss(w, b, step).backward();
            opt.step(1e-2);
        }
    }
    assert_eq!(max_difference(&w, &w2), 0.0);
    assert_eq!(max_difference(&b, &b2), 0.0);
    // Zero moments instead would have drifted.
    let (vs3, w3, b3) = model(1);
    let mut cold = AdamW::new(&vs3, AdamWConfig::default());
    for step in 0..10 {
        if step == 5 {
            cold = AdamW::new(&vs3, AdamWConfig::default());
        }
        cold.zero_grad();
        loss(&w3, &b3, step).backward();
        cold.step(1e-2);
    }
    assert!(max_difference(&w, &w3) > 1e-4);
}

#[test]
fn state_that_does_not_fit_the_model_is_refused() {
    let _serial = serial();
    let (vs, _, _) = model(2);
    let mut opt = AdamW::new(&vs, AdamWConfig::default());
    let state = opt.state_tensors();
    let err = opt.load_state(&state[..3], 1).unwrap_err().to_string();
    assert!(err.contains("3 tensors"), "{err}");
    let mut wrong: Vec<(String, Tensor)> =
        state.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    wrong[0].1 = Tensor::zeros([7], (Kind::Float, Device::Cpu));
    let err = opt.load_state(&wrong, 1).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn gradient_clipping_scales_to_the_limit_like_torch() {
    let _serial = serial();
    let (vs, w, b) = model(3);
    let mut opt = AdamW::new(&vs, AdamWConfig::default());
    (loss(&w, &b, 0) * 1000.0).backward();
    let before = opt.clip_grad_norm(0.5);
    assert!(before > 0.5);
    let after = opt.grad_norm();
    assert!((after - 0.5).abs() < 1e-4, "{after}");
}

#[test]
fn weight_decay_skips_biases_norms_and_embeddings() {
    use grlhf_actors::adamw::is_decayed;
    assert!(is_decayed("model.layers.0.mlp.up_proj.weight", &[256, 128]));
    assert!(!is_decayed("model.layers.0.mlp.up_proj.bias", &[256]));
    assert!(!is_decayed("model.norm.weight", &[128]));
    assert!(!is_decayed("model.embed_tokens.weight", &[375, 128]));
    // With zero gradients only the decay moves a parameter: the matrix shrinks, the bias stays.
    let _serial = serial();
    let (vs, w, b) = model(0);
    let (w0, b0) = (w.copy(), b.copy());
    let mut opt = AdamW::new(
        &vs,
        AdamWConfig {
            weight_decay: 0.5,
            ..Default::default()
        },
    );
    (w.sum(Kind::Float) * 0.0 + b.sum(Kind::Float) * 0.0).backward();
    opt.step(0.1);
    assert!(max_difference(&w, &(&w0 * 0.95)) < 1e-7);
    assert_eq!(max_difference(&b, &b0), 0.0);
}
