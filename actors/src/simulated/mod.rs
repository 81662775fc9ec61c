//! Simulated engines: a rollout engine, a judge and a train engine that hold no model — each
//! spends the time a [`CostModel`] gives it. The real generator, judge and learner actors drive
//! them, with the real prompt source, replay buffer, ledger, supervisor and activity log, so the
//! runtime itself (admission, staleness control, mailboxes, batching, weight publication,
//! supervision) is benchmarked at the scale of hundreds of accelerators on one machine, and the
//! benchmark's accounting is checked against costs known in advance.

pub mod cost_model;
pub mod generator;
pub mod judge;
pub mod learner;

pub use cost_model::{CostModel, StageTimes, StepShape};
