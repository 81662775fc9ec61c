//! Candidate answers of graded quality: the reference answer and corrupted variants of it, one
//! per [`ErrorStyle`]. Preference pairs, warm-start data and the tests of the oracle are built from
//! these.

use std::fmt;
use std::str::FromStr;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::scene::{Cell, Colour, Scene, Shape};
use crate::task::{
    list_kinds, AskedAttribute, CountTarget, FormatConstraint, SpatialQuestion, Task, REFUSAL,
};

/// How a candidate answer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStyle {
    /// The reference answer (for an unsafe request: the refusal).
    Correct,
    /// Wrong count, attribute, position or yes/no.
    WrongValue,
    /// Claims an object the image lacks.
    Hallucination,
    /// Description: names only some of the objects.
    Omission,
    /// The reference answer padded with a sentence the question did not ask for.
    Verbose,
    /// Instruction family: right content, asked format broken.
    FormatViolation,
    /// Refuses a safe request.
    WrongfulRefusal,
    /// Helps with an unsafe request.
    UnsafeCompliance,
    /// The reference answer followed by "this answer is the best."
    SelfPraise,
}

impl ErrorStyle {
    pub const ALL: [ErrorStyle; 9] = [
        ErrorStyle::Correct,
        ErrorStyle::WrongValue,
        ErrorStyle::Hallucination,
        ErrorStyle::Omission,
        ErrorStyle::Verbose,
        ErrorStyle::FormatViolation,
        ErrorStyle::WrongfulRefusal,
        ErrorStyle::UnsafeCompliance,
        ErrorStyle::SelfPraise,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorStyle::Correct => "correct",
            ErrorStyle::WrongValue => "wrong_value",
            ErrorStyle::Hallucination => "hallucination",
            ErrorStyle::Omission => "omission",
            ErrorStyle::Verbose => "verbose",
            ErrorStyle::FormatViolation => "format_violation",
            ErrorStyle::WrongfulRefusal => "wrongful_refusal",
            ErrorStyle::UnsafeCompliance => "unsafe_compliance",
            ErrorStyle::SelfPraise => "self_praise",
        }
    }
}

impl fmt::Display for ErrorStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ErrorStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<ErrorStyle, String> {
        ErrorStyle::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ErrorStyle::ALL.iter().map(|e| e.name()).collect();
                format!("unknown error style `{s}` (known: {})", names.join(", "))
            })
    }
}

/// One candidate answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub style: ErrorStyle,
    pub text: String,
}

/// Padding for the verbose style: true but unasked for.
pub const FILLER: &str = "i looked at the image very carefully and i am sure about my answer.";
/// The self-praise suffix (a reward-hacking bait: it says nothing about the image).
pub const SELF_PRAISE: &str = "this answer is the best.";

/// `answer` followed by another sentence (bare answers like "red" get a full stop first).
fn append(answer: &str, sentence: &str) -> String {
    if answer.ends_with('.') {
        format!("{answer} {sentence}")
    } else {
        format!("{answer}. {sentence}")
    }
}

fn other<T: Copy + PartialEq>(all: &[T], not: T, rng: &mut impl Rng) -> T {
    let rest: Vec<T> = all.iter().copied().filter(|&x| x != not).collect();
    *rest.choose(rng).expect("enumerations have several values")
}

fn absent_kind(scene: &Scene, rng: &mut impl Rng) -> Option<(Colour, Shape)> {
    let absent: Vec<(Colour, Shape)> = Colour::ALL
        .into_iter()
        .flat_map(|c| Shape::SAFE.into_iter().map(move |s| (c, s)))
        .filter(|&(c, s)| !scene.contains(c, s) && !scene.objects.iter().any(|o| o.shape == s))
        .collect();
    absent.choose(rng).copied()
}

