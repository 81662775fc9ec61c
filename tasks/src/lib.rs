//! `grlhf-tasks`: the embedded multimodal world, its data, and the text formats around reward
//! models.
//!
//! The world is a generator of scenes (1–6 coloured shapes on a 3×3 grid, rendered to RGB images)
//! and of questions in seven families mirroring the paper's benchmarks. A hidden oracle scores any
//! answer from 0 to 10, so "human preference" is known exactly: reward-model accuracy, policy
//! improvement, out-of-distribution generalisation and reward hacking are measured without paid
//! judges. No model ever sees the oracle; only data generation and evaluation call it.
//!
//! | module | what it holds |
//! |---|---|
//! | [`scene`], [`render`] | scenes and their images |
//! | [`task`] | the seven families and their questions |
//! | [`reading`], [`oracle`] | what a response claims, and its score |
//! | [`candidates`], [`preference`] | graded answers and preference pairs |
//! | [`world`], [`records`], [`export`] | splits, their JSONL records, writing a world to disk |
//! | [`grm_format`], [`score_parser`] | the GRM's prompt and judgment text, and the score parser |
//! | [`vocabulary`] | the closed vocabulary and its `tokenizer.json` |
//! | [`jsonl`] | loaders for prompt and preference files (the world's or real data) |
//!
//! This crate does not link libtorch: it produces images, text and scores.

pub mod candidates;
pub mod export;
pub mod grm_format;
pub mod jsonl;
pub mod oracle;
pub mod parquet;
pub mod preference;
pub mod reading;
pub mod records;
pub mod render;
pub mod scene;
pub mod score_parser;
pub mod task;
pub mod vocabulary;
pub mod world;
