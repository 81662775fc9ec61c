//! Chat templates: how a conversation becomes prompt text.
//!
//! A checkpoint directory that ships its own template — `chat_template.jinja`,
//! `chat_template.json` or `tokenizer_config.json`'s `chat_template`, looked up in that order —
//! is rendered with that Jinja template through minijinja, configured as transformers configures
//! Jinja for `apply_chat_template` (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, Python's string methods), so the text is byte for byte what
//! transformers renders. A directory without one (the embedded world's models) falls back to the
//! Qwen2 template written in Rust:
//!
//! ```text
//! <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n     (only if no system message)
//! <|im_start|>{role}\n{content}<|im_end|>\n                         (each message)
//! <|im_start|>assistant\n                                           (add_generation_prompt)
//! ```
//!
//! A message's content is text, or parts — images and text — as multimodal templates take them
//! (`[{"type": "image"}, {"type": "text", "text": …}]`); the fallback renders an image part as
//! Qwen2-VL's `<|vision_start|><|image_pad|><|vision_end|>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One part of a multimodal message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentPart {
    Image,
    Text { text: String },
}

/// One turn of a conversation: text, or (when `parts` is not empty) parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ContentPart>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            parts: Vec::new(),
        }
    }

    pub fn with_parts(role: Role, parts: Vec<ContentPart>) -> ChatMessage {
        ChatMessage {
            role,
            content: String::new(),
            parts,
        }
    }

    /// The message as a template sees it: `{role, content}` with content a string or a list.
    fn to_value(&self) -> serde_json::Value {
        let content = if self.parts.is_empty() {
            serde_json::Value::String(self.content.clone())
        } else {
            serde_json::to_value(&self.parts).expect("parts serialise")
        };
        serde_json::json!({"role": self.role.as_str(), "content": content})
    }

    /// The text the built-in template writes for the content.
    fn flat_content(&self) -> String {
        if self.parts.is_empty() {
            return self.content.clone();
        }
        self.parts
            .iter()
            .map(|p| match p {
                ContentPart::Image => "<|vision_start|><|image_pad|><|vision_end|>",
                ContentPart::Text { text } => text.as_str(),
            })
            .collect()
    }
}

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// A checkpoint's Jinja template, compiled.
struct Jinja {
    env: minijinja::Environment<'static>,
    origin: PathBuf,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

#[derive(Clone)]
enum Source {
    /// The Qwen2 template written in Rust; `default_system` is inserted when the conversation
    /// does not start with a system message.
    Builtin {
        default_system: Option<String>,
    },
    Jinja(Arc<Jinja>),
}

/// Renders conversations into prompt text.
#[derive(Clone)]
pub struct ChatTemplate {
    source: Source,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Builtin { default_system } => f
                .debug_struct("ChatTemplate::Builtin")
                .field("default_system", default_system)
                .finish(),
            Source::Jinja(j) => f
                .debug_struct("ChatTemplate::Jinja")
                .field("origin", &j.origin)
                .finish(),
        }
    }
}

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate::qwen2()
    }
}

/// Where a directory's template may be, in the order transformers prefers them.
const TEMPLATE_FILES: [&str; 3] = [
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer_config.json",
];

