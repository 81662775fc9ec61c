//! Bad configs are refused with the file and the field named.

use std::path::Path;

use grlhf::run_config::RunConfig;

const GOOD: &str = r#"
mode = "async"
steps = 2
group_size = 4
batch_groups = 2
run_dir = "runs/x"

[model]
policy = "world:tiny"

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
"#;

fn error(text: &str) -> String {
    RunConfig::from_toml(text, Path::new("bad.toml"))
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn the_good_config_parses() {
    let c = RunConfig::from_toml(GOOD, Path::new("good.toml")).unwrap();
    assert_eq!(c.effective_staleness(), 2);
    // The resolved config round-trips through TOML.
    let again =
        RunConfig::from_toml(&toml::to_string(&c).unwrap(), Path::new("again.toml")).unwrap();
    assert_eq!(again, c);
}

#[test]
fn errors_name_the_file_and_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            GOOD.replace("group_size = 4", "group_size = 1"),
            "group_size",
        ),
        (
            GOOD.replace("steps = 2", "steps = 2\nbogus_field = 1"),
            "bogus_field",
        ),
        (
            GOOD.replace("[model]", "[learner]\ndevice = \"gpu0\"\n\n[model]"),
            "learner.device",
        ),
        (
            GOOD.replace("[model]", "[generator]\ndevices = [\"cuda:x\"]\n\n[model]"),
            "generator.devices",
        ),
        (
            GOOD.replace(
                "policy = \"world:tiny\"",
                "policy = \"/no/such/checkpoint\"",
            ),
            "model.policy",
        ),
        (GOOD.replace("mode = \"async\"", "mode = \"fast\""), "mode"),
        (
            GOOD.replace("batch_groups = 2", "batch_groups = 0"),
            "batch_groups",
        ),
        (
            GOOD.replace(
                "[model]",
                "[telemetry]\nprometheus = \"0.0.0.0:9000\"\n\n[model]",
            ),
            "telemetry.prometheus",
        ),
        (
            GOOD.replace("[model]", "[learner]\nlr = -1.0\n\n[model]"),
            "learner.lr",
        ),
        (
            GOOD.replace("[model]", "[learner.grpo]\nclip = 0.2\n\n[model]"),
            "clip",
        ),
        (GOOD.replace("steps = 2", "steps = \"two\""), "steps"),
    ];
    for (text, field) in cases {
        let message = error(&text);
        assert!(message.contains("bad.toml"), "{message}");
        assert!(message.contains(field), "{message:?} does not name {field}");
    }
    // TOML syntax errors give the line.
    let message = error("mode = \"sync\"\nsteps = [\n");
    assert!(
        message.contains("bad.toml") && message.contains("line"),
        "{message}"
    );
}

#[test]
fn an_unknown_judge_kind_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let text = GOOD
        .replace("kind = \"rule_judge\"", "kind = \"oracle_judge\"")
        .replace("runs/x", &tmp.path().join("r").display().to_string());
    let config = RunConfig::from_toml(&text, Path::new("bad.toml")).unwrap();
    let err = grlhf::run::run(
        config,
        Path::new("bad.toml"),
        grlhf_actors::registry::Registry::with_builtins(),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("bad.toml") && err.contains("judge[0].kind") && err.contains("oracle_judge"),
        "{err}"
    );
    // A judge's own table is checked by its factory.
    let text = GOOD
        .replace(
            "rule = \"reference_overlap\"",
            "rule = \"reference_overlap\"\nweight = 2",
        )
        .replace("runs/x", &tmp.path().join("r2").display().to_string());
    let config = RunConfig::from_toml(&text, Path::new("bad.toml")).unwrap();
    let err = grlhf::run::run(
        config,
        Path::new("bad.toml"),
        grlhf_actors::registry::Registry::with_builtins(),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("judge[0]") && err.contains("weight"), "{err}");
}
