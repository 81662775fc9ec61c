//! Grouped comparison: pairs judged, incomplete responses left out, and each aggregation rule.

use grlhf_actors::grouped_comparison::{
    aggregate, pairs, Aggregation, PairOrder, NO_COMPARISON_REWARD,
};

fn matrix(n: usize, f: impl Fn(usize, usize) -> Option<f32>) -> Vec<Vec<Option<f32>>> {
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if i == j { None } else { f(i, j) })
                .collect()
        })
        .collect()
}

/// `scores` with every judgment involving response `r` unparsed.
fn without_judgments_of(r: usize, mut scores: Vec<Vec<Option<f32>>>) -> Vec<Vec<Option<f32>>> {
    for row in scores.iter_mut() {
        row[r] = None;
    }
    scores[r].iter_mut().for_each(|s| *s = None);
    scores
}

#[test]
fn ordered_pairs_cover_both_orders_and_skip_incomplete_responses() {
    let all = [true; 4];
    assert_eq!(pairs(4, PairOrder::Ordered, &all).len(), 12); // n(n−1)
    assert_eq!(pairs(4, PairOrder::Unordered, &all).len(), 6);
    let some = [true, false, true, true];
    let p = pairs(4, PairOrder::Ordered, &some);
    assert_eq!(p.len(), 6);
    assert!(p.iter().all(|&(i, j)| i != 1 && j != 1));
}

#[test]
fn mean_rule_is_the_mean_score_received_scaled_to_unit() {
    // Response i always gets score 1 + 3i against anyone.
    let scores = matrix(3, |i, _| Some(1.0 + 3.0 * i as f32));
    let r = aggregate(&scores, &[true; 3], Aggregation::Mean);
    assert_eq!(r, vec![0.0, 1.0 / 3.0, 2.0 / 3.0]);
    // An excluded response gets 0 and its scores are ignored; a pair with no parsed judgment
    // contributes nothing.
    let mut scores = matrix(3, |_, _| Some(10.0));
    scores[0][2] = None;
    let r = aggregate(&scores, &[true, true, false], Aggregation::Mean);
    assert_eq!(r, vec![1.0, 1.0, 0.0]);
}

#[test]
fn a_finished_response_with_no_usable_comparison_is_neutral_and_ranks_above_unfinished_ones() {
    for rule in [
        Aggregation::Mean,
        Aggregation::Borda,
        Aggregation::RankedPairs,
    ] {
        // Every judgment failed to parse: no evidence, so the middle of the scale for both.
        let none = matrix(2, |_, _| None);
        assert_eq!(
            aggregate(&none, &[true; 2], rule),
            vec![NO_COMPARISON_REWARD; 2],
            "{rule:?}"
        );
        // The only finished response in its group: above the unfinished ones, which get 0.
        let scores = matrix(3, |_, _| Some(7.0));
        let r = aggregate(&scores, &[false, true, false], rule);
        assert_eq!(r, vec![0.0, NO_COMPARISON_REWARD, 0.0], "{rule:?}");
        // Response 2's judgments all failed to parse while 0 and 1 were compared: 2 is neutral,
        // 0 and 1 keep the rewards their comparison gave, and nothing ties with the unfinished 3.
        let scores =
            without_judgments_of(2, matrix(4, |i, _| Some(if i == 0 { 9.0 } else { 3.0 })));
        let r = aggregate(&scores, &[true, true, true, false], rule);
        assert_eq!(r[2], NO_COMPARISON_REWARD, "{rule:?}");
        assert_eq!(r[3], 0.0, "{rule:?}");
        assert!(r[0] > r[1], "{rule:?}: {r:?}");
    }
    // The Mean rule on that last group, by hand: 0 got 9 → (9−1)/9, 1 got 3 → (3−1)/9.
    let scores = without_judgments_of(2, matrix(4, |i, _| Some(if i == 0 { 9.0 } else { 3.0 })));
    assert_eq!(
        aggregate(&scores, &[true, true, true, false], Aggregation::Mean),
        vec![8.0 / 9.0, 2.0 / 9.0, NO_COMPARISON_REWARD, 0.0]
    );
}

#[test]
fn borda_and_ranked_pairs_order_a_clear_winner_first() {
    // 0 beats 1 beats 2, and 0 beats 2.
    let strength = [9.0, 5.0, 2.0];
    let scores = matrix(3, |i, _| Some(strength[i]));
    assert_eq!(
        aggregate(&scores, &[true; 3], Aggregation::Borda),
        vec![1.0, 0.5, 0.0]
    );
    assert_eq!(
        aggregate(&scores, &[true; 3], Aggregation::RankedPairs),
        vec![1.0, 0.5, 0.0]
    );
}

#[test]
fn ranked_pairs_breaks_a_cycle_at_its_weakest_link() {
    // A rock-paper-scissors cycle: 0 > 1 by 6, 1 > 2 by 4, 2 > 0 by 2. Ranked pairs locks
    // 0 > 1 and 1 > 2, then skips 2 > 0 (it would close the cycle): order 0, 1, 2.
    let mut scores = matrix(3, |_, _| Some(5.0));
    let mut set = |i: usize, j: usize, m: f32| {
        scores[i][j] = Some(5.0 + m / 2.0);
        scores[j][i] = Some(5.0 - m / 2.0);
    };
    set(0, 1, 6.0);
    set(1, 2, 4.0);
    set(2, 0, 2.0);
    assert_eq!(
        aggregate(&scores, &[true; 3], Aggregation::RankedPairs),
        vec![1.0, 0.5, 0.0]
    );
    // Borda sees one win each: a tie.
    assert_eq!(
        aggregate(&scores, &[true; 3], Aggregation::Borda),
        vec![0.5, 0.5, 0.5]
    );
}
