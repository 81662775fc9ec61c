//! Text ⇄ token ids through a Hugging Face `tokenizer.json`, via the `tokenizers` crate (no hub
//! access: files are read from disk only).

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Reads a `tokenizer.json` file, or the one inside a model directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer.json");
        }
        if !path.exists() {
            return Err(ModelError::Tokenizer {
                path,
                message: "file not found".to_string(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Tokenizer { inner, path })
    }

    fn error(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) are recognised.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// Text of `ids`; ids outside the vocabulary are an error, not an empty string.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size() as i64;
        let mut ids32 = Vec::with_capacity(ids.len());
        for (position, &id) in ids.iter().enumerate() {
            if id < 0 || id >= size {
                return Err(ModelError::TokenOutOfRange {
                    what: format!("decode with {}", self.path.display()),
                    token: id,
                    position,
                    vocab_size: size,
                });
            }
            ids32.push(id as u32);
        }
        self.inner
            .decode(&ids32, skip_special_tokens)
            .map_err(|e| self.error(e))
    }

    /// The id of a token (special or not), if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
