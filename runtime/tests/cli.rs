//! The `grlhf` binary as a user drives it: doctor, inspect logits, generate, init-model, and
//! the errors it gives for bad input (exit status 1 and a message naming the problem).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn grlhf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(args)
        .output()
        .expect("grlhf runs")
}

fn ok_stdout(args: &[&str]) -> String {
    let out = grlhf(args);
    assert!(
        out.status.success(),
        "grlhf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn err_stderr(args: &[&str]) -> String {
    let out = grlhf(args);
    assert!(!out.status.success(), "grlhf {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("panicked"),
        "grlhf {args:?} panicked: {stderr}"
    );
    stderr
}

/// The fixture directory written by `make fixtures`.
fn fixtures_root() -> PathBuf {
    std::env::var_os("GRLHF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"))
}

fn fixture(case: &str) -> (PathBuf, Value) {
    let dir = fixtures_root().join("qwen2").join(case);
    assert!(
        dir.exists(),
        "{} missing: run `make fixtures`",
        dir.display()
    );
    let expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn token_string(ids: &Value) -> String {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn doctor_reports_libtorch_and_cuda() {
    let report: Value = serde_json::from_str(&ok_stdout(&["doctor", "--json"])).unwrap();
    assert!(
        report["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{report}"
    );
    let cuda = report["cuda_available"].as_bool().unwrap();
    let count = report["cuda_device_count"].as_i64().unwrap();
    assert_eq!(cuda, count > 0, "{report}");
    assert!(report["intra_op_threads"].as_i64().unwrap() >= 1);
    let text = ok_stdout(&["doctor"]);
    assert!(
        text.contains("libtorch") && text.contains("CUDA available") && text.contains("threads"),
        "{text}"
    );
}

#[test]
fn inspect_logits_prints_the_transformers_logits() {
    let (dir, expected) = fixture("gqa_tied_f32");
    let prompt = &expected["prompts"][1];
    let want = &expected["logits"][1];
    let (seq, vocab) = (
        want["shape"][0].as_u64().unwrap() as usize,
        want["shape"][1].as_u64().unwrap() as usize,
    );
    let want: Vec<f64> = want["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let model = dir.to_str().unwrap();
    let tokens = token_string(prompt);

    let last: Value = serde_json::from_str(&ok_stdout(&[
        "inspect", "logits", "--model", model, "--tokens", &tokens,
    ]))
    .unwrap();
    assert_eq!(last["shape"], serde_json::json!([vocab]));
    let got: Vec<f64> = last["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let err = got
        .iter()
        .zip(&want[(seq - 1) * vocab..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err <= 1e-4, "last-position logits differ by {err}");

    let all: Value = serde_json::from_str(&ok_stdout(&[
        "inspect", "logits", "--model", model, "--tokens", &tokens, "--all",
    ]))
    .unwrap();
    assert_eq!(all["shape"], serde_json::json!([seq, vocab]));
    assert_eq!(all["logits"].as_array().unwrap().len(), seq * vocab);
}

#[test]
fn generate_reproduces_transformers_greedy_output() {
    let (dir, expected) = fixture("mha_untied_f32_sharded");
    let n = expected["max_new_tokens"].to_string();
    let out: Value = serde_json::from_str(&ok_stdout(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--tokens",
        &token_string(&expected["prompts"][0]),
        "--max-new-tokens",
        &n,
        "--greedy",
        "--ignore-eos",
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["samples"][0]["tokens"], expected["greedy"][0]);
    assert_eq!(out["samples"][0]["finish_reason"], "length");
}

#[test]
fn init_model_then_seeded_sampling_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    let model = model.to_str().unwrap();
    let text = ok_stdout(&[
        "init-model",
        "--preset",
        "tiny",
        "--out",
        model,
        "--seed",
        "3",
    ]);
    assert!(text.contains("tiny"), "{text}");
    let args = [
        "generate",
        "--model",
        model,
        "--tokens",
        "5 6 7",
        "--temperature",
        "1.0",
        "--top-k",
        "50",
        "--num-samples",
        "3",
        "--max-new-tokens",
        "8",
        "--seed",
        "9",
        "--json",
    ];
    let a: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
    let b: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
    assert_eq!(a["samples"], b["samples"]);
    assert_eq!(a["samples"].as_array().unwrap().len(), 3);
    for s in a["samples"].as_array().unwrap() {
        assert_eq!(
            s["tokens"].as_array().unwrap().len(),
            s["logprobs"].as_array().unwrap().len()
        );
    }
}

#[test]
fn bad_input_gives_a_clear_error_not_a_panic() {
    let (dir, _) = fixture("gqa_tied_f32");
    let model = dir.to_str().unwrap();
    let err = err_stderr(&["inspect", "logits", "--model", model, "--tokens", "1 2 320"]);
    assert!(
        err.contains("320") && err.contains("vocab_size = 320"),
        "{err}"
    );
    let err = err_stderr(&["inspect", "logits", "--model", model, "--tokens", "1 two"]);
    assert!(err.contains("`two`"), "{err}");
    let err = err_stderr(&[
        "inspect",
        "logits",
        "--model",
        "/nonexistent/model",
        "--tokens",
        "1",
    ]);
    assert!(err.contains("/nonexistent/model"), "{err}");
    let err = err_stderr(&[
        "inspect", "logits", "--model", model, "--tokens", "1", "--dtype", "int4",
    ]);
    assert!(err.contains("int4"), "{err}");
    let err = err_stderr(&[
        "inspect", "logits", "--model", model, "--tokens", "1", "--device", "cuda:64",
    ]);
    assert!(err.contains("cuda:64"), "{err}");
    let err = err_stderr(&[
        "generate", "--model", model, "--tokens", "1", "--top-p", "0.5",
    ]);
    assert!(err.contains("--temperature"), "{err}");
    let err = err_stderr(&["generate", "--model", model, "--prompt", "hello"]);
    assert!(err.contains("tokenizer.json"), "{err}");
    let err = err_stderr(&[
        "generate",
        "--model",
        model,
        "--tokens",
        "1",
        "--temperature=-1",
    ]);
    assert!(err.contains("temperature"), "{err}");
    let err = err_stderr(&["init-model", "--preset", "giant", "--out", "/tmp/never"]);
    assert!(err.contains("giant"), "{err}");
}

#[test]
fn prompt_text_goes_through_tokenizer_and_chat_template() {
    // A model directory with the fixture tokenizer and a random model of its vocabulary size.
    let root = fixtures_root();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().to_str().unwrap();
    ok_stdout(&["init-model", "--preset", "tiny", "--out", model]);
    std::fs::copy(
        root.join("tokenizer/tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let out: Value = serde_json::from_str(&ok_stdout(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "How many red circles?",
        "--chat",
        "--max-new-tokens",
        "4",
        "--json",
    ]))
    .unwrap();
    // "<|im_start|>" is id 1 in the fixture tokenizer and opens the system turn.
    assert_eq!(out["prompt_tokens"][0], 1);
    assert!(out["stop_token_ids"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(2)));
    assert!(out["samples"][0]["text"].is_string());

    // With the checkpoint's own template (Qwen2.5's: its default system prompt) and --system.
    let prompt_ids = |extra: &[&str]| -> Vec<i64> {
        let mut args = vec![
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--chat",
            "--max-new-tokens",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
        serde_json::from_value(out["prompt_tokens"].clone()).unwrap()
    };
    let builtin = prompt_ids(&[]);
    std::fs::copy(
        root.join("chat_templates/qwen2_5/chat_template.jinja"),
        tmp.path().join("chat_template.jinja"),
    )
    .unwrap();
    let own = prompt_ids(&[]);
    let with_system = prompt_ids(&["--system", "Be brief."]);
    let tokenizer = grlhf_models::tokenizer::Tokenizer::from_file(tmp.path()).unwrap();
    let text = |ids: &[i64]| tokenizer.decode(ids, false).unwrap();
    assert!(
        text(&builtin).contains("You are a helpful assistant."),
        "{}",
        text(&builtin)
    );
    assert!(
        text(&own).contains("You are Qwen, created by Alibaba Cloud."),
        "{}",
        text(&own)
    );
    assert_eq!(
        text(&with_system),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn images_drive_vision_language_checkpoints() {
    let root = fixtures_root();
    let images = root.join("images");
    let (img0, img3) = (
        images.join("image_0_50x30.png"),
        images.join("image_3_97x203.png"),
    );
    let (img0, img3) = (img0.to_str().unwrap(), img3.to_str().unwrap());
    for arch in ["qwen2_vl", "qwen2_5_vl"] {
        let dir = root.join(arch);
        let model = dir.to_str().unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let case = &expected["cases"][1];
        let tokens = token_string(&case["raw_ids"]);
        let n = expected["max_new_tokens"].to_string();
        let out: Value = serde_json::from_str(&ok_stdout(&[
            "generate",
            "--model",
            model,
            "--tokens",
            &tokens,
            "--image",
            img0,
            "--image",
            img3,
            "--max-new-tokens",
            &n,
            "--greedy",
            "--ignore-eos",
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            out["prompt_tokens"], case["input_ids"],
            "{arch}: expanded prompt"
        );
        assert_eq!(
            out["samples"][0]["tokens"], case["greedy"],
            "{arch}: greedy with images"
        );
        let logits: Value = serde_json::from_str(&ok_stdout(&[
            "inspect", "logits", "--model", model, "--tokens", &tokens, "--image", img0, "--image",
            img3,
        ]))
        .unwrap();
        assert_eq!(
            logits["shape"],
            serde_json::json!([case["logits"]["shape"][1]])
        );
        let err = err_stderr(&[
            "generate", "--model", model, "--tokens", &tokens, "--image", img0,
        ]);
        assert!(
            err.contains("2 image placeholder") && err.contains("1 image"),
            "{err}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let corrupt = tmp.path().join("broken.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let vl = root.join("qwen2_vl");
    let err = err_stderr(&[
        "generate",
        "--model",
        vl.to_str().unwrap(),
        "--tokens",
        "1 5 2",
        "--image",
        corrupt.to_str().unwrap(),
    ]);
    assert!(err.contains("broken.png"), "{err}");
    let (text_model, _) = fixture("gqa_tied_f32");
    let err = err_stderr(&[
        "inspect",
        "logits",
        "--model",
        text_model.to_str().unwrap(),
        "--tokens",
        "1 2",
        "--image",
        img0,
    ]);
    assert!(err.contains("text-only"), "{err}");
}

#[test]
fn kinds_lists_every_role_and_the_built_in_kinds_with_their_fields() {
    let text = ok_stdout(&["kinds"]);
    let roles = [
        "judge ([[judge]] kind):",
        "post_judge ([[post_judge]] kind):",
        "workflow ([workflow] kind):",
        "prompt_source ([data] source):",
        "loss ([learner.loss] kind):",
        "metric ([evaluator] metric):",
    ];
    let mut at = 0;
    for role in roles {
        let found = text[at..]
            .find(role)
            .unwrap_or_else(|| panic!("{role} missing or out of order:\n{text}"));
        at += found;
    }
    for line in [
        "  rule_judge ",
        "      rule                         one of grm_preference | oracle | reference_overlap",
        "  grm_judge ",
        "  scalar_rm_judge ",
        "  single_turn ",
        "  world ",
        "      world_size                   unsigned int",
        "  jsonl ",
        "      path                         string",
        "  grpo ",
        "      normalize_std                bool",
        "      is_cap                       option<f64>",
        "  oracle ",
        "  reference_overlap ",
    ] {
        assert!(text.contains(line), "`{line}` missing:\n{text}");
    }
    // Only the built-ins: the example crate's kinds live in its own binary.
    assert!(
        !text.contains("clarify") && !text.contains("rloo"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok_stdout(&["kinds", "--json"])).unwrap();
    let kinds = json.as_array().unwrap();
    assert_eq!(kinds.iter().filter(|k| k["role"] == "loss").count(), 1);
    assert!(kinds
        .iter()
        .any(|k| k["kind"] == "rule_judge" && k["role"] == "judge"));
}

#[test]
fn generation_config_sets_decoding_and_the_repetition_penalty_matches_transformers() {
    // The checkpoint asks for greedy decoding with a repetition penalty of 1.8 and eos ids
    // [2, 7]; transformers' greedy continuations with and without the penalty are expected.
    let dir = fixtures_root().join("qwen2").join("repetition_penalty");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let model = dir.to_str().unwrap();
    let steps = expected["max_new_tokens"].to_string();
    let continuation = |prompt: &str, extra: &[&str]| -> Value {
        let mut args = vec![
            "generate",
            "--model",
            model,
            "--tokens",
            prompt,
            "--max-new-tokens",
            &steps,
            "--ignore-eos",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
        out["samples"][0]["tokens"].clone()
    };
    for case in expected["cases"].as_array().unwrap() {
        let prompt: Vec<String> = case["prompt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        let prompt = prompt.join(" ");
        assert_eq!(continuation(&prompt, &[]), case["penalised"], "{prompt}");
        // --greedy keeps the checkpoint's penalty; --repetition-penalty 1 turns it off.
        assert_eq!(continuation(&prompt, &["--greedy"]), case["penalised"]);
        assert_eq!(
            continuation(&prompt, &["--repetition-penalty", "1"]),
            case["plain"],
            "{prompt}"
        );
    }
    // Its eos ids stop generation unless told otherwise.
    let out: Value = serde_json::from_str(&ok_stdout(&[
        "generate",
        "--model",
        model,
        "--tokens",
        "5 6",
        "--max-new-tokens",
        "2",
        "--json",
    ]))
    .unwrap();
    let stops = out["stop_token_ids"].as_array().unwrap();
    assert!(stops.contains(&serde_json::json!(2)) && stops.contains(&serde_json::json!(7)));
    let err = err_stderr(&[
        "generate",
        "--model",
        model,
        "--tokens",
        "5",
        "--repetition-penalty",
        "0",
    ]);
    assert!(err.contains("repetition_penalty"), "{err}");
}
