//! `grlhf data generate|show`: writes the embedded multimodal world to a folder, or prints
//! records of a prompt, preference or warm-start JSONL file with their oracle scores.

use std::path::Path;

use crate::data;
use anyhow::Result;

/// `data generate`: the world's splits (JSONL + PNG + tokenizer.json) in `out`.
pub fn generate(out: &Path, seed: u64, n: usize, force: bool) -> Result<()> {
    data::generate(out, seed, n, force)?;
    Ok(())
}

/// `data show`: the first `count` records of `file`.
pub fn show(file: &Path, count: usize, skip_bad: bool) -> Result<()> {
    data::show(file, count, skip_bad)
}
