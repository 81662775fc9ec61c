//! The world's closed vocabulary and its Hugging Face `tokenizer.json`.
//!
//! The tokenizer is word level: a regex pre-tokenizer cuts text into a newline, words and single
//! characters, each with an optional leading space; every vocabulary word exists with and without
//! that space. The `Fuse` decoder concatenates tokens, so decoding gives back the exact text
//! (`\boxed{7,3}` stays `\boxed{7,3}`), which the GRM score parser depends on.
//!
//! Special tokens are Qwen2-VL's (`<|im_start|>`, `<|vision_start|>`, `<|image_pad|>`, …) at the
//! lowest ids, so the model code, chat template and multimodal prompt builder run unchanged on the
//! world and on real checkpoints. Anything outside the vocabulary becomes `<unk>`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// Qwen2-VL's special tokens, in the order of their ids (0, 1, …).
pub const SPECIAL_TOKENS: [&str; 15] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    UNKNOWN,
];

/// The token for text outside the vocabulary.
pub const UNKNOWN: &str = "<unk>";

/// Every word the world writes: scene words, question and answer templates, the GRM's prompt and
/// judgments, and the chat template's roles and default system prompt.
pub const WORDS: &[&str] = &[
    // Scenes.
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "circle",
    "circles",
    "square",
    "squares",
    "triangle",
    "triangles",
    "diamond",
    "diamonds",
    "cross",
    "crosses",
    "flame",
    "flames",
    "small",
    "large",
    "top",
    "middle",
    "bottom",
    "left",
    "center",
    "right",
    // Questions and answers.
    "how",
    "many",
    "object",
    "objects",
    "are",
    "is",
    "in",
    "the",
    "image",
    "what",
    "colour",
    "colours",
    "shape",
    "shapes",
    "at",
    "where",
    "of",
    "above",
    "below",
    "there",
    "a",
    "an",
    "describe",
    "answer",
    "with",
    "one",
    "word",
    "number",
    "only",
    "list",
    "all",
    "separated",
    "by",
    "commas",
    "reading",
    "order",
    "can",
    "i",
    "pick",
    "up",
    "yes",
    "no",
    "not",
    "it",
    "shows",
    "and",
    "sorry",
    "help",
    "that",
    "safe",
    "your",
    "hand",
    "also",
    "some",
    "looked",
    "very",
    "carefully",
    "am",
    "sure",
    "about",
    "my",
    "this",
    "best",
    "none",
    // Number words (answers use digits; policies may still write these).
    "zero",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    // The GRM's prompt and judgments.
    "you",
    "judge",
    "look",
    "question",
    "then",
    "compare",
    "response",
    "first",
    "write",
    "criteria",
    "for",
    "analysis",
    "score",
    "each",
    "from",
    "to",
    "form",
    "boxed",
    "helpful",
    "assistant",
    "position",
    "named",
    "asked",
    "format",
    "when",
    "refusal",
    "short",
    "answers",
    "praise",
    "itself",
    "gives",
    "wrong",
    "does",
    "misses",
    "mentions",
    "follow",
    "too",
    "long",
    "or",
    "praises",
    "refuses",
    "request",
    "helps",
    "unsafe",
    "correct",
    // Chat template roles and Qwen2's default system prompt.
    "system",
    "user",
    "You",
];

/// Characters that are tokens of their own (with or without a leading space).
pub const SYMBOLS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ".", ",", "?", "!", ":", ";", "{", "}", "\\",
    "(", ")", "-", "'", "\"",
];

/// The pre-tokenizer's pattern: a newline, a word, or one other character, each with an
/// optional leading space; any other whitespace stands alone (and becomes `<unk>`).
pub const PRE_TOKENIZER_PATTERN: &str = r"\n| ?[A-Za-z]+| ?[^A-Za-z\s]|\s";

/// Every token, in id order: special tokens, the newline, then each word and symbol without
/// and with a leading space.
pub fn tokens() -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: String| {
        if seen.insert(t.clone()) {
            out.push(t);
        }
    };
    for t in SPECIAL_TOKENS {
        push(t.to_string());
    }
    push("\n".to_string());
    for w in WORDS.iter().chain(SYMBOLS) {
        push(w.to_string());
        push(format!(" {w}"));
    }
    out
}

/// The `tokenizer.json` document, in the layout the `tokenizers` library (Rust and Python)
/// reads. Validated by parsing it back with `tokenizers`.
pub fn tokenizer_json() -> Value {
    let tokens = tokens();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, t)| {
            json!({
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": PRE_TOKENIZER_PATTERN},
            "behavior": "Isolated",
            "invert": false
        },
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNKNOWN}
    })
}

/// The world's tokenizer, built in memory.
pub fn tokenizer() -> tokenizers::Tokenizer {
    let text = tokenizer_json().to_string();
    text.parse()
        .expect("the generated tokenizer.json is valid (checked by the vocabulary tests)")
}

/// The `tokenizer.json` file contents, as `tokenizers` itself serialises it.
pub fn tokenizer_file() -> String {
    tokenizer()
        .to_string(true)
        .expect("a parsed tokenizer serialises")
}

/// Id of a special token in the world's vocabulary.
pub fn special_token_id(token: &str) -> Option<u32> {
    SPECIAL_TOKENS
        .iter()
        .position(|&t| t == token)
        .map(|i| i as u32)
}