/// `bos_token` / `eos_token` in `tokenizer_config.json`: a string, or an added-token object.
fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match &config[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

impl ChatTemplate {
    /// The built-in Qwen2-Instruct template (also Qwen2-VL-Instruct's for text-only messages).
    pub fn qwen2() -> ChatTemplate {
        ChatTemplate {
            source: Source::Builtin {
                default_system: Some("You are a helpful assistant.".to_string()),
            },
        }
    }

    /// The built-in template with another default system prompt (none: no system turn is
    /// added). A checkpoint's own template is left as it is: its default is its own.
    pub fn with_default_system(mut self, system: Option<&str>) -> ChatTemplate {
        if let Source::Builtin { default_system } = &mut self.source {
            *default_system = system.map(str::to_string);
        }
        self
    }

    /// A Jinja template's text, compiled; `origin` names it in errors.
    pub fn from_jinja(
        text: &str,
        origin: &Path,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate> {
        let error = |e: minijinja::Error| ModelError::ChatTemplate {
            path: origin.to_path_buf(),
            message: e.to_string(),
        };
        let mut env = minijinja::Environment::new();
        // As transformers' `_compile_jinja_template`.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template_owned("chat_template", text.to_string())
            .map_err(error)?;
        Ok(ChatTemplate {
            source: Source::Jinja(Arc::new(Jinja {
                env,
                origin: origin.to_path_buf(),
                bos_token,
                eos_token,
            })),
        })
    }

    /// The template a checkpoint directory ships, if any (see the module docs for where it is
    /// looked for). A template that is present but unusable is an error naming its file.
    pub fn from_dir(dir: &Path) -> Result<Option<ChatTemplate>> {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e));
        let json = |path: &Path, text: &str| -> Result<serde_json::Value> {
            serde_json::from_str(text).map_err(|e| ModelError::ConfigParse {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })
        };
        let tokenizer_config = dir.join("tokenizer_config.json");
        let config = match tokenizer_config.is_file() {
            true => json(&tokenizer_config, &read(&tokenizer_config)?)?,
            false => serde_json::Value::Null,
        };
        let (bos, eos) = (
            special_token(&config, "bos_token"),
            special_token(&config, "eos_token"),
        );
        for file in TEMPLATE_FILES {
            let path = dir.join(file);
            if !path.is_file() {
                continue;
            }
            let text = match file {
                "chat_template.jinja" => Some(read(&path)?),
                "chat_template.json" => {
                    let value = json(&path, &read(&path)?)?;
                    template_text(&value["chat_template"], &path)?
                }
                _ => template_text(&config["chat_template"], &path)?,
            };
            if let Some(text) = text {
                return ChatTemplate::from_jinja(&text, &path, bos, eos).map(Some);
            }
        }
        Ok(None)
    }

    /// The directory's own template, else the built-in Qwen2 one.
    pub fn for_dir(dir: &Path) -> Result<ChatTemplate> {
        Ok(ChatTemplate::from_dir(dir)?.unwrap_or_else(ChatTemplate::qwen2))
    }

    /// The file the template came from (`None`: the built-in one).
    pub fn origin(&self) -> Option<&Path> {
        match &self.source {
            Source::Builtin { .. } => None,
            Source::Jinja(j) => Some(&j.origin),
        }
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        match &self.source {
            Source::Builtin { default_system } => Ok(render_builtin(
                default_system.as_deref(),
                messages,
                add_generation_prompt,
            )),
            Source::Jinja(j) => {
                let messages: Vec<serde_json::Value> =
                    messages.iter().map(ChatMessage::to_value).collect();
                let template = j
                    .env
                    .get_template("chat_template")
                    .expect("the template was added at construction");
                template
                    .render(minijinja::context! {
                        messages => messages,
                        add_generation_prompt => add_generation_prompt,
                        bos_token => j.bos_token.clone().unwrap_or_default(),
                        eos_token => j.eos_token.clone().unwrap_or_default(),
                    })
                    .map_err(|e| ModelError::ChatTemplate {
                        path: j.origin.clone(),
                        message: e.to_string(),
                    })
            }
        }
    }
}

/// `chat_template` as `tokenizer_config.json` / `chat_template.json` hold it: the text, or a
/// list of named templates (the one named `default` is the chat template).
fn template_text(value: &serde_json::Value, path: &Path) -> Result<Option<String>> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| ModelError::ConfigValue {
                path: path.to_path_buf(),
                field: "chat_template".into(),
                message: "a list of templates without one named `default`".into(),
            }),
        _ => Err(ModelError::ConfigValue {
            path: path.to_path_buf(),
            field: "chat_template".into(),
            message: "expected a string or a list of {name, template}".into(),
        }),
    }
}

fn render_builtin(
    default_system: Option<&str>,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> String {
    let mut out = String::new();
    let starts_with_system = messages.first().is_some_and(|m| m.role == Role::System);
    if !messages.is_empty() && !starts_with_system {
        if let Some(system) = default_system {
            push_turn(&mut out, "system", system);
        }
    }
    for message in messages {
        push_turn(&mut out, message.role.as_str(), &message.flat_content());
    }
    if add_generation_prompt {
        out.push_str(IM_START);
        out.push_str("assistant\n");
    }
    out
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str(IM_START);
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str(IM_END);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_default_system_only_when_missing() {
        let t = ChatTemplate::qwen2();
        let user = [ChatMessage::new(Role::User, "hi")];
        assert_eq!(
            t.render(&user, true).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = [
            ChatMessage::new(Role::System, "S"),
            ChatMessage::new(Role::User, "hi"),
        ];
        assert_eq!(
            t.render(&with_system, false).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
        assert_eq!(t.render(&[], false).unwrap(), "");
    }

    #[test]
    fn a_template_that_raises_or_does_not_parse_is_an_error_naming_its_file() {
        let origin = Path::new("dir/tokenizer_config.json");
        let raising = ChatTemplate::from_jinja(
            "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('no assistant first') }}{% endif %}",
            origin,
            None,
            None,
        )
        .unwrap();
        let err = raising
            .render(&[ChatMessage::new(Role::Assistant, "x")], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dir/tokenizer_config.json") && err.contains("no assistant first"),
            "{err}"
        );
        let err = ChatTemplate::from_jinja("{% for %}", origin, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("chat template dir/tokenizer_config.json"),
            "{err}"
        );
    }
}
