//! A user-defined actor kind, registered from outside the library, runs in a pipeline.

use std::path::Path;
use std::sync::atomic::Ordering;

use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::registry::Registry;
use grlhf_tests::length_penalty::{self, GROUPS_PASSED};

#[test]
fn a_length_penalty_stage_between_judge_and_buffer_sees_every_group() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
mode = "sync"
steps = 3
group_size = 2
batch_groups = 2
run_dir = "{}"

[model]
policy = "world:tiny"

[generator]
max_new_tokens = 4

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"

[[post_judge]]
kind = "length_penalty"
per_token = 1.0
"#,
        tmp.path().join("run").display()
    );
    let config = RunConfig::from_toml(&text, Path::new("custom.toml")).unwrap();
    // Unregistered, the kind is refused with the file and the field named.
    let err = run(
        config.clone(),
        Path::new("custom.toml"),
        Registry::with_builtins(),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("custom.toml")
            && err.contains("post_judge[0].kind")
            && err.contains("length_penalty"),
        "{err}"
    );

    let mut registry = Registry::with_builtins();
    length_penalty::register(&mut registry);
    let outcome = run(config, Path::new("custom.toml"), registry, false).unwrap();
    assert_eq!(outcome.summary.learner_steps, 3);
    assert!(
        GROUPS_PASSED.load(Ordering::Relaxed) >= 6,
        "the stage passed {} groups",
        GROUPS_PASSED.load(Ordering::Relaxed)
    );
    // Every trained reward went through the penalty: at most 1 − (tokens ≥ 1) ≤ 0.
    for step in &outcome.steps {
        assert!(
            step.reward_mean <= 0.0,
            "step {} reward {}",
            step.step,
            step.reward_mean
        );
    }
}
