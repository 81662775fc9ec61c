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
fn the_evaluator_reads_the_validation_split_unless_told_otherwise() {
    use grlhf_tasks::world::HeldOut;
    let with = |table: &str| {
        let text = GOOD.replace("[model]", &format!("[evaluator]\n{table}\n\n[model]"));
        RunConfig::from_toml(&text, Path::new("e.toml"))
            .unwrap()
            .evaluator
            .unwrap()
            .split
    };
    assert_eq!(with("every = 5"), HeldOut::Validation);
    assert_eq!(with("split = \"evaluation\""), HeldOut::Evaluation);
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
            GOOD.replace("[model]", "[generator]\nslots = 0\n\n[model]"),
            "generator.slots",
        ),
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
        // Absurd values: no responses, a negative η, a batch too large to ever fill.
        (
            GOOD.replace("group_size = 4", "group_size = 0"),
            "group_size",
        ),
        (
            GOOD.replace("steps = 2", "steps = 2\nmax_staleness = -1"),
            "max_staleness",
        ),
        (
            GOOD.replace("batch_groups = 2", "batch_groups = 18446744073709551616"),
            "batch_groups",
        ),
        (
            GOOD.replace("[model]", "[data]\nsource = \"jsonl\"\npath = \"p.jsonl\"\nimage_root = \"/no/such/root\"\n\n[model]"),
            "data.image_root",
        ),
        (
            GOOD.replace("[model]", "[evaluator]\nsplit = \"test\"\n\n[model]"),
            "split",
        ),
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any edit of a good config — a byte cut out, a line duplicated, a value swapped for
    /// another — is either a valid config or an error naming the file; never a panic.
    #[test]
    fn the_config_loader_is_total(
        cut in 0usize..GOOD.len(),
        len in 0usize..12,
        line in 0usize..16,
        value in proptest::sample::select(vec![
            "-1", "0", "1e309", "nan", "\"\"", "[]", "{}", "18446744073709551616", "true",
            "\"cuda:99\"", "inf",
        ]),
    ) {
        let end = (cut + len).min(GOOD.len());
        let mut variants = Vec::new();
        if GOOD.is_char_boundary(cut) && GOOD.is_char_boundary(end) {
            variants.push(format!("{}{}", &GOOD[..cut], &GOOD[end..]));
        }
        let lines: Vec<&str> = GOOD.lines().collect();
        let mut duplicated = lines.clone();
        duplicated.insert(line % lines.len(), lines[line % lines.len()]);
        variants.push(duplicated.join("\n"));
        let mut swapped = lines.clone();
        let target = line % lines.len();
        let replaced;
        if let Some((key, _)) = swapped[target].split_once(" = ") {
            replaced = format!("{key} = {value}");
            swapped[target] = &replaced;
        }
        variants.push(swapped.join("\n"));
        for text in variants {
            match RunConfig::from_toml(&text, Path::new("fuzz.toml")) {
                Ok(config) => proptest::prop_assert!(config.group_size >= 2 && config.batch_groups >= 1),
                Err(e) => proptest::prop_assert!(e.to_string().contains("fuzz.toml"), "{e}"),
            }
        }
    }
}

/// The data root is enforced from the run config: `grlhf run` refuses a prompt file whose image
/// leaves the file's folder before any model loads, naming the line and field, and
/// `data.allow_images_outside_root` lets it through to the next check.
#[test]
fn a_run_config_keeps_dataset_images_inside_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let prompts = data.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": 1, \"image\": \"../outside.png\", \"question\": \"what is it?\"}\n",
    )
    .unwrap();
    let config = |allow: bool| {
        let text = GOOD.replace(
            "[model]",
            &format!(
                "[data]\nsource = \"jsonl\"\npath = {:?}\nallow_images_outside_root = {allow}\n\n[model]",
                prompts.display().to_string()
            ),
        );
        RunConfig::from_toml(&text, Path::new("data.toml")).unwrap()
    };
    let error = format!(
        "{:#}",
        grlhf::run::prompt_specs(&config(false)).unwrap_err()
    );
    assert!(
        error.contains("prompts.jsonl:1: field `image`")
            && error.contains("leaves the data root")
            && error.contains("allow_images_outside_root"),
        "{error}"
    );
    // Allowed, the path passes the root check and the (missing) file is what is reported.
    let error = format!("{:#}", grlhf::run::prompt_specs(&config(true)).unwrap_err());
    assert!(
        error.contains("not found") && !error.contains("leaves the data root"),
        "{error}"
    );
}
