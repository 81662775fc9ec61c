//! Judges on real (tiny, untrained) models: the GRM judge's grouped comparison asks every
//! ordered pair of complete responses in one batch, leaves incomplete ones out, and turns
//! unparsable judgments into counted failures; stage 1 (grm-rl) runs end to end.

use std::path::Path;
use std::sync::Arc;

use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::grm_judge::{GrmJudge, GrmJudgeConfig};
use grlhf_actors::judge::Judge;
use grlhf_actors::protocol::{PromptItem, Rollout, RolloutGroup};
use grlhf_actors::registry::Registry;
use grlhf_actors::vl_engine::{init_world_model, VlEngine, WorldModelSize};
use grlhf_models::generation::FinishReason;
use grlhf_models::image_processor::RgbImage;
use tch::{Device, Kind};

fn group(finished: &[bool]) -> RolloutGroup {
    let scene = grlhf_tasks::scene::SceneConfig::default().sample(
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1),
        grlhf_tasks::scene::ComboRule::Any,
    );
    let image = grlhf_tasks::render::render(&scene);
    let image = RgbImage::from_rgb(image.width(), image.height(), image.into_raw()).unwrap();
    let texts = [
        "it is red.",
        "it is blue.",
        "there are 2 objects.",
        "sorry, i can not help with that.",
    ];
    RolloutGroup {
        prompt: Arc::new(PromptItem {
            uid: 7,
            id: "p".into(),
            question: "what colour is the object at the top left?".into(),
            image: Some(Arc::new(image)),
            reference: None,
            world: None,
            admitted_at: 0,
        }),
        system: String::new(),
        user: String::new(),
        prompt_tokens: vec![],
        rollouts: finished
            .iter()
            .zip(texts)
            .map(|(&done, text)| Rollout {
                tokens: vec![1],
                logprobs: vec![0.0],
                finish_reason: if done {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                },
                text: text.into(),
                policy_mask: None,
            })
            .collect(),
        policy_version: 0,
        generator: "test".into(),
        generate_ms: 0.0,
        temperature: 1.0,
    }
}

#[test]
fn grm_judge_compares_every_ordered_pair_of_complete_responses() {
    let tmp = tempfile::tempdir().unwrap();
    init_world_model(tmp.path(), WorldModelSize::preset("tiny").unwrap(), 3).unwrap();
    let engine = VlEngine::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    let config = GrmJudgeConfig {
        max_new_tokens: 6,
        ..GrmJudgeConfig::default()
    };
    let mut judge = GrmJudge::new(engine, config);
    let (rewards, details) = judge.score(&group(&[true, true, true, true])).unwrap();
    assert_eq!(details.judgments, 12, "n(n−1) judgments for n = 4");
    // An untrained GRM writes no box: every judgment fails to parse, so no response was
    // compared and each gets the neutral reward (issue 14: it used to be 0, the unfinished
    // responses' reward).
    assert_eq!(details.parse_failures, 12);
    assert_eq!(
        rewards,
        vec![grlhf_actors::grouped_comparison::NO_COMPARISON_REWARD; 4]
    );
    let pairwise = details.pairwise.unwrap();
    assert_eq!((pairwise.len(), pairwise[0].len()), (4, 4));

    // An incomplete response is left out: (n−1)(n−2) judgments among the others, and it gets 0.
    let (rewards, details) = judge.score(&group(&[true, false, true, true])).unwrap();
    assert_eq!(details.judgments, 6);
    assert_eq!(rewards[1], 0.0);
    // Unordered pairs halve the work; the single-comparison ablation asks one pair per response.
    judge.config.pair_order = grlhf_actors::grouped_comparison::PairOrder::Unordered;
    assert_eq!(judge.score(&group(&[true; 4])).unwrap().1.judgments, 6);
    judge.config.single_comparison = true;
    assert_eq!(judge.score(&group(&[true; 4])).unwrap().1.judgments, 4);
}

