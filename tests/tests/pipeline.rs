//! The actor runtime end to end on the embedded world with tiny models on CPU: GRPO raises the
//! reward in sync and async mode, the staleness bound holds for every sample, versions only grow,
//! the ledger balances after every step, sync is lockstep and async overlaps.

use std::path::Path;

use grlhf::run::{run, RunOutcome};
use grlhf::run_config::RunConfig;
use grlhf_actors::activity::overlap_seconds;
use grlhf_actors::registry::Registry;

fn config(name: &str, dir: &Path, steps: u64) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name);
    let mut config = RunConfig::from_file(&path).unwrap();
    config.run_dir = dir.join(name.trim_end_matches(".toml"));
    config.steps = steps;
    config
}

fn run_config(config: RunConfig) -> RunOutcome {
    run(
        config,
        Path::new("test.toml"),
        Registry::with_builtins(),
        false,
    )
    .unwrap()
}

fn check_common(outcome: &RunOutcome, eta: u64) {
    let s = &outcome.summary;
    assert_eq!(s.learner_steps as usize, outcome.steps.len());
    assert_eq!(
        s.staleness_violations, 0,
        "a sample older than η reached the learner"
    );
    assert!(s.max_staleness_seen <= eta);
    for step in &outcome.steps {
        assert!(
            step.staleness_violations.is_empty(),
            "{:?}",
            step.staleness_violations
        );
        assert!(step.max_staleness <= eta);
        assert!(
            step.ledger.balances(),
            "step {}: {:?}",
            step.step,
            step.ledger
        );
    }
    assert!(
        s.ledger_balanced && s.ledger_violations.is_empty(),
        "{:?}",
        s.ledger_violations
    );
    assert_eq!(
        s.prompts_admitted,
        s.prompts_trained + s.prompts_dropped.values().sum::<u64>() + s.prompts_in_flight
    );
    assert!(s.versions_monotonic);
    let versions = outcome.activity.last_versions();
    assert!(!versions.is_empty(), "no weight update reached a generator");
    // Every file of the run directory is there.
    for file in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "policy/model.safetensors",
        "policy/tokenizer.json",
        "trace",
        "plots/reward.png",
        "plots/throughput.png",
    ] {
        assert!(outcome.run_dir.join(file).exists(), "{file} missing");
    }
    let tb = std::fs::read_dir(outcome.run_dir.join("tb"))
        .unwrap()
        .count();
    assert_eq!(tb, 1, "one TensorBoard event file per run");
    let lines = std::fs::read_to_string(outcome.run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, outcome.steps.len());
}

#[test]
fn sync_grpo_is_lockstep_and_raises_the_reward() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = run_config(config("tiny-sync.toml", tmp.path(), 60));
    check_common(&outcome, 0);
    let s = &outcome.summary;
    assert_eq!(s.max_staleness_seen, 0);
    let spans = outcome.activity.spans();
    assert_eq!(
        overlap_seconds(&spans, "generate", "train"),
        0.0,
        "generation overlapped a learner step in sync mode"
    );
    assert!(
        s.reward_mean_last >= s.reward_mean_first + 0.04,
        "reward {} → {}",
        s.reward_mean_first,
        s.reward_mean_last
    );
}

#[test]
fn async_grpo_overlaps_generation_with_training_and_raises_the_reward() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = run_config(config("tiny-async.toml", tmp.path(), 60));
    check_common(&outcome, 2);
    let s = &outcome.summary;
    let spans = outcome.activity.spans();
    assert!(
        overlap_seconds(&spans, "generate", "train") > 0.0,
        "no overlap in async mode"
    );
    assert!(
        s.max_staleness_seen >= 1,
        "async never used an older sample"
    );
    assert!(
        s.reward_mean_last >= s.reward_mean_first + 0.04,
        "reward {} → {}",
        s.reward_mean_first,
        s.reward_mean_last
    );
}
