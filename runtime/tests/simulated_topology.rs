//! A simulated run is the real topology: generators and judges killed at random are restarted
//! by the supervisor and the prompts they held are issued again from the ledger, a NaN step is
//! skipped and its prompts replaced, and the run still trains every step with a balanced ledger
//! — on cost-model engines, in a few seconds.

use std::path::Path;

use grlhf::bench::simulated_run::run_simulated;
use grlhf::run_config::RunConfig;
use grlhf_actors::registry::Registry;
use grlhf_actors::simulated::CostModel;
use indicatif::ProgressBar;

fn config(dir: &Path) -> RunConfig {
    let text = format!(
        r#"
mode = "async"
steps = 30
run_dir = "{}"
max_staleness = 2
group_size = 4
batch_groups = 4
[model]
policy = "world:tiny"
[generator]
count = 4
batch_prompts = 1
[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
count = 2
[supervision]
max_restarts = 1000
window_s = 1.0
[faults]
kill_every_s = 0.08
nan_loss_steps = [3]
seed = 7
"#,
        dir.display()
    );
    RunConfig::from_toml(&text, Path::new("simulated-faults.toml")).unwrap()
}

/// Generation dominates, so a killed generator is almost always holding prompts.
fn costs() -> CostModel {
    CostModel {
        response_tokens: 8,
        generate_s_per_call: 0.030,
        generate_s_per_token: 0.0,
        judge_s_per_group: 0.005,
        judge_s_per_pair: 0.0,
        learn_s_per_step: 0.010,
        learn_s_per_token: 0.0,
        sync_s_per_subscriber: 0.0,
        weight_bytes: 1000,
    }
}

#[test]
fn a_simulated_run_survives_kills_and_a_nan_step_through_supervision_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let outcome = run_simulated(
        &config,
        Path::new("sim.toml"),
        &Registry::with_builtins(),
        &costs(),
        ProgressBar::hidden(),
        None,
    )
    .unwrap();
    let summary = &outcome.summary;
    let reliability = &summary.reliability;
    // Every step trained (the skipped attempt does not count as one).
    assert_eq!(summary.learner_steps, 30, "{reliability:?}");
    assert_eq!(reliability.skipped_steps, 1, "{reliability:?}");
    assert_eq!(summary.prompts_dropped.get("skipped_step"), Some(&4));
    // Kills were injected and every killed actor was restarted by the supervisor.
    let kills: u64 = reliability
        .faults_injected
        .iter()
        .filter(|(kind, _)| kind.starts_with("kill"))
        .map(|(_, n)| n)
        .sum();
    let restarts: u64 = reliability.restarts.values().sum();
    assert!(kills >= 3, "{reliability:?}");
    assert!(restarts >= 1, "{reliability:?}");
    // What the killed actors held came back through the ledger.
    assert!(reliability.prompts_reissued >= 1, "{reliability:?}");
    assert!(summary.ledger_balanced, "{summary:?}");
    assert!(
        summary.ledger_violations.is_empty(),
        "{:?}",
        summary.ledger_violations
    );
    assert!(reliability.aborted.is_none(), "{reliability:?}");
}
