//! The records of prompt, preference and warm-start files, as read and written in JSONL.
//!
//! The required fields follow common exports of real preference data (align-anything, RLAIF-V):
//! prompts have `id`, `image`, `question` and an optional `reference`; preference pairs have
//! `image`, `question`, `response_1`, `response_2` and `preferred` (1 or 2). Records of the
//! embedded world also carry `family` and `world` — the scene and task the oracle scores against.
//! `world` is for data generation and evaluation only; actors never pass it to a model.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::candidates::ErrorStyle;
use crate::scene::Scene;
use crate::task::{Family, Task};

/// What the oracle needs to score a response: the scene and the question asked about it, plus,
/// for generated answers, how they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldKey {
    pub scene: Scene,
    pub task: Task,
    /// The error style of each generated response (one for SFT answers, two for pairs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub styles: Vec<ErrorStyle>,
    /// Pairs: the oracle's order (1 or 2), before label noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_preferred: Option<u8>,
}

/// A prompt: an image and a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub id: String,
    /// Relative to the JSONL file when written; resolved to a full path when loaded.
    pub image: PathBuf,
    pub question: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<WorldKey>,
}

/// Two responses to one prompt and which one people preferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub image: PathBuf,
    pub question: String,
    pub response_1: String,
    pub response_2: String,
    /// 1 or 2.
    pub preferred: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// A judgment in the GRM format (GRM warm-start records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<WorldKey>,
}

/// A question and the answer a policy warm start imitates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftRecord {
    pub id: String,
    pub image: PathBuf,
    pub question: String,
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<WorldKey>,
}
