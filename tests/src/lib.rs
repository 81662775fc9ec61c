//! End-to-end tests across grlhf crates live in `tests/tests/`. This library holds what a user's
//! own crate would: [`length_penalty`], an actor kind written and registered outside grlhf;
//! and [`fixtures`], where the tests find the parity fixtures.

pub mod fixtures;
pub mod length_penalty;
