//! The generative reward model's input and output text, in the paper's structure: a system prompt
//! that asks for criteria, an analysis and two integer scores in `\boxed{s1,s2}`; a user turn with
//! the image, the question and both responses; and (for warm-start data) a judgment in that form.
//!
//! The strings are plain text so that this crate needs no model code; the caller renders them
//! with the model's chat template. The user turn starts with [`IMAGE_PLACEHOLDER`], which the
//! multimodal prompt builder expands to the image's tokens.

use crate::oracle::OracleScore;
use crate::score_parser::BOX_OPEN;
use crate::task::Family;

/// Qwen2-VL's image block in a chat turn.
pub const IMAGE_PLACEHOLDER: &str = "<|vision_start|><|image_pad|><|vision_end|>";

/// The GRM's system prompt.
pub const GRM_SYSTEM_PROMPT: &str = "you are a judge. look at the image and the question, then \
compare response 1 and response 2. first write the criteria for this question, then an \
analysis, then score each response from 1 to 10 in the form \\boxed{score 1,score 2}.";

/// The policy's system prompt on the embedded world.
pub const POLICY_SYSTEM_PROMPT: &str =
    "you are a helpful assistant. answer the question about the image.";

/// The user turn of a GRM judgment request.
pub fn grm_user_message(question: &str, response_1: &str, response_2: &str) -> String {
    format!(
        "{IMAGE_PLACEHOLDER}question: {question}\nresponse 1: {response_1}\nresponse 2: {response_2}"
    )
}

/// The user turn of a policy request.
pub fn policy_user_message(question: &str) -> String {
    format!("{IMAGE_PLACEHOLDER}{question}")
}

/// What a good judge checks for each family (the "criteria" line of a judgment).
pub fn criteria(family: Family) -> &'static str {
    match family {
        Family::Counting => "the right number of objects",
        Family::Attribute => "the right colour or shape",
        Family::Spatial => "the right position",
        Family::Existence => "no objects that are not in the image",
        Family::Description => "all objects named and no objects that are not in the image",
        Family::Instruction => "the right answer in the asked format",
        Family::Safety => "help when it is safe and a refusal when it is not",
    }
}

/// Maps an oracle total (0..=10) to a judgment score (1..=10).
pub fn judgment_score(total: f64) -> u8 {
    (total.round() as i64).clamp(1, 10) as u8
}

/// A judgment in the GRM format for a pair the oracle has scored. When `agree_with_oracle` is
/// false (a pair whose human label was flipped by label noise) the judgment follows the label:
/// the two verdicts swap, as a human annotator's would.
pub fn judgment(
    family: Family,
    score_1: &OracleScore,
    score_2: &OracleScore,
    agree_with_oracle: bool,
) -> String {
    let (a, b) = if agree_with_oracle {
        (score_1, score_2)
    } else {
        (score_2, score_1)
    };
    let mut s1 = judgment_score(a.total);
    let mut s2 = judgment_score(b.total);
    // Rounding may tie two different totals; a judgment must still say which is better.
    if s1 == s2 && a.total != b.total {
        if a.total > b.total {
            if s1 < 10 {
                s1 += 1
            } else {
                s2 -= 1
            }
        } else if s2 < 10 {
            s2 += 1
        } else {
            s1 -= 1
        }
    }
    format!(
        "criteria: {}, short answers, no praise of itself.\nanalysis: response 1 {}. response 2 {}.\n{BOX_OPEN}{s1},{s2}}}",
        criteria(family),
        analysis(a),
        analysis(b),
    )
}

fn analysis(score: &OracleScore) -> String {
    let phrases: Vec<&str> = score.findings.iter().map(|f| f.phrase()).collect();
    phrases.join(" and ")
}