#[test]
fn stage_one_trains_a_grm_on_preference_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
mode = "sync"
stage = "grm-rl"
steps = 2
group_size = 2
batch_groups = 2
run_dir = "{}"

[model]
policy = "world:tiny"

[generator]
max_new_tokens = 6

[[judge]]
kind = "rule_judge"
rule = "grm_preference"
"#,
        tmp.path().join("grm").display()
    );
    let config = RunConfig::from_toml(&text, Path::new("grm.toml")).unwrap();
    let outcome = run(
        config,
        Path::new("grm.toml"),
        Registry::with_builtins(),
        false,
    )
    .unwrap();
    let s = &outcome.summary;
    assert_eq!(s.learner_steps, 2);
    assert!(s.ledger_balanced);
    // An untrained GRM writes no box, so every finished judgment is a counted parse failure
    // and earns 0 (unfinished ones earn 0 without being parsed).
    assert_eq!(s.parse_failures, s.judgments);
    assert_eq!(s.reward_mean_last, 0.0);
}

#[test]
fn scalar_reward_model_scores_each_response_alone_and_in_a_batch_alike() {
    use grlhf_actors::scalar_rm_judge::{ScalarRewardModel, ScalarRmConfig, ScalarRmJudge};
    let tmp = tempfile::tempdir().unwrap();
    init_world_model(tmp.path(), WorldModelSize::preset("tiny").unwrap(), 5).unwrap();
    ScalarRewardModel::init_head(tmp.path(), 64, 5).unwrap();
    let model = ScalarRewardModel::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    let mut g = group(&[true, true, true, false]);
    g.system = "you are a helpful assistant.".into();
    g.user = format!(
        "{}what colour is the object at the top left?",
        grlhf_tasks::grm_format::IMAGE_PLACEHOLDER
    );
    // Responses of different lengths (so the batch is padded) and one repeated.
    let responses: Vec<Vec<i64>> = [
        "it is red.",
        "it is a red circle at the top left.",
        "it is red.",
        "no",
    ]
    .iter()
    .map(|t| model.engine.tokenizer.encode(t, false).unwrap())
    .collect();
    for (r, tokens) in g.rollouts.iter_mut().zip(&responses) {
        r.tokens = tokens.clone();
    }
    let mut judge = ScalarRmJudge {
        model,
        config: ScalarRmConfig::default(),
    };
    let (rewards, details) = judge.score(&g).unwrap();
    assert_eq!(details.judgments, 4);
    assert!(rewards.iter().all(|r| r.is_finite()));
    assert_eq!(
        rewards[0], rewards[2],
        "the same response scored differently"
    );
    assert_ne!(rewards[0], rewards[1]);
    // An unfinished response ranks last: one below the lowest finished score (the head's
    // scores are unbounded, so a fixed 0 could rank it above finished answers) ...
    let lowest = rewards[..3].iter().copied().fold(f32::INFINITY, f32::min);
    assert_eq!(rewards[3], lowest - 1.0);
    // ... or gets the configured value.
    judge.config.incomplete_reward = Some(0.25);
    assert_eq!(judge.score(&g).unwrap().0[3], 0.25);
    judge.config.incomplete_reward = None;
    let image = g.prompt.image.as_deref();
    for (i, tokens) in responses.iter().enumerate().take(3) {
        let alone = judge
            .model
            .scores(&g.system, &g.user, image, std::slice::from_ref(tokens))
            .unwrap()[0];
        assert!(
            (alone - rewards[i]).abs() < 1e-4,
            "response {i}: alone {alone}, in a padded batch {}",
            rewards[i]
        );
    }
    // A checkpoint without the head is refused, naming the file.
    std::fs::remove_file(tmp.path().join("score.safetensors")).unwrap();
    let err = ScalarRewardModel::load(tmp.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap();
    assert!(err.contains("score.safetensors"), "{err}");
}
