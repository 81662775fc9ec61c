//! `reproduce --seeds`: per-seed reports become mean ± SE across seeds, checked by hand, and
//! claims are judged on per-seed differences.

use std::collections::BTreeMap;

use grlhf::grounding::Grounding;
use grlhf::report::{Report, SweepPoint};
use grlhf::seeds::{aggregate, flatten};

fn report(seed: u64, base: f64, full: f64, rm: f64, rl_ood: f64, sft_ood: f64) -> Report {
    let mut r = Report {
        seed,
        ..Report::default()
    };
    r.policy_eval
        .insert("base".into(), BTreeMap::from([("average".into(), base)]));
    r.policy_eval.insert(
        "grm_rl_grouped".into(),
        BTreeMap::from([("average".into(), base + full)]),
    );
    r.policy_gain.insert("grm_rl_grouped".into(), full);
    r.policy_gain.insert("rm_grpo".into(), rm);
    for (model, ood) in [
        ("grm_rl", rl_ood),
        ("grm_sft", sft_ood),
        ("score_only_rm", 0.5),
    ] {
        r.rm_accuracy.insert(
            model.into(),
            BTreeMap::from([
                ("in_dist".into(), 0.8),
                ("ood_combo".into(), ood),
                ("ood_error".into(), ood),
                ("ood_family".into(), ood),
            ]),
        );
    }
    r.grounding.insert(
        "policy".into(),
        Grounding {
            image_swap_changed: 0.1 * seed as f64,
            average: base,
            blind_average: Some(base - 5.0),
            ..Grounding::default()
        },
    );
    r.sweep = vec![
        SweepPoint {
            n: 2,
            variant: "grm_rl_grouped".into(),
            average: 0.0,
            gain: 1.0,
        },
        SweepPoint {
            n: 4,
            variant: "grm_rl_grouped".into(),
            average: 0.0,
            gain: 1.0 + 2.0 * seed as f64,
        },
    ];
    r.policy_scores.insert("base".into(), vec![1.0, 2.0]);
    r
}

#[test]
fn every_number_is_averaged_across_seeds_with_its_standard_error() {
    let reports = vec![
        report(1, 40.0, 2.0, 1.0, 0.70, 0.60),
        report(2, 50.0, 4.0, 1.0, 0.72, 0.61),
        report(3, 60.0, 9.0, 1.0, 0.74, 0.62),
    ];
    let a = aggregate(&[1, 2, 3], &reports, vec![]);
    // Base average 40, 50, 60: mean 50, sample SD 10, SE 10/√3.
    let base = &a.numbers["policy_eval.base.average"];
    assert_eq!(base.mean, 50.0);
    assert!((base.se - 10.0 / 3f64.sqrt()).abs() < 1e-12);
    assert_eq!(base.values, vec![40.0, 50.0, 60.0]);
    // Gains 2, 4, 9: mean 5, SD √13, SE √(13/3).
    let gain = &a.numbers["policy_gain.grm_rl_grouped"];
    assert_eq!(gain.mean, 5.0);
    assert!((gain.se - (13.0f64 / 3.0).sqrt()).abs() < 1e-12);
    // Nested maps, grounding and the sweep are flattened by path; per-prompt arrays are not.
    assert!((a.numbers["grounding.policy.image_swap_changed"].mean - 0.2).abs() < 1e-12);
    assert_eq!(a.numbers["grounding.policy.blind_average"].mean, 45.0);
    assert_eq!(a.numbers["sweep.grm_rl_grouped.n4.gain"].mean, 5.0);
    assert!(!flatten(&reports[0])
        .keys()
        .any(|k| k.starts_with("policy_scores")));
    assert!(!a.numbers.contains_key("seed"));

    let claim = |id: &str| a.claims.iter().find(|c| c.id == id).unwrap();
    // (b): full − rm gains per seed 1, 3, 8: mean 4, SD √13, SE 2.08 → 4 < 2·2.08, within noise.
    assert_eq!(claim("b").holds, Some(true));
    assert_eq!(claim("b").beyond_noise, Some(false));
    // (a): GRM+RL − GRM+SFT OOD 0.10, 0.11, 0.12: mean 0.11, SE 0.0058 → beyond noise.
    assert_eq!(claim("a").holds, Some(true));
    assert_eq!(claim("a").beyond_noise, Some(true));
    // (c): slopes 1, 2, 3 per candidate: holds, mean 2 > 2·SE (0.577).
    assert_eq!(claim("c").holds, Some(true));
    assert_eq!(claim("c").beyond_noise, Some(true));
    // The oracle reference was not run: not measured, not guessed.
    assert_eq!(claim("rl").holds, None);
}

#[test]
fn one_seed_is_never_called_beyond_noise() {
    let a = aggregate(&[7], &[report(7, 40.0, 2.0, 1.0, 0.7, 0.6)], vec![]);
    assert_eq!(a.numbers["policy_eval.base.average"].se, 0.0);
    for c in a.claims.iter().filter(|c| c.holds.is_some()) {
        assert_eq!(c.beyond_noise, None, "{}", c.id);
    }
    assert!(a.markdown("t").contains("| base | 40.0 ± 0.0 |"));
}
