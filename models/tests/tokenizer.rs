//! The tokenizer and the chat template against the Python `tokenizers` / `transformers`
//! reference (fixture built by `scripts/make_fixtures.py`).

mod support;

use grlhf_models::chat_template::{ChatMessage, ChatTemplate};
use grlhf_models::tokenizer::Tokenizer;
use support::*;

#[test]
fn encode_and_decode_match_python() {
    let dir = fixtures().join("tokenizer");
    let tok = Tokenizer::from_file(&dir).unwrap();
    let expected = read_json(dir.join("expected.json"));
    for case in expected["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(
            tok.encode(text, false).unwrap(),
            want,
            "encoding of {text:?}"
        );
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
}

#[test]
fn chat_template_matches_transformers_rendering() {
    let dir = fixtures().join("tokenizer");
    let tok = Tokenizer::from_file(&dir).unwrap();
    let expected = read_json(dir.join("expected.json"));
    let template = ChatTemplate::qwen2();
    for chat in expected["chats"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let add = chat["add_generation_prompt"].as_bool().unwrap();
        let rendered = template.render(&messages, add);
        assert_eq!(rendered, chat["rendered"].as_str().unwrap());
        assert_eq!(tok.encode(&rendered, false).unwrap(), ids(&chat["ids"]));
    }
}

#[test]
fn bad_tokenizer_inputs_are_errors() {
    let dir = fixtures().join("tokenizer");
    let tok = Tokenizer::from_file(&dir).unwrap();
    let err = tok.decode(&[1, 100_000], false).unwrap_err().to_string();
    assert!(
        err.contains("100000") && err.contains("position 1"),
        "{err}"
    );
    let missing = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_file(missing.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not found"),
        "{err}"
    );
    let corrupt = missing.path().join("tokenizer.json");
    std::fs::write(&corrupt, "{ not json").unwrap();
    let err = Tokenizer::from_file(&corrupt).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
