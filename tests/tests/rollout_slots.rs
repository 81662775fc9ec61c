//! A generator's continuous batching (`[generator] slots`) on a real world model with images:
//! the same rollouts as one plain batch, for every slot count. (A zero slot count is refused
//! by the run config: tests/config_errors.rs.)

use std::sync::Arc;

use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::rollout_engine::{GeneratorConfig, RolloutEngine};
use grlhf_actors::vl_engine::{init_world_model, VlEngine, WorldModelSize};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::grm_format::IMAGE_PLACEHOLDER;
use tch::{Device, Kind};

fn image(seed: u8) -> Arc<RgbImage> {
    let pixels = (0..56u32 * 56 * 3)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect();
    Arc::new(RgbImage::from_rgb(56, 56, pixels).unwrap())
}

fn prompt(id: &str, question: &str, image: Option<Arc<RgbImage>>) -> PromptSpec {
    let placeholder = if image.is_some() {
        IMAGE_PLACEHOLDER
    } else {
        ""
    };
    PromptSpec {
        id: id.into(),
        question: question.into(),
        system: "You are a helpful assistant.".into(),
        user: format!("{placeholder}{question}"),
        image,
        reference: None,
        world: None,
    }
}

#[test]
fn slots_give_the_rollouts_of_one_plain_batch() {
    let tmp = tempfile::tempdir().unwrap();
    init_world_model(tmp.path(), WorldModelSize::preset("tiny").unwrap(), 3).unwrap();
    let mut engine = VlEngine::load(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    let prompts = [
        prompt("a", "what colour is the square?", Some(image(3))),
        prompt("b", "count the circles", Some(image(7))),
        prompt("c", "say hello", None),
    ];
    let plain = GeneratorConfig {
        max_new_tokens: 12,
        ..GeneratorConfig::default()
    };
    // An untrained model rarely samples its stop token: make two tokens it does sample early
    // stop tokens, so samples end at different steps (what slots are for).
    let free = RolloutEngine::generate(&mut engine, &prompts, 4, &plain, 17).unwrap();
    engine
        .stop_ids
        .extend([free[0].1[1].tokens[3], free[2].1[2].tokens[5]]);
    let want = RolloutEngine::generate(&mut engine, &prompts, 4, &plain, 17).unwrap();
    let lengths: Vec<usize> = want
        .iter()
        .flat_map(|(_, g)| g.iter().map(|r| r.tokens.len()))
        .collect();
    for slots in [1, 3, 5, 12, 40] {
        let config = GeneratorConfig {
            slots: Some(slots),
            ..plain.clone()
        };
        let got = RolloutEngine::generate(&mut engine, &prompts, 4, &config, 17).unwrap();
        assert_eq!(got.len(), want.len());
        for (p, ((got_prompt, got_group), (want_prompt, want_group))) in
            got.iter().zip(&want).enumerate()
        {
            assert_eq!(got_prompt, want_prompt, "prompt {p}");
            for (j, (g, w)) in got_group.iter().zip(want_group).enumerate() {
                assert_eq!(g.tokens, w.tokens, "{slots} slots: prompt {p} sample {j}");
                assert_eq!(g.finish_reason, w.finish_reason);
                assert_eq!(g.text, w.text);
                let worst = g
                    .logprobs
                    .iter()
                    .zip(&w.logprobs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4,
                    "{slots} slots: log-probs differ by {worst:e}"
                );
            }
        }
    }
    assert!(
        lengths.iter().filter(|&&l| l < 12).count() >= 2,
        "samples should stop early: {lengths:?}"
    );
}
