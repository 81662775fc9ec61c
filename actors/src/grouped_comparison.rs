//! Grouped comparison: turning a GRM's pairwise scores within a group into one reward per
//! response.
//!
//! The judge compares ordered pairs (i, j) and writes `scores[i][j]`, the score response i got
//! when compared with j (and `scores[j][i]` from the same judgment). The paper's rule is the mean
//! of the scores a response received; Borda count and ranked pairs are there for comparison.
//! Incomplete responses (no stop token) are left out of every comparison and get 0; a pair
//! whose judgment did not parse contributes nothing. A finished response left with no usable
//! comparison (the only finished one in its group, or every judgment of it failed to parse) gets
//! [`NO_COMPARISON_REWARD`], the middle of the scale: nothing was learned about it, and it must
//! still rank above the unfinished responses, which get 0.

use serde::{Deserialize, Serialize};

/// How pairwise scores become rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The mean of the scores a response received, scaled to [0, 1] (the paper's rule).
    #[default]
    Mean,
    /// The share of its comparisons a response won (ties count half).
    Borda,
    /// Ranked pairs (Tideman): lock in majorities from strongest down, skipping any that would
    /// make a cycle; reward = the share of other responses ranked below.
    RankedPairs,
}

/// Which pairs a group's judgments cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairOrder {
    /// Every ordered pair: n(n−1) judgments, so each pair is judged in both A/B orders.
    #[default]
    Ordered,
    /// Every unordered pair once: n(n−1)/2 judgments.
    Unordered,
}

/// The reward of a finished response that no usable judgment compared with another: the middle
/// of the 0–1 scale (a neutral score), above the 0 that unfinished responses get.
pub const NO_COMPARISON_REWARD: f32 = 0.5;

/// The pairs (i, j) to judge among `n` responses, skipping excluded ones.
pub fn pairs(n: usize, order: PairOrder, included: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let wanted = match order {
                PairOrder::Ordered => i != j,
                PairOrder::Unordered => i < j,
            };
            if wanted && included[i] && included[j] {
                out.push((i, j));
            }
        }
    }
    out
}

/// Rewards from `scores[i][j]` (1–10, `None` where no usable judgment exists). Responses not
/// `included` get 0.
pub fn aggregate(scores: &[Vec<Option<f32>>], included: &[bool], rule: Aggregation) -> Vec<f32> {
    let n = scores.len();
    // For every pair, the net preference: > 0 when i beat j over their judgments.
    let margin = |i: usize, j: usize| -> Option<f32> {
        match (scores[i][j], scores[j][i]) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        }
    };
    match rule {
        Aggregation::Mean => (0..n)
            .map(|i| {
                if !included[i] {
                    return 0.0;
                }
                let got: Vec<f32> = (0..n)
                    .filter(|&j| j != i && included[j])
                    .filter_map(|j| scores[i][j])
                    .collect();
                if got.is_empty() {
                    NO_COMPARISON_REWARD
                } else {
                    // Scores are 1–10; rewards are 0–1.
                    (got.iter().sum::<f32>() / got.len() as f32 - 1.0) / 9.0
                }
            })
            .collect(),
        Aggregation::Borda => (0..n)
            .map(|i| {
                if !included[i] {
                    return 0.0;
                }
                let results: Vec<f32> = (0..n)
                    .filter(|&j| j != i && included[j])
                    .filter_map(|j| margin(i, j))
                    .map(|m| {
                        if m > 0.0 {
                            1.0
                        } else if m == 0.0 {
                            0.5
                        } else {
                            0.0
                        }
                    })
                    .collect();
                if results.is_empty() {
                    NO_COMPARISON_REWARD
                } else {
                    results.iter().sum::<f32>() / results.len() as f32
                }
            })
            .collect(),
        Aggregation::RankedPairs => ranked_pairs(n, included, margin),
    }
}

fn ranked_pairs(
    n: usize,
    included: &[bool],
    margin: impl Fn(usize, usize) -> Option<f32>,
) -> Vec<f32> {
    let members: Vec<usize> = (0..n).filter(|&i| included[i]).collect();
    let mut majorities: Vec<(f32, usize, usize)> = Vec::new();
    for &i in &members {
        for &j in &members {
            if let Some(m) = margin(i, j) {
                if m > 0.0 {
                    majorities.push((m, i, j));
                }
            }
        }
    }
    // Strongest first; ties broken by index for determinism.
    majorities.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut beats = vec![vec![false; n]; n];
    let reaches = |beats: &Vec<Vec<bool>>, from: usize, to: usize| -> bool {
        let mut stack = vec![from];
        let mut seen = vec![false; n];
        while let Some(x) = stack.pop() {
            if x == to {
                return true;
            }
            if !seen[x] {
                seen[x] = true;
                stack.extend((0..n).filter(|&y| beats[x][y]));
            }
        }
        false
    };
    for (_, winner, loser) in majorities {
        if !reaches(&beats, loser, winner) {
            beats[winner][loser] = true;
        }
    }
    let others = members.len().saturating_sub(1).max(1) as f32;
    (0..n)
        .map(|i| {
            if !included[i] {
                return 0.0;
            }
            let compared = members.iter().any(|&j| j != i && margin(i, j).is_some());
            if !compared {
                return NO_COMPARISON_REWARD;
            }
            members
                .iter()
                .filter(|&&j| j != i && reaches(&beats, i, j))
                .count() as f32
                / others
        })
        .collect()
}
