//! GRPO arithmetic against hand-computed values.

use grlhf_actors::grpo::{group_advantages, grpo_loss, GrpoConfig};
use grlhf_actors::schedule::LrSchedule;
use tch::{Kind, Tensor};

fn t(rows: &[&[f32]]) -> Tensor {
    let cols = rows[0].len() as i64;
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, cols])
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
}

#[test]
fn advantages_are_group_normalised() {
    let a = group_advantages(&[1.0, 0.0, 0.0, 1.0], true);
    for (x, e) in a.iter().zip([1.0, -1.0, -1.0, 1.0]) {
        close(*x as f64, e);
    }
    assert_eq!(group_advantages(&[1.0, 0.0], false), vec![0.5, -0.5]);
    assert_eq!(
        group_advantages(&[0.3, 0.3, 0.3], true),
        vec![0.0, 0.0, 0.0]
    );
}

#[test]
fn on_policy_loss_is_minus_the_mean_advantage_and_its_gradient_is_the_policy_gradient() {
    let logp = t(&[&[-1.0, -2.0], &[-0.5, 0.0]]).set_requires_grad(true);
    let behaviour = logp.detach();
    let adv = Tensor::from_slice(&[2.0f32, -1.0]);
    let mask = t(&[&[1.0, 1.0], &[1.0, 0.0]]);
    let config = GrpoConfig {
        kl_beta: 0.0,
        ..GrpoConfig::default()
    };
    let out = grpo_loss(&logp, &behaviour, None, &adv, &mask, 3.0, &config);
    // ratio = 1: loss = −(2 + 2 − 1) / 3.
    close(out.loss.double_value(&[]), -1.0);
    out.loss.backward();
    let grad = logp.grad();
    // d loss / d logp = −A / N on real tokens, 0 on padding.
    let expected = [-2.0 / 3.0, -2.0 / 3.0, 1.0 / 3.0, 0.0];
    for (i, e) in expected.iter().enumerate() {
        close(grad.view([-1]).double_value(&[i as i64]), *e);
    }
    close(out.clip_fraction, 0.0);
}

#[test]
fn ratios_are_clipped_asymmetrically() {
    // ratio = e^0.5 ≈ 1.65 with a positive advantage: clipped at 1 + ε_high.
    let logp = t(&[&[0.0]]).set_requires_grad(true);
    let behaviour = t(&[&[-0.5]]);
    let adv = Tensor::from_slice(&[1.0f32]);
    let mask = t(&[&[1.0]]);
    let config = GrpoConfig {
        kl_beta: 0.0,
        clip_eps: 0.2,
        clip_eps_high: Some(0.28),
        ..GrpoConfig::default()
    };
    let out = grpo_loss(&logp, &behaviour, None, &adv, &mask, 1.0, &config);
    close(out.loss.double_value(&[]), -1.28);
    close(out.clip_fraction, 1.0);
    out.loss.backward();
    close(logp.grad().double_value(&[0, 0]), 0.0); // clipped: no gradient
                                                   // A negative advantage is not clipped above (the min keeps the unclipped term).
    let logp = t(&[&[0.0]]).set_requires_grad(true);
    let out = grpo_loss(
        &logp,
        &behaviour,
        None,
        &Tensor::from_slice(&[-1.0f32]),
        &mask,
        1.0,
        &config,
    );
    close(out.loss.double_value(&[]), 0.5f64.exp());
}

#[test]
fn k3_kl_is_zero_at_the_reference_and_positive_elsewhere() {
    let logp = t(&[&[-1.0, -2.0]]);
    let mask = t(&[&[1.0, 1.0]]);
    let zero = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
    let config = GrpoConfig {
        kl_beta: 0.5,
        ..GrpoConfig::default()
    };
    let same = grpo_loss(&logp, &logp, Some(&logp), &zero, &mask, 2.0, &config);
    close(same.kl, 0.0);
    let reference = t(&[&[-1.5, -1.0]]);
    let out = grpo_loss(&logp, &logp, Some(&reference), &zero, &mask, 2.0, &config);
    // k3 = e^d − d − 1 with d = ref − logp = (−0.5, 1.0).
    let k3 = |d: f64| d.exp() - d - 1.0;
    let expected = (k3(-0.5) + k3(1.0)) / 2.0;
    close(out.kl, expected);
    close(out.loss.double_value(&[]), 0.5 * expected);
}

#[test]
fn truncated_importance_weights_cap_stale_samples() {
    // Behaviour much less likely than the current policy: weight e^2 capped at 2.
    let logp = t(&[&[0.0]]).set_requires_grad(true);
    let behaviour = t(&[&[-2.0]]);
    let adv = Tensor::from_slice(&[1.0f32]);
    let mask = t(&[&[1.0]]);
    let config = GrpoConfig {
        kl_beta: 0.0,
        is_cap: Some(2.0),
        ..GrpoConfig::default()
    };
    let out = grpo_loss(&logp, &behaviour, None, &adv, &mask, 1.0, &config);
    close(out.loss.double_value(&[]), -2.0);
    out.loss.backward();
    close(logp.grad().double_value(&[0, 0]), -2.0);
}

#[test]
fn learning_rate_warms_up_then_decays_to_its_floor() {
    let s = LrSchedule {
        lr: 1.0,
        warmup_steps: 4,
        min_lr_ratio: 0.1,
    };
    close(s.at(0, 20), 0.25);
    close(s.at(3, 20), 1.0);
    close(s.at(4, 20), 1.0);
    assert!(s.at(10, 20) < 1.0 && s.at(10, 20) > 0.1);
    close(s.at(20, 20), 0.1);
}
