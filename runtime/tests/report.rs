//! The report's arithmetic: correlation, slope, accuracy from verdicts, and the claims' verdicts
//! follow the numbers they are given (both ways).

use std::collections::BTreeMap;

use grlhf::report::{slope, slope_standard_error, Report, SweepPoint};
use grlhf::reward_model_eval::{pearson, PairAccuracy, PairVerdict};

#[test]
fn pearson_and_slope_match_hand_values() {
    let x = [1.0, 2.0, 3.0, 4.0];
    assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
    assert!((pearson(&x, &[8.0, 6.0, 4.0, 2.0]).unwrap() + 1.0).abs() < 1e-12);
    // x = 1..4, y = 1, 3, 2, 4: r = 0.8.
    assert!((pearson(&x, &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(
        pearson(&x, &[5.0; 4]),
        None,
        "a constant side has no correlation"
    );
    assert_eq!(pearson(&[1.0], &[1.0]), None);
    assert!((slope(&[(2.0, 1.0), (4.0, 2.0), (8.0, 4.0)]).unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(slope(&[(3.0, 1.0), (3.0, 2.0)]), None);
    // Points on a line have no residual; y = 1, 3, 2, 4 over x = 1..4: slope 0.8, residuals
    // −0.3, 0.9, −0.9, 0.3 (sum of squares 1.8), Sxx = 5 → SE = sqrt(1.8 / 2 / 5).
    assert_eq!(
        slope_standard_error(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]),
        Some(0.0)
    );
    let se = slope_standard_error(&[(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0)]).unwrap();
    assert!((se - (1.8f64 / 2.0 / 5.0).sqrt()).abs() < 1e-12, "{se}");
}

fn verdict(preferred: u8, s1: Option<f64>, s2: Option<f64>) -> PairVerdict {
    PairVerdict {
        model: "grm".into(),
        split: "in_dist".into(),
        pair: 0,
        preferred,
        score_1: s1,
        score_2: s2,
        judgment: String::new(),
    }
}

#[test]
fn ties_and_unparsed_judgments_count_as_wrong() {
    let verdicts = [
        verdict(1, Some(8.0), Some(3.0)), // right
        verdict(2, Some(8.0), Some(3.0)), // wrong
        verdict(2, Some(5.0), Some(5.0)), // tie: wrong
        verdict(1, None, None),           // unparsed: wrong
    ];
    let a = PairAccuracy::of(&verdicts);
    assert_eq!(a.pairs, 4);
    assert_eq!(a.accuracy, 0.25);
    assert_eq!(a.parsed, 0.75);
}

fn accuracies(in_dist: f64, ood: f64) -> BTreeMap<String, f64> {
    [
        ("in_dist", in_dist),
        ("ood_combo", ood),
        ("ood_error", ood),
        ("ood_family", ood),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn report(rl_ood: f64, full_gain: f64, gains_by_n: &[(usize, f64)]) -> Report {
    let mut r = Report::default();
    r.rm_accuracy
        .insert("grm_rl".into(), accuracies(0.7, rl_ood));
    r.rm_accuracy.insert("grm_sft".into(), accuracies(0.7, 0.6));
    r.rm_accuracy
        .insert("score_only_rm".into(), accuracies(0.8, 0.55));
    r.policy_gain.insert("grm_rl_grouped".into(), full_gain);
    r.policy_gain.insert("rm_grpo".into(), 2.0);
    for &(n, gain) in gains_by_n {
        r.sweep.push(SweepPoint {
            n,
            variant: "grm_rl_grouped".into(),
            average: 40.0 + gain,
            gain,
        });
    }
    r.check_claims();
    r
}

#[test]
fn claims_follow_the_numbers() {
    let holds = |r: &Report| r.claims.iter().map(|c| c.holds).collect::<Vec<_>>();
    let good = report(0.7, 5.0, &[(2, 1.0), (4, 2.0), (8, 3.0)]);
    assert_eq!(holds(&good), [Some(true); 3]);
    let bad = report(0.58, 1.0, &[(2, 3.0), (4, 2.0), (8, 1.0)]);
    assert_eq!(holds(&bad), [Some(false); 3]);
    let unmeasured = report(0.7, 5.0, &[]);
    assert_eq!(holds(&unmeasured)[2], None);
    assert!(good.terminal_summary().contains("claim (a) reproduced"));
    assert!(bad.markdown("t").contains("**not reproduced**"));
    assert!(bad.markdown("t").contains("| no (within noise) |"));
}
