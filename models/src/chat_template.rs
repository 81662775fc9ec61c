//! The Qwen2 chat template, written in Rust (no Jinja at run time).
//!
//! It renders exactly what the `chat_template` of Qwen2-Instruct checkpoints renders:
//!
//! ```text
//! <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n     (only if no system message)
//! <|im_start|>{role}\n{content}<|im_end|>\n                         (each message)
//! <|im_start|>assistant\n                                           (add_generation_prompt)
//! ```
//!
//! Qwen2.5 checkpoints use a different default system prompt; set it with
//! [`ChatTemplate::with_default_system`].

use serde::{Deserialize, Serialize};

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

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// Renders conversations in the Qwen2 chat format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// Inserted when the conversation does not start with a system message.
    pub default_system: Option<String>,
}

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate::qwen2()
    }
}

impl ChatTemplate {
    /// The template of Qwen2-Instruct (and Qwen2-VL-Instruct for text-only messages).
    pub fn qwen2() -> ChatTemplate {
        ChatTemplate {
            default_system: Some("You are a helpful assistant.".to_string()),
        }
    }

    pub fn with_default_system(mut self, system: Option<&str>) -> ChatTemplate {
        self.default_system = system.map(str::to_string);
        self
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        let starts_with_system = messages.first().is_some_and(|m| m.role == Role::System);
        if !messages.is_empty() && !starts_with_system {
            if let Some(system) = &self.default_system {
                push_turn(&mut out, "system", system);
            }
        }
        for message in messages {
            push_turn(&mut out, message.role.as_str(), &message.content);
        }
        if add_generation_prompt {
            out.push_str(IM_START);
            out.push_str("assistant\n");
        }
        out
    }
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
            t.render(&user, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = [
            ChatMessage::new(Role::System, "S"),
            ChatMessage::new(Role::User, "hi"),
        ];
        assert_eq!(
            t.render(&with_system, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
        assert_eq!(t.render(&[], false), "");
    }
}
