//! Payloads shared by the microbenchmarks: a rollout group of real size (n = 8 responses of 64
//! tokens with their log-probs and text, and a 32-token prompt) and its scored form.

use std::sync::Arc;

use grlhf_actors::protocol::{JudgeDetails, PromptItem, RolloutGroup, ScoredGroup};
use grlhf_actors::simulated::generator::simulated_rollouts;

pub fn group(uid: u64) -> RolloutGroup {
    RolloutGroup {
        prompt: Arc::new(PromptItem {
            uid,
            id: format!("p{uid}"),
            question: "What colour is the large circle?".into(),
            image: None,
            reference: Some("blue".into()),
            world: None,
            admitted_at: 0,
        }),
        system: "You are a helpful assistant.".into(),
        user: "What colour is the large circle?".into(),
        prompt_tokens: vec![0; 32],
        rollouts: simulated_rollouts(8, 64, uid),
        policy_version: 0,
        generator: "generator-0".into(),
        generate_ms: 0.0,
        temperature: 1.0,
    }
}

#[allow(dead_code)]
pub fn scored(uid: u64) -> ScoredGroup {
    ScoredGroup {
        group: group(uid),
        rewards: vec![0.5; 8],
        details: JudgeDetails::default(),
    }
}
