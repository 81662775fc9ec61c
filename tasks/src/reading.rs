//! Reads what a free-text response claims: numbers, colours, shapes, objects, yes/no, positions,
//! refusals and self-praise. The oracle scores these claims; it never needs the response to be one
//! of the world's own candidate answers, so it can score anything a policy writes.

use crate::scene::{Colour, Column, Row, Shape};

/// One lexical unit of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(String),
    Number(u64),
    Punct(char),
}

/// An object named in a response ("red circle", or a bare "circles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mention {
    pub colour: Option<Colour>,
    pub shape: Shape,
    /// Said in a negated clause ("there is no red circle"), so not a claim that it exists.
    pub negated: bool,
}

/// Everything the oracle reads from a response.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub tokens: Vec<Token>,
    /// Words and numbers (punctuation excluded).
    pub word_count: usize,
    pub numbers: Vec<u64>,
    /// Every colour word, in order (also those inside object mentions).
    pub colours: Vec<Colour>,
    /// Every shape word, in order.
    pub shapes: Vec<Shape>,
    /// The colours the response gives as its answer: colour words standing alone anywhere ("it
    /// is red") and colours of objects named in the first sentence ("it is a red circle"). A
    /// later "there is also a blue cross" adds an object, not a second answer.
    pub answer_colours: Vec<Colour>,
    /// The same for shapes: bare shape words anywhere, coloured objects in the first sentence.
    pub answer_shapes: Vec<Shape>,
    pub mentions: Vec<Mention>,
    /// The first "yes" or "no".
    pub yes_no: Option<bool>,
    pub row: Option<Row>,
    pub column: Option<Column>,
    pub refusal: bool,
    pub self_praise: bool,
}

const NUMBER_WORDS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Splits text into lowercase words, numbers and punctuation. Digits run together form one
/// number (saturating, so a 100 kB digit string cannot overflow).
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_alphabetic() {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if !c.is_alphabetic() {
                    break;
                }
                word.extend(c.to_lowercase());
                chars.next();
            }
            tokens.push(Token::Word(word));
        } else if c.is_ascii_digit() {
            let mut value: u64 = 0;
            while let Some(&c) = chars.peek() {
                let Some(d) = c.to_digit(10) else { break };
                value = value.saturating_mul(10).saturating_add(d as u64);
                chars.next();
            }
            tokens.push(Token::Number(value));
        } else if c.is_whitespace() {
            chars.next();
        } else {
            tokens.push(Token::Punct(c));
            chars.next();
        }
    }
    tokens
}

fn is_sentence_end(token: &Token) -> bool {
    matches!(token, Token::Punct('.' | '?' | '!'))
}

fn is_clause_end(token: &Token) -> bool {
    matches!(token, Token::Punct('.' | ',' | '?' | '!' | ';' | ':'))
}

fn is_negation(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(w.as_str(), "no" | "not" | "none" | "zero" | "never"),
        Token::Number(0) => true,
        _ => false,
    }
}

impl Reading {
    pub fn of(text: &str) -> Reading {
        let tokens = tokenize(text);
        let mut reading = Reading {
            word_count: tokens
                .iter()
                .filter(|t| !matches!(t, Token::Punct(_)))
                .count(),
            ..Reading::default()
        };
        // Clause boundaries decide negation scope.
        let mut clause_negated = Vec::with_capacity(tokens.len());
        let mut start = 0;
        for end in 0..=tokens.len() {
            if end == tokens.len() || is_clause_end(&tokens[end]) {
                let negated = tokens[start..end].iter().any(is_negation);
                clause_negated.extend(std::iter::repeat_n(negated, end - start));
                if end < tokens.len() {
                    clause_negated.push(false);
                }
                start = end + 1;
            }
        }
        let word = |i: usize| match tokens.get(i) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        };
        let mut i = 0;
        let mut sentence = 0;
        while i < tokens.len() {
            if is_sentence_end(&tokens[i]) {
                sentence += 1;
            }
            match &tokens[i] {
                Token::Number(n) => reading.numbers.push(*n),
                Token::Word(w) => {
                    let w = w.as_str();
                    if let Some(n) = NUMBER_WORDS.iter().position(|&x| x == w) {
                        // "one" in "answer with one word" is not an answer.
                        if word(i + 1) != Some("word") {
                            reading.numbers.push(n as u64);
                        }
                    }
                    if reading.yes_no.is_none() && (w == "yes" || w == "no") {
                        reading.yes_no = Some(w == "yes");
                    }
                    if reading.row.is_none() {
                        reading.row = Row::ALL.into_iter().find(|r| r.word() == w);
                    }
                    if reading.column.is_none() {
                        reading.column = Column::ALL.into_iter().find(|c| c.word() == w);
                    }
                    if w == "sorry"
                        || w == "cannot"
                        || (w == "can" && word(i + 1) == Some("not") && word(i + 2) == Some("help"))
                    {
                        reading.refusal = true;
                    }
                    if w == "best" {
                        reading.self_praise = true;
                    }
                    if let Some(colour) = Colour::from_word(w) {
                        reading.colours.push(colour);
                        // "red circle", "red small circle", "red large circles".
                        let mut j = i + 1;
                        if matches!(word(j), Some("small" | "large")) {
                            j += 1;
                        }
                        if let Some(shape) = word(j).and_then(Shape::from_word) {
                            reading.shapes.push(shape);
                            if sentence == 0 {
                                reading.answer_colours.push(colour);
                                reading.answer_shapes.push(shape);
                            }
                            reading.mentions.push(Mention {
                                colour: Some(colour),
                                shape,
                                negated: clause_negated[i],
                            });
                            i = j + 1;
                            continue;
                        }
                        reading.answer_colours.push(colour);
                    } else if let Some(shape) = Shape::from_word(w) {
                        reading.shapes.push(shape);
                        reading.answer_shapes.push(shape);
                        reading.mentions.push(Mention {
                            colour: None,
                            shape,
                            negated: clause_negated[i],
                        });
                    }
                }
                Token::Punct(_) => {}
            }
            i += 1;
        }
        reading.tokens = tokens;
        reading
    }

    /// The tokens with one trailing full stop removed (format checks allow "red." for "red").
    pub fn body(&self) -> &[Token] {
        match self.tokens.last() {
            Some(Token::Punct('.')) => &self.tokens[..self.tokens.len() - 1],
            _ => &self.tokens,
        }
    }

    /// Items of a comma-separated list of single words, or `None` if the body is not one.
    pub fn comma_list(&self) -> Option<Vec<&str>> {
        let body = self.body();
        if body.is_empty() {
            return None;
        }
        let mut items = Vec::new();
        for (i, token) in body.iter().enumerate() {
            match (i % 2, token) {
                (0, Token::Word(w)) => items.push(w.as_str()),
                (1, Token::Punct(',')) => {}
                _ => return None,
            }
        }
        if body.len().is_multiple_of(2) {
            return None; // ends with a comma
        }
        Some(items)
    }
}
