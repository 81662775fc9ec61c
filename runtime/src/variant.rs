//! The stage-2 variants a pipeline trains: the full method, its ablations, the score-only
//! baseline and the oracle reference. Its own module because the pipeline's config, its run
//! directory layout and its report all name them.

use serde::{Deserialize, Serialize};

/// A stage-2 run: which reward model judges the policy's groups, and how. `--variants` and the
/// config take their [`Variant::name`]s.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Variant {
    /// Baseline: the score-only Bradley–Terry RM scores each response; GRPO.
    RmGrpo,
    /// The GRM after SFT only, with grouped comparison.
    GrmSftGrouped,
    /// The GRM after stage-1 RL, each response compared once with one random other.
    GrmRlSingle,
    /// The full method: GRM after stage-1 RL, grouped comparison.
    GrmRlGrouped,
    /// Reference, not a method: GRPO on the hidden oracle's own score — what RL reaches when
    /// the reward is exactly the evaluation's (separates a weak reward model from weak RL).
    OracleGrpo,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::RmGrpo,
        Variant::GrmSftGrouped,
        Variant::GrmRlSingle,
        Variant::GrmRlGrouped,
        Variant::OracleGrpo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::RmGrpo => "rm_grpo",
            Variant::GrmSftGrouped => "grm_sft_grouped",
            Variant::GrmRlSingle => "grm_rl_single",
            Variant::GrmRlGrouped => "grm_rl_grouped",
            Variant::OracleGrpo => "oracle_grpo",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Variant::RmGrpo => "score-only RM + GRPO",
            Variant::GrmSftGrouped => "GRM (SFT only) + grouped comparison",
            Variant::GrmRlSingle => "GRM+RL, single comparison",
            Variant::GrmRlGrouped => "GRM+RL + grouped comparison (full method)",
            Variant::OracleGrpo => "reference: GRPO on the oracle's score",
        }
    }

    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}
