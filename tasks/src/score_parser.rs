//! Parses the GRM's verdict: exactly one `\boxed{s1,s2}` with two integer scores in 1..=10.
//!
//! Stage 1's reward and stage 2's grouped comparison both depend on this parser, and a policy
//! under RL pressure will find every lenient corner of it, so it is strict and total: any input,
//! however large or malformed, returns the two scores or a typed [`ScoreParseError`], in time
//! linear in the input, without panicking.

use thiserror::Error;

/// The box marker the GRM writes before its scores.
pub const BOX_OPEN: &str = "\\boxed{";
/// Lowest and highest score a judgment may give.
pub const SCORE_RANGE: std::ops::RangeInclusive<u32> = 1..=10;

/// Why a judgment carries no usable scores.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScoreParseError {
    #[error("no \\boxed{{...}} in the judgment")]
    NoBox,
    #[error("{count} \\boxed{{...}} in the judgment; exactly one is allowed")]
    SeveralBoxes { count: usize },
    #[error("\\boxed{{ is never closed")]
    Unclosed,
    #[error("the box holds a nested brace")]
    Nested,
    #[error("the box holds {found} values; exactly two scores are needed")]
    WrongArity { found: usize },
    #[error("`{value}` is not an integer score")]
    NotANumber { value: String },
    #[error("score {value} is outside 1..=10")]
    OutOfRange { value: String },
}

/// Reads `(score of response 1, score of response 2)` from a judgment.
pub fn parse_scores(judgment: &str) -> Result<(u8, u8), ScoreParseError> {
    let count = judgment.matches(BOX_OPEN).count();
    match count {
        0 => return Err(ScoreParseError::NoBox),
        1 => {}
        count => return Err(ScoreParseError::SeveralBoxes { count }),
    }
    let start = judgment.find(BOX_OPEN).expect("counted above") + BOX_OPEN.len();
    let rest = &judgment[start..];
    let close = rest.find('}').ok_or(ScoreParseError::Unclosed)?;
    let content = &rest[..close];
    if content.contains('{') {
        return Err(ScoreParseError::Nested);
    }
    if content.trim().is_empty() {
        return Err(ScoreParseError::WrongArity { found: 0 });
    }
    let values: Vec<&str> = content.split(',').collect();
    if values.len() != 2 {
        return Err(ScoreParseError::WrongArity {
            found: values.len(),
        });
    }
    Ok((parse_score(values[0])?, parse_score(values[1])?))
}

fn parse_score(raw: &str) -> Result<u8, ScoreParseError> {
    let value = raw.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScoreParseError::NotANumber {
            value: shorten(value),
        });
    }
    // All digits: anything that does not fit in a u32 is out of range, not "not a number".
    match value.parse::<u32>() {
        Ok(n) if SCORE_RANGE.contains(&n) => Ok(n as u8),
        _ => Err(ScoreParseError::OutOfRange {
            value: shorten(value),
        }),
    }
}

/// Error messages quote at most 40 characters of what they reject.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}