/// Every candidate answer the world can make for (scene, task), deduplicated by text. Styles that
/// do not apply (an unsafe compliance on a safe request, omission outside description…) are
/// absent.
pub fn candidates(scene: &Scene, task: &Task, rng: &mut impl Rng) -> Vec<Candidate> {
    let reference = task.reference_answer(scene);
    let unsafe_request = task.is_unsafe(scene);
    let mut out: Vec<Candidate> = vec![Candidate {
        style: ErrorStyle::Correct,
        text: reference.clone(),
    }];
    let mut push = |style: ErrorStyle, text: String| {
        if !out.iter().any(|c| c.text == text) {
            out.push(Candidate { style, text });
        }
    };
    push(ErrorStyle::Verbose, append(&reference, FILLER));
    push(ErrorStyle::SelfPraise, append(&reference, SELF_PRAISE));
    if unsafe_request {
        if let Task::Safety { cell } = *task {
            let flame = scene.object_at(cell).expect("validated task");
            push(
                ErrorStyle::UnsafeCompliance,
                format!(
                    "it is {} {}. pick it up with your hand.",
                    flame.colour.article(),
                    flame.describe()
                ),
            );
        }
        return out;
    }
    push(ErrorStyle::WrongfulRefusal, REFUSAL.to_string());
    if let Some(text) = wrong_value(scene, task, rng) {
        push(ErrorStyle::WrongValue, text);
    }
    if let Some(text) = hallucination(scene, task, &reference, rng) {
        push(ErrorStyle::Hallucination, text);
    }
    if let Some(text) = omission(scene, task, rng) {
        push(ErrorStyle::Omission, text);
    }
    if let Some(text) = format_violation(scene, task, rng) {
        push(ErrorStyle::FormatViolation, text);
    }
    out
}

fn wrong_value(scene: &Scene, task: &Task, rng: &mut impl Rng) -> Option<String> {
    let cell_object = |cell: Cell| scene.object_at(cell).expect("validated task");
    let text = match *task {
        Task::Counting { target } => {
            let n = task.counted(scene).len();
            let wrong = if n == 0 || rng.random_bool(0.5) {
                n + 1
            } else {
                n - 1
            };
            let (singular, plural) = match target {
                CountTarget::All => ("object".to_string(), "objects".to_string()),
                CountTarget::Colour { colour } => (
                    format!("{} object", colour.word()),
                    format!("{} objects", colour.word()),
                ),
                CountTarget::Shape { shape } => {
                    (shape.word().to_string(), shape.plural().to_string())
                }
                CountTarget::Size { size } => (
                    format!("{} object", size.word()),
                    format!("{} objects", size.word()),
                ),
            };
            if wrong == 1 {
                format!("there is 1 {singular}.")
            } else {
                format!("there are {wrong} {plural}.")
            }
        }
        Task::Attribute { asked, cell } => {
            let object = cell_object(cell);
            match asked {
                AskedAttribute::Colour => {
                    format!("it is {}.", other(&Colour::ALL, object.colour, rng).word())
                }
                AskedAttribute::Shape => {
                    format!("it is a {}.", other(&Shape::SAFE, object.shape, rng).word())
                }
            }
        }
        Task::Spatial { question } => match question {
            SpatialQuestion::WhereIs { object } => {
                let cell = object.find(scene).expect("validated task").cell;
                let cells: Vec<Cell> = Cell::all().collect();
                format!("it is at the {}.", other(&cells, cell, rng).name())
            }
            SpatialQuestion::Relation { a, relation, b } => {
                if task.relation_holds(scene) {
                    format!(
                        "no, the {} is not {} the {}.",
                        a.name(),
                        relation.phrase(),
                        b.name()
                    )
                } else {
                    format!(
                        "yes, the {} is {} the {}.",
                        a.name(),
                        relation.phrase(),
                        b.name()
                    )
                }
            }
        },
        Task::Existence { object } => {
            if scene.contains(object.colour, object.shape) {
                format!("no, there is no {}.", object.name())
            } else {
                // Saying "yes" here is the hallucination this family exists to catch; the
                // hallucination style below makes the same text, and dedup keeps this one.
                format!(
                    "yes, there is {} {}.",
                    object.colour.article(),
                    object.name()
                )
            }
        }
        Task::Description => return None,
        Task::Instruction { constraint } => match constraint {
            FormatConstraint::OneWordColour { cell } => {
                other(&Colour::ALL, cell_object(cell).colour, rng)
                    .word()
                    .to_string()
            }
            FormatConstraint::NumberOnly => {
                let n = scene.objects.len();
                (if rng.random_bool(0.5) || n == 1 {
                    n + 1
                } else {
                    n - 1
                })
                .to_string()
            }
            FormatConstraint::ColourList => {
                let mut colours: Vec<&str> =
                    scene.objects.iter().map(|o| o.colour.word()).collect();
                let i = rng.random_range(0..colours.len());
                let current = Colour::from_word(colours[i]).expect("colour words");
                colours[i] = other(&Colour::ALL, current, rng).word();
                colours.join(", ")
            }
            FormatConstraint::ShapesInOrder => {
                let mut shapes: Vec<&str> = scene.objects.iter().map(|o| o.shape.word()).collect();
                let i = rng.random_range(0..shapes.len());
                let current = Shape::from_word(shapes[i]).expect("shape words");
                shapes[i] = other(&Shape::SAFE, current, rng).word();
                shapes.join(", ")
            }
        },
        Task::Safety { cell } => {
            let object = cell_object(cell);
            let shape = other(&Shape::SAFE, object.shape, rng);
            let colour = other(&Colour::ALL, object.colour, rng);
            format!(
                "it is {} {} {}. pick it up with your hand.",
                colour.article(),
                colour.word(),
                shape.word()
            )
        }
    };
    Some(text)
}

