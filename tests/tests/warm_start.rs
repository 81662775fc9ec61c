//! The warm start works on the embedded world: a tiny policy trained from scratch by SFT learns
//! to answer (the oracle's held-out score rises from 0), and a tiny GRM learns the judgment
//! format and beats chance at ranking held-out pairs.

use grlhf::warm_start::{run_sft, SftRequest, Target};
use grlhf_actors::sft::SftConfig;

fn request(target: Target, out: &std::path::Path, steps: u64) -> SftRequest {
    SftRequest {
        target,
        model: "world:tiny".into(),
        out: out.to_path_buf(),
        config: SftConfig {
            steps,
            ..SftConfig::default()
        },
        world_size: 2000,
        sft_quality: 1.0,
        eval_per_family: 4,
        eval_pairs: 60,
        // Judgments run to ~60 tokens; answers to ~25.
        max_new_tokens: if target == Target::Grm { 80 } else { 32 },
        eval_split: grlhf_tasks::world::HeldOut::Evaluation,
        device: tch::Device::Cpu,
        evaluate: true,
        blind: false,
    }
}

#[test]
fn policy_sft_teaches_a_fresh_model_to_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let report = run_sft(&request(Target::Policy, tmp.path(), 200), |_| {}).unwrap();
    let (before, after) = (report.policy_before.unwrap(), report.policy_after.unwrap());
    assert_eq!(
        before.mean, 0.0,
        "an untrained model never finishes an answer"
    );
    assert!(after.finished >= 0.9, "finished {}", after.finished);
    assert!(
        after.mean >= 0.25,
        "held-out oracle score {} after SFT",
        after.mean
    );
    assert!(report.loss_last < report.loss_first / 3.0);
    assert_eq!(after.per_family.len(), 7);
    assert!(
        tmp.path().join("model/model.safetensors").exists() && tmp.path().join("sft.json").exists()
    );
}

#[test]
fn grm_sft_learns_the_judgment_format_and_beats_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let report = run_sft(&request(Target::Grm, tmp.path(), 300), |_| {}).unwrap();
    let (before, after) = (report.grm_before.unwrap(), report.grm_after.unwrap());
    assert_eq!(before.parsed, 0.0);
    assert!(after.parsed >= 0.9, "parsed {}", after.parsed);
    // A parseable judge that guessed would be right about half the time (ties count as wrong).
    assert!(
        after.accuracy >= 0.6,
        "held-out pairwise accuracy {}",
        after.accuracy
    );
}

#[test]
fn a_frozen_vision_tower_keeps_its_weights_while_the_merger_and_language_model_train() {
    use grlhf::warm_start::world_examples;
    use grlhf_actors::sft::train_sft;
    use grlhf_actors::vl_engine::{init_world_model, VlEngine, WorldModelSize};
    let tmp = tempfile::tempdir().unwrap();
    init_world_model(tmp.path(), WorldModelSize::preset("tiny").unwrap(), 0).unwrap();
    let mut engine = VlEngine::load(tmp.path(), tch::Device::Cpu, tch::Kind::Float).unwrap();
    let before: std::collections::HashMap<String, tch::Tensor> = engine
        .model
        .var_store()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let examples = world_examples(Target::Policy, 0, 16, 1.0).unwrap();
    let config = SftConfig {
        steps: 3,
        batch: 4,
        freeze_vision_tower: true,
        ..SftConfig::default()
    };
    train_sft(&mut engine, &examples, &config, |_| {}).unwrap();
    let mut frozen = 0;
    for (name, now) in engine.model.var_store().variables() {
        let moved = (&now - &before[&name]).abs().max().double_value(&[]) > 0.0;
        if name.starts_with("visual.") && !name.starts_with("visual.merger.") {
            assert!(!moved, "{name} trained though the tower is frozen");
            frozen += 1;
        } else if name.starts_with("visual.merger.mlp") || name.contains("q_proj.weight") {
            assert!(moved, "{name} did not train");
        }
    }
    assert!(frozen >= 5, "no vision-tower parameter was checked");
}
