//! Simulated actors: a generator, a judge and a learner that speak the real protocol with the
//! real prompt source, judge actor, replay buffer, ledger and activity log, but hold no model —
//! each spends the time a [`CostModel`] gives it. With them the runtime itself (admission,
//! staleness control, mailboxes, batching, weight publication) is benchmarked at the scale of
//! hundreds of accelerators on one machine, and the benchmark's accounting is checked against
//! costs known in advance.

pub mod cost_model;
pub mod generator;
pub mod judge;
pub mod learner;

pub use cost_model::{CostModel, StageTimes, StepShape};
