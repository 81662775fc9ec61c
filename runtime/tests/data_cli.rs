//! `grlhf data generate` / `grlhf data show` as a user drives them, and the world's tokenizer
//! working with the models crate's tokenizer and chat template.

use std::process::{Command, Output};

use grlhf_models::chat_template::{ChatMessage, ChatTemplate, Role};
use grlhf_models::tokenizer::Tokenizer;
use grlhf_tasks::grm_format::{grm_user_message, GRM_SYSTEM_PROMPT};
use grlhf_tasks::jsonl::{load_pairs, LoadOptions};
use grlhf_tasks::vocabulary::UNKNOWN;

fn grlhf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(args)
        .output()
        .expect("grlhf runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn data_generate_writes_a_world_that_show_and_the_models_tokenizer_read() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("world");
    let out_str = out.to_str().unwrap();
    let run = grlhf(&[
        "data", "generate", "--out", out_str, "--n", "28", "--seed", "4",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("pairs_ood_family.jsonl"));

    for file in [
        "prompts_eval.jsonl",
        "pairs_test.jsonl",
        "sft_policy.jsonl",
        "sft_grm.jsonl",
    ] {
        let show = grlhf(&["data", "show", out.join(file).to_str().unwrap(), "-n", "3"]);
        assert!(show.status.success(), "{file}: {}", text(&show.stderr));
        let stdout = text(&show.stdout);
        assert!(stdout.contains("oracle "), "{file}: {stdout}");
        assert!(stdout.contains("3 of "), "{file}: {stdout}");
    }

    // A second run into the same folder is refused, and nothing already written changes.
    let before = std::fs::read(out.join("pairs_train.jsonl")).unwrap();
    let again = grlhf(&["data", "generate", "--out", out_str, "--n", "56"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("pairs_train.jsonl")).unwrap(),
        before
    );

    // The world's tokenizer.json loads in the models crate and covers a chat-templated GRM prompt.
    let tokenizer = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let unk = tokenizer.token_to_id(UNKNOWN).unwrap();
    let pairs = load_pairs(&out.join("pairs_test.jsonl"), LoadOptions::default()).unwrap();
    for pair in &pairs.records {
        let messages = [
            ChatMessage::new(Role::System, GRM_SYSTEM_PROMPT),
            ChatMessage::new(
                Role::User,
                grm_user_message(&pair.question, &pair.response_1, &pair.response_2),
            ),
        ];
        let prompt = ChatTemplate::qwen2().render(&messages, true).unwrap();
        let ids = tokenizer.encode(&prompt, false).unwrap();
        assert!(!ids.contains(&unk), "unknown token in {prompt:?}");
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), prompt);
        assert_eq!(
            ids.iter()
                .filter(|&&id| Some(id) == tokenizer.token_to_id("<|image_pad|>"))
                .count(),
            1
        );
    }
}

#[test]
fn data_show_reports_bad_lines_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("x.png"), b"").unwrap();
    let path = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &path,
        "{\"image\": \"x.png\", \"question\": \"q\", \"response_1\": \"a\", \"response_2\": \"b\", \"preferred\": 1}\n\
         {\"image\": \"x.png\", \"question\": \"q\", \"response_1\": \"a\", \"response_2\": \"b\", \"preferred\": 5}\n",
    )
    .unwrap();
    let path_str = path.to_str().unwrap();
    let strict = grlhf(&["data", "show", path_str]);
    assert!(!strict.status.success());
    let stderr = text(&strict.stderr);
    assert!(
        stderr.contains(&format!("{path_str}:2: field `preferred`")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    let lenient = grlhf(&["data", "show", path_str, "--skip-bad"]);
    assert!(lenient.status.success(), "{}", text(&lenient.stderr));
    assert!(text(&lenient.stdout).contains("oracle n/a"));
    assert!(text(&lenient.stderr).contains("skipped 1 bad lines"));
}

/// The Python `transformers` tokenizer (the reference for real checkpoints) reads the world's
/// tokenizer.json and gives the same ids and text as the Rust side.
#[test]
fn transformers_reads_the_world_tokenizer_identically() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tokenizer.json");
    std::fs::write(&file, grlhf_tasks::vocabulary::tokenizer_file()).unwrap();
    let samples = [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>how many red objects are in the image?<|im_end|>\n<|im_start|>assistant\n",
        "criteria: the right position, short answers.\nanalysis: response 1 is correct.\n\\boxed{9,2}",
        "red, blue, orange zebra  it",
    ];
    let script = r#"
import json, sys
from transformers import PreTrainedTokenizerFast
tok = PreTrainedTokenizerFast(tokenizer_file=sys.argv[1])
out = []
for text in json.loads(sys.argv[2]):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out.append({"ids": ids, "text": tok.decode(ids)})
print(json.dumps(out))
"#;
    let run = Command::new(&python)
        .args([
            "-c",
            script,
            file.to_str().unwrap(),
            &serde_json::to_string(&samples).unwrap(),
        ])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let reference: Vec<serde_json::Value> = serde_json::from_slice(&run.stdout).unwrap();
    let tokenizer = Tokenizer::from_file(&file).unwrap();
    for (sample, expected) in samples.iter().zip(&reference) {
        let ids = tokenizer.encode(sample, false).unwrap();
        let python_ids: Vec<i64> = serde_json::from_value(expected["ids"].clone()).unwrap();
        assert_eq!(ids, python_ids, "{sample:?}");
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            expected["text"].as_str().unwrap()
        );
    }
}

#[test]
fn eval_grm_reports_every_split_of_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let size = grlhf_actors::vl_engine::WorldModelSize::preset("tiny").unwrap();
    grlhf_actors::vl_engine::init_world_model(tmp.path(), size, 0).unwrap();
    let run = grlhf(&[
        "eval-grm",
        "--model",
        tmp.path().to_str().unwrap(),
        "--pairs",
        "7",
        "--max-new-tokens",
        "4",
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let results: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    for split in [
        "pairs_test",
        "pairs_ood_combo",
        "pairs_ood_error",
        "pairs_ood_family",
    ] {
        // An untrained GRM writes no box: nothing parses, nothing is right.
        assert_eq!(results[split]["pairs"], 7, "{results}");
        assert_eq!(results[split]["parsed"], 0.0);
        assert_eq!(results[split]["accuracy"], 0.0);
    }
    let missing = grlhf(&["eval-grm", "--model", "/no/such/dir"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("/no/such/dir"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn data_show_prints_a_published_parquet_preference_dataset() {
    let root = std::env::var_os("GRLHF_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures")
        });
    for (file, first) in [
        ("align_anything.parquet", "It is red."),
        ("rlaif_v.parquet", "The circle is red."),
    ] {
        let path = root.join("parquet").join(file);
        let run = grlhf(&["data", "show", path.to_str().unwrap(), "-n", "2"]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let out = text(&run.stdout);
        assert!(
            out.contains("question:   What colour is the circle?"),
            "{out}"
        );
        assert!(out.contains(&format!("response 1: {first}")), "{out}");
        assert!(
            out.contains("preferred:  1") && out.contains("2 of 3 records shown"),
            "{out}"
        );
    }
    let bad = root.join("parquet").join("bad_row.parquet");
    let run = grlhf(&["data", "show", bad.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("bad_row.parquet:2: field `overall_response`"),
        "{}",
        text(&run.stderr)
    );
    let run = grlhf(&["data", "show", bad.to_str().unwrap(), "--skip-bad"]);
    assert!(run.status.success());
    assert!(
        text(&run.stderr).contains("skipped 1 bad"),
        "{}",
        text(&run.stderr)
    );
}
