//! The tokenizer and the chat template against the Python `tokenizers` / `transformers`
//! reference (fixture built by `scripts/make_fixtures.py`).

mod support;

use grlhf_models::chat_template::{ChatMessage, ChatTemplate, Role};
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
        let rendered = template.render(&messages, add).unwrap();
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

/// A fixture conversation (transformers' message form) as grlhf's messages: string content,
/// or a list of image and text parts.
fn messages_of(value: &serde_json::Value) -> Vec<ChatMessage> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let role: Role = serde_json::from_value(m["role"].clone()).unwrap();
            match &m["content"] {
                serde_json::Value::String(text) => ChatMessage::new(role, text.clone()),
                parts => {
                    ChatMessage::with_parts(role, serde_json::from_value(parts.clone()).unwrap())
                }
            }
        })
        .collect()
}

#[test]
fn checkpoint_chat_templates_render_byte_for_byte_as_transformers_renders_them() {
    // Qwen2's, Qwen2.5's (its own default system prompt, tool-use branches) and Qwen2-VL's
    // (image parts), from each file form a checkpoint ships its template in.
    for (case, file) in [
        ("qwen2", "tokenizer_config.json"),
        ("qwen2_5", "chat_template.jinja"),
        ("qwen2_vl", "chat_template.json"),
        ("qwen2_vl_named", "tokenizer_config.json"),
    ] {
        let dir = fixtures().join("chat_templates").join(case);
        let template = ChatTemplate::from_dir(&dir)
            .unwrap()
            .expect("the directory has a template");
        assert_eq!(template.origin(), Some(dir.join(file).as_path()), "{case}");
        let expected = read_json(dir.join("expected.json"));
        let chats = expected["chats"].as_array().unwrap();
        assert!(chats.len() >= 3);
        for chat in chats {
            let messages = messages_of(&chat["messages"]);
            let add = chat["add_generation_prompt"].as_bool().unwrap();
            assert_eq!(
                template.render(&messages, add).unwrap(),
                chat["rendered"].as_str().unwrap(),
                "{case}: {}",
                chat["messages"]
            );
        }
    }
    // Without a template file, the built-in Qwen2 one; the fallback renders image parts as
    // Qwen2-VL's template does.
    let bare = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_dir(bare.path()).unwrap().is_none());
    let builtin = ChatTemplate::for_dir(bare.path()).unwrap();
    assert_eq!(builtin.origin(), None);
    let vl = fixtures().join("chat_templates").join("qwen2_vl");
    let chats = read_json(vl.join("expected.json"));
    for chat in chats["chats"].as_array().unwrap() {
        let messages = messages_of(&chat["messages"]);
        let add = chat["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            builtin.render(&messages, add).unwrap(),
            chat["rendered"].as_str().unwrap()
        );
    }
}

#[test]
fn a_broken_template_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{% for m in messages %}",
    )
    .unwrap();
    let err = ChatTemplate::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("chat_template.jinja"), "{err}");
    std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": 7}"#,
    )
    .unwrap();
    let err = ChatTemplate::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("chat_template"),
        "{err}"
    );
}
