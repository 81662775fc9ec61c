//! The messages' payloads: prompts, groups of rollouts, scored groups, versioned weights and
//! control, and the sink traits through which one pipeline stage hands work to the next.
//!
//! Stages talk through [`GroupSink`] and [`ScoredSink`] rather than concrete actor types, so a
//! user's own stage (a filter, a length penalty) slots between a judge and the replay buffer
//! without either knowing.

use std::sync::Arc;

use grlhf_models::generation::FinishReason;
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::records::WorldKey;
use serde::Serialize;

/// The learner's optimizer-step count; every sample carries the version that produced it.
pub type Version = u64;

/// One prompt, as admitted by the prompt source. `uid` is unique for the run (the ledger key).
#[derive(Debug)]
pub struct PromptItem {
    pub uid: u64,
    /// The dataset's id.
    pub id: String,
    pub question: String,
    pub image: Option<Arc<RgbImage>>,
    pub reference: Option<String>,
    /// The embedded world's key (scene + task) for rule rewards and evaluation; never shown to
    /// a model.
    pub world: Option<Arc<WorldKey>>,
    /// The learner version when the prompt was admitted.
    pub admitted_at: Version,
}

/// One sampled response.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Rollout {
    /// Generated token ids (the stop token included when there is one).
    pub tokens: Vec<i64>,
    /// Behaviour log-probs of `tokens` under the generating policy.
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
    /// Decoded text without special tokens: what judges score (the final answer of a
    /// multi-turn trajectory).
    pub text: String,
    /// Which of `tokens` the policy produced (trained) and which the environment inserted
    /// (context only: their log-probs are placeholders and they get no gradient). `None`: every
    /// token is the policy's, as in a single-turn rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_mask: Option<Vec<bool>>,
}

impl Rollout {
    /// A response that ended with a stop token (GRM comparison leaves the others out).
    pub fn is_complete(&self) -> bool {
        self.finish_reason == FinishReason::Stop
    }

    /// Whether token `i` is the policy's own (trained).
    pub fn is_policy_token(&self, i: usize) -> bool {
        self.policy_mask.as_ref().is_none_or(|m| m[i])
    }

    /// Tokens the policy produced (the ones a loss trains on).
    pub fn policy_tokens(&self) -> usize {
        match &self.policy_mask {
            None => self.tokens.len(),
            Some(mask) => mask.iter().filter(|&&m| m).count(),
        }
    }

    /// This trajectory continued: the environment's `environment` tokens (masked out of the
    /// loss, placeholder log-probs 0), then the policy's `next` turn. The text, and whether the
    /// trajectory finished, are the last turn's.
    pub fn then(mut self, environment: &[i64], next: Rollout) -> Rollout {
        let mut mask = self
            .policy_mask
            .take()
            .unwrap_or_else(|| vec![true; self.tokens.len()]);
        mask.extend(std::iter::repeat_n(false, environment.len()));
        mask.extend((0..next.tokens.len()).map(|i| next.is_policy_token(i)));
        self.tokens.extend_from_slice(environment);
        self.logprobs
            .extend(std::iter::repeat_n(0.0, environment.len()));
        self.tokens.extend_from_slice(&next.tokens);
        self.logprobs.extend_from_slice(&next.logprobs);
        Rollout {
            tokens: self.tokens,
            logprobs: self.logprobs,
            finish_reason: next.finish_reason,
            text: next.text,
            policy_mask: Some(mask),
        }
    }
}

/// The n responses to one prompt.
#[derive(Debug)]
pub struct RolloutGroup {
    pub prompt: Arc<PromptItem>,
    /// The chat turns the model saw (the learner re-encodes them and checks the tokens agree).
    pub system: String,
    pub user: String,
    /// The rendered prompt token ids (image placeholders expanded).
    pub prompt_tokens: Vec<i64>,
    pub rollouts: Vec<Rollout>,
    pub policy_version: Version,
    pub generator: String,
    /// Wall time of the generation batch this group came from, in milliseconds.
    pub generate_ms: f64,
    /// Sampling temperature (the learner scores log-probs at the same temperature).
    pub temperature: f64,
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for RolloutGroup {}

/// What a judge saw.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct JudgeDetails {
    pub judge: String,
    /// GRM: `scores[i][j]` is the score response i received when compared with j.
    pub pairwise: Option<Vec<Vec<Option<f32>>>>,
    /// GRM judgments with no usable `\boxed{s1,s2}`.
    pub parse_failures: usize,
    pub judgments: usize,
    pub judge_ms: f64,
}

/// A group with one reward per response.
#[derive(Debug)]
pub struct ScoredGroup {
    pub group: RolloutGroup,
    pub rewards: Vec<f32>,
    pub details: JudgeDetails,
}

impl ScoredGroup {
    pub fn mean_reward(&self) -> f32 {
        self.rewards.iter().sum::<f32>() / self.rewards.len().max(1) as f32
    }
}

/// Parameters of a policy at a version, already copied to the receiver's device.
#[derive(Debug)]
pub struct WeightUpdate {
    pub version: Version,
    pub tensors: Vec<(String, tch::Tensor)>,
    /// Bytes copied and the copy's wall time (measured on the learner's side).
    pub bytes: u64,
    pub copy_ms: f64,
    /// Where the receiver hands `tensors` back once applied, so the learner's next snapshot for
    /// it copies into them instead of allocating (fresh CPU memory costs a page fault per page).
    pub recycle: Option<flume::Sender<Vec<(String, tch::Tensor)>>>,
}

/// Pipeline control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Control {
    Pause,
    Resume,
    /// Finish what is in flight, take nothing new.
    Drain,
    Stop,
}

/// Where a generator sends groups (a judge, or a user's stage in front of one).
pub trait GroupSink: Send + Sync {
    fn send_group(&self, group: RolloutGroup) -> Result<(), String>;
}

/// Where a judge sends scored groups (the replay buffer, or a user's stage in front of it).
pub trait ScoredSink: Send + Sync {
    fn send_scored(&self, group: ScoredGroup) -> Result<(), String>;
}