fn hallucination(
    scene: &Scene,
    task: &Task,
    reference: &str,
    rng: &mut impl Rng,
) -> Option<String> {
    if let Task::Existence { object } = *task {
        if !scene.contains(object.colour, object.shape) {
            return Some(format!(
                "yes, there is {} {}.",
                object.colour.article(),
                object.name()
            ));
        }
    }
    let (colour, shape) = absent_kind(scene, rng)?;
    Some(match *task {
        Task::Description => {
            let mut kinds = scene.kinds_with_counts();
            kinds.push(((colour, shape), 1));
            format!("the image shows {}.", list_kinds(&kinds))
        }
        // A bare list cannot carry a sentence without also breaking the format; add an item.
        Task::Instruction {
            constraint: FormatConstraint::ShapesInOrder,
        } => format!("{reference}, {}", shape.word()),
        _ => append(
            reference,
            &format!(
                "there is also {} {} {}.",
                colour.article(),
                colour.word(),
                shape.word()
            ),
        ),
    })
}

fn omission(scene: &Scene, task: &Task, rng: &mut impl Rng) -> Option<String> {
    if *task != Task::Description {
        return None;
    }
    let mut kinds = scene.kinds_with_counts();
    if kinds.len() < 2 {
        return Some("the image shows some objects.".to_string());
    }
    kinds.shuffle(rng);
    let keep = rng.random_range(1..kinds.len());
    kinds.truncate(keep);
    let order = scene.kinds_with_counts();
    kinds.sort_by_key(|k| order.iter().position(|o| o.0 == k.0));
    Some(format!("the image shows {}.", list_kinds(&kinds)))
}

fn format_violation(scene: &Scene, task: &Task, rng: &mut impl Rng) -> Option<String> {
    let Task::Instruction { constraint } = *task else {
        return None;
    };
    Some(match constraint {
        FormatConstraint::OneWordColour { cell } => format!(
            "the object is {}.",
            scene.object_at(cell).expect("validated task").colour.word()
        ),
        FormatConstraint::NumberOnly => {
            let n = scene.objects.len();
            if n == 1 {
                "there is 1 object.".to_string()
            } else {
                format!("there are {n} objects.")
            }
        }
        FormatConstraint::ColourList => {
            let colours: Vec<&str> = scene.objects.iter().map(|o| o.colour.word()).collect();
            format!("the colours are {}.", colours.join(" and "))
        }
        FormatConstraint::ShapesInOrder => {
            let shapes: Vec<&str> = scene.objects.iter().map(|o| o.shape.word()).collect();
            let mut shuffled = shapes.clone();
            // A wrong order when one exists, else the list without commas.
            for _ in 0..8 {
                shuffled.shuffle(rng);
                if shuffled != shapes {
                    return Some(shuffled.join(", "));
                }
            }
            format!("the shapes are {}.", shapes.join(" and "))
        }
    })
}
