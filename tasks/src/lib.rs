//! `grlhf-tasks`: the embedded multimodal world (generated scenes, seven task families, a
//! hidden human-preference oracle), preference and prompt datasets, the GRM prompt format and
//! score parser, and JSONL loaders for real data.
//!
//! Not built yet: this crate is filled by the embedded-world issue. Today it is an empty
//! library so that the workspace has its final shape and dependencies point the right way
//! (models ← tasks ← actors ← runtime).
