//! Parsing of `--tokens "1 2 3"` lists.

use anyhow::{bail, Result};

/// Parses whitespace- or comma-separated token ids, naming the bad entry on error.
pub fn parse_token_list(text: &str) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for (i, part) in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        match part.parse::<i64>() {
            Ok(id) => ids.push(id),
            Err(_) => bail!("--tokens: entry {i} (`{part}`) is not an integer token id"),
        }
    }
    if ids.is_empty() {
        bail!("--tokens: no token ids given");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_names_bad_entries() {
        assert_eq!(parse_token_list(" 1 2,3\n4 ").unwrap(), vec![1, 2, 3, 4]);
        let err = parse_token_list("1 x 3").unwrap_err().to_string();
        assert!(err.contains("entry 1") && err.contains("`x`"), "{err}");
        assert!(parse_token_list("  ").is_err());
    }
}
