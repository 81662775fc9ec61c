//! Preference pairs: two candidate answers to one prompt, ordered by the oracle, with "human"
//! label noise. Ties are left out, as annotators' ties are in the paper's data.

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::candidates::{Candidate, ErrorStyle};
use crate::oracle::{self, OracleScore};
use crate::scene::Scene;
use crate::task::Task;

/// A scored candidate.
#[derive(Debug, Clone)]
pub struct ScoredCandidate {
    pub candidate: Candidate,
    pub score: OracleScore,
}

/// One preference pair about a prompt. Response 1 and 2 are in random order.
#[derive(Debug, Clone)]
pub struct PreferencePair {
    pub response_1: ScoredCandidate,
    pub response_2: ScoredCandidate,
    /// The oracle's order: 1 or 2.
    pub oracle_preferred: u8,
    /// The "human" label: the oracle's order, flipped with probability `label_noise`.
    pub preferred: u8,
}

impl PreferencePair {
    pub fn label_flipped(&self) -> bool {
        self.preferred != self.oracle_preferred
    }
}

/// Scores every candidate with the oracle.
pub fn score_candidates(
    scene: &Scene,
    task: &Task,
    candidates: Vec<Candidate>,
) -> Vec<ScoredCandidate> {
    candidates
        .into_iter()
        .map(|candidate| ScoredCandidate {
            score: oracle::score(scene, task, &candidate.text),
            candidate,
        })
        .collect()
}

/// Draws a pair from `first` × `second` (the same pool for ordinary pairs; for the held-out-error
/// split, `first` holds the held-out styles) whose oracle scores differ. `None` when every
/// possible pair ties.
pub fn sample_pair(
    first: &[&ScoredCandidate],
    second: &[&ScoredCandidate],
    label_noise: f64,
    rng: &mut impl Rng,
) -> Option<PreferencePair> {
    let options: Vec<(usize, usize)> = (0..first.len())
        .flat_map(|i| (0..second.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| first[i].candidate.text != second[j].candidate.text)
        .filter(|&(i, j)| first[i].score.total != second[j].score.total)
        .collect();
    let &(i, j) = options.choose(rng)?;
    let (a, b) = (first[i].clone(), second[j].clone());
    let (response_1, response_2) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
    let oracle_preferred = if response_1.score.total > response_2.score.total {
        1
    } else {
        2
    };
    let preferred = if rng.random_bool(label_noise) {
        3 - oracle_preferred
    } else {
        oracle_preferred
    };
    Some(PreferencePair {
        response_1,
        response_2,
        oracle_preferred,
        preferred,
    })
}

/// Candidates whose style is in `styles`.
pub fn with_styles<'a>(
    pool: &'a [ScoredCandidate],
    styles: &[ErrorStyle],
) -> Vec<&'a ScoredCandidate> {
    pool.iter()
        .filter(|c| styles.contains(&c.candidate.style))
        .collect()
}
