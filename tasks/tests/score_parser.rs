//! The GRM score parser: known cases in the paper's format, every typed error, and properties
//! over arbitrary, huge and adversarial strings.

use grlhf_tasks::score_parser::{parse_scores, ScoreParseError as E};
use proptest::prelude::*;

#[test]
fn judgments_in_the_papers_format_parse() {
    let cases = [
        (
            "criteria: accuracy.\nanalysis: response 1 is right.\n\\boxed{8,3}",
            (8, 3),
        ),
        ("\\boxed{10,1}", (10, 1)),
        ("The scores are \\boxed{ 7 , 6 }.", (7, 6)),
        ("analysis ... so \\boxed{1, 10} is my verdict", (1, 10)),
        ("\\boxed{05,09}", (5, 9)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_scores(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn every_failure_has_its_own_error() {
    let cases: [(&str, E); 15] = [
        ("no box here, 7 and 3", E::NoBox),
        ("boxed{7,3}", E::NoBox),
        ("\\boxed{7,3} \\boxed{2,9}", E::SeveralBoxes { count: 2 }),
        ("\\boxed{\\boxed{1,2},3}", E::SeveralBoxes { count: 2 }),
        ("\\boxed{7,3", E::Unclosed),
        ("\\boxed{{7,3}}", E::Nested),
        ("\\boxed{7}", E::WrongArity { found: 1 }),
        ("\\boxed{7,3,2}", E::WrongArity { found: 3 }),
        ("\\boxed{}", E::WrongArity { found: 0 }),
        (
            "\\boxed{7,}",
            E::NotANumber {
                value: String::new(),
            },
        ),
        (
            "\\boxed{7.5,3}",
            E::NotANumber {
                value: "7.5".into(),
            },
        ),
        (
            "\\boxed{1e309,nan}",
            E::NotANumber {
                value: "1e309".into(),
            },
        ),
        ("\\boxed{-1,3}", E::NotANumber { value: "-1".into() }),
        ("\\boxed{0,3}", E::OutOfRange { value: "0".into() }),
        (
            "\\boxed{3,99999999999999999999999}",
            E::OutOfRange {
                value: "99999999999999999999999".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_scores(text), Err(expected), "{text:?}");
    }
    assert_eq!(
        parse_scores("\\boxed{3,11}"),
        Err(E::OutOfRange { value: "11".into() })
    );
    // Error messages quote a bounded amount of what they reject.
    let long = format!("\\boxed{{{},3}}", "x".repeat(10_000));
    assert!(parse_scores(&long).unwrap_err().to_string().len() < 200);
}

#[test]
fn a_100_kb_judgment_parses_or_fails_cleanly() {
    let padding = "analysis ".repeat(12_000);
    assert_eq!(
        parse_scores(&format!("{padding}\\boxed{{9,2}}")),
        Ok((9, 2))
    );
    assert_eq!(parse_scores(&padding), Err(E::NoBox));
    let many = "\\boxed{".repeat(15_000);
    assert_eq!(parse_scores(&many), Err(E::SeveralBoxes { count: 15_000 }));
    let unclosed = format!("\\boxed{{{}", "1,".repeat(50_000));
    assert_eq!(parse_scores(&unclosed), Err(E::Unclosed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = parse_scores(&text);
    }

    #[test]
    fn never_panics_on_box_like_text(text in r"(\\boxed\{|\{|\}|,|[0-9]{1,25}| |é|x|\\)*") {
        let _ = parse_scores(&text);
    }

    #[test]
    fn any_two_valid_scores_round_trip(a in 1u8..=10, b in 1u8..=10, pre in "[a-z .:\n]{0,80}", post in "[a-z .]{0,40}", sp in " {0,3}") {
        let text = format!("{pre}\\boxed{{{sp}{a}{sp},{sp}{b}{sp}}}{post}");
        prop_assert_eq!(parse_scores(&text), Ok((a, b)));
    }

    #[test]
    fn success_implies_exactly_one_box_and_scores_in_range(text in r"[^{}]{0,20}\\boxed\{[0-9 ,]{0,8}\}[^{}\\]{0,20}") {
        if let Ok((a, b)) = parse_scores(&text) {
            prop_assert!((1..=10).contains(&a) && (1..=10).contains(&b));
            prop_assert_eq!(text.matches("\\boxed{").count(), 1);
        }
    }
}
