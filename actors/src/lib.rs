//! `grlhf-actors`: the message protocol and the built-in actors (prompt source, generators,
//! judges, replay buffer, learner, reference, evaluator) and the actor-kind registry.
//!
//! Not built yet: this crate is filled by the actor-runtime issue (see `../shared/DESIGN.md`
//! for the data flow). Today it is an empty library so the workspace has its final shape.
