//! `configs/qwen2-vl-2b.toml` — stage 2 on a real Qwen2-VL checkpoint, named by environment
//! variables — runs as shipped, with the devices, dtype and sizes shrunk, on a tiny model that
//! keeps Qwen2-VL-2B-Instruct's config.json layout (the `qwen2_vl_hub` fixture), and refuses to
//! start, naming the variable, when one is not set.

use std::path::{Path, PathBuf};

use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::registry::Registry;
use grlhf_tests::fixtures::fixture;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped text with each replacement applied (each must change something, so an edit of
/// the config that breaks this test's assumptions shows here).
fn shrunk(text: &str, run_dir: &Path) -> String {
    let mut text = text.to_string();
    let run_dir = format!("run_dir = {:?}", run_dir.display().to_string());
    for (from, to) in [
        ("run_dir = \"runs/qwen2-vl-2b\"", run_dir.as_str()),
        ("\"cuda:0\"", "\"cpu\""),
        ("\"cuda:1\"", "\"cpu\""),
        ("dtype = \"bf16\"", "dtype = \"f32\""),
        ("steps = 200", "steps = 2"),
        ("max_new_tokens = 256", "max_new_tokens = 6"),
        ("batch_groups = 8", "batch_groups = 2"),
        ("batch_prompts = 8", "batch_prompts = 2"),
    ] {
        assert!(
            text.contains(from),
            "configs/qwen2-vl-2b.toml no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

#[test]
fn the_qwen2_vl_2b_config_runs_on_a_tiny_model_of_its_layout_and_names_unset_variables() {
    let path = repo().join("configs/qwen2-vl-2b.toml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let text = shrunk(&shipped, &tmp.path().join("run"));
    for name in ["GRLHF_QWEN2_VL_2B", "GRLHF_GRM", "GRLHF_PROMPTS"] {
        std::env::remove_var(name);
    }
    let err = format!("{:#}", RunConfig::from_toml(&text, &path).unwrap_err());
    assert!(
        err.contains("qwen2-vl-2b.toml: model.policy = `env:GRLHF_QWEN2_VL_2B`")
            && err.contains("GRLHF_QWEN2_VL_2B is not set"),
        "{err}"
    );

    // The prompt file in the documented shape, from the embedded world.
    let data = tmp.path().join("data");
    grlhf::data::generate(&data, 0, 28, false).unwrap();
    // The hub-layout fixture, with a generation_config.json whose eos ids are the whole
    // vocabulary: the random model's responses end after one token, so they are complete and
    // the GRM compares every pair.
    let model = tmp.path().join("Qwen2-VL-tiny");
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(fixture("qwen2_vl_hub")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let vocab = layout["vocab_size"]
        .as_i64()
        .expect("the hub layout is flat");
    let eos: Vec<i64> = (0..vocab).collect();
    std::fs::write(
        model.join("generation_config.json"),
        serde_json::json!({ "eos_token_id": eos }).to_string(),
    )
    .unwrap();
    std::env::set_var("GRLHF_QWEN2_VL_2B", &model);
    std::env::set_var("GRLHF_GRM", &model);
    std::env::set_var("GRLHF_PROMPTS", data.join("prompts_train.jsonl"));
    let config = RunConfig::from_toml(&text, &path).unwrap();
    assert_eq!(config.model.policy, model.display().to_string());
    let outcome = match run(config, &path, Registry::with_builtins(), false) {
        Ok(outcome) => outcome,
        Err(e) => panic!("{e:#}"),
    };
    let s = &outcome.summary;
    assert_eq!(s.learner_steps, 2);
    assert!(s.ledger_balanced, "{:?}", s.ledger_violations);
    // The GRM judged every ordered pair of each group (a random model's judgments do not
    // parse; they count as failures, and the run goes on).
    assert!(s.judgments >= 2 * 2 * 4 * 3, "{} judgments", s.judgments);
    // The resolved config written to the run names the directories, not the variables.
    let resolved = std::fs::read_to_string(outcome.run_dir.join("config.toml")).unwrap();
    assert!(resolved.contains(&model.display().to_string()) && !resolved.contains("env:"));
}

#[test]
fn stage_1_trains_on_a_published_parquet_preference_dataset() {
    // RLAIF-V's layout (JPEG bytes in {bytes, path} structs, chosen / rejected), the GRM being
    // a tiny model with Qwen2-VL-2B-Instruct's config layout.
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture("parquet").join("rlaif_v.parquet");
    let text = format!(
        r#"
mode = "sync"
stage = "grm-rl"
steps = 1
run_dir = {:?}
group_size = 2
batch_groups = 2
[data]
source = "parquet"
path = {:?}
[model]
policy = {:?}
[generator]
max_new_tokens = 4
[[judge]]
kind = "rule_judge"
rule = "grm_preference"
[learner]
warmup_steps = 0
"#,
        tmp.path().join("run").display().to_string(),
        data.display().to_string(),
        fixture("qwen2_vl_hub").display().to_string(),
    );
    let path = Path::new("parquet-grm-rl.toml");
    let config = RunConfig::from_toml(&text, path).unwrap();
    let outcome = match run(config, path, Registry::with_builtins(), false) {
        Ok(outcome) => outcome,
        Err(e) => panic!("{e:#}"),
    };
    assert_eq!(outcome.summary.learner_steps, 1);
    assert!(outcome.summary.ledger_balanced);
    // The embedded images were written into the run, one per row.
    let images = std::fs::read_dir(outcome.run_dir.join("data-images"))
        .unwrap()
        .count();
    assert_eq!(images, 3);
    // [data.fields] belongs to the parquet source only.
    let bad = text.replace("source = \"parquet\"", "source = \"jsonl\"")
        + "\n[data.fields]\nquestion = \"prompt\"\n";
    let err = format!("{:#}", RunConfig::from_toml(&bad, path).unwrap_err());
    assert!(err.contains("data.fields"), "{err}");
}
