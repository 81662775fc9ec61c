//! `grlhf-actors`: the message protocol and the actors of an asynchronous RL pipeline.
//!
//! ```text
//! PromptSource ──prompts──▶ Generator×G ──groups of n──▶ Judge×J ──scored groups──▶ ReplayBuffer
//!      ▲  admission (capacity, staleness)      ▲                                         │ batches
//!      └──────────────── version ──────────────┴──────── weights (versioned) ◀── Learner ◀┘
//! ```
//!
//! Every model-owning actor (generator, judge, learner) keeps its engine on a dedicated OS thread
//! ([`device_worker`]) and awaits it, so tokio's workers never block on a forward pass. The
//! actors own the protocol; the engines behind [`rollout_engine::RolloutEngine`],
//! [`judge::Judge`] and [`train_engine::TrainEngine`] own the models — real ones, or the
//! [`simulated`] ones a benchmark puts in their place. Stages
//! hand work on through the [`protocol::GroupSink`] / [`protocol::ScoredSink`] traits, and the
//! [`registry`] maps configuration kinds to factories — the built-ins register exactly as a
//! user's own kinds do. This crate knows nothing of TOML: factories receive their table as JSON.

pub mod activity;
pub mod activity_records;
pub mod adamw;
pub mod bradley_terry;
pub mod checkpoint;
pub mod device_worker;
pub mod epoch_sampler;
pub mod error;
pub mod eval_engine;
pub mod eval_metric;
pub mod evaluator;
pub mod generator;
pub mod grm_judge;
pub mod grouped_comparison;
pub mod grpo;
pub mod judge;
pub mod learner;
pub mod learner_config;
pub mod ledger;
pub mod metric_series;
pub mod policy_loss;
pub mod prompt_source;
pub mod protocol;
pub mod registry;
pub mod replay_buffer;
pub mod rollout_engine;
pub mod rollout_workflow;
pub mod rule_judge;
pub mod scalar_rm_judge;
pub mod schedule;
pub mod sft;
pub mod simulated;
pub mod step_stats;
pub mod supervisor;
pub mod trace_file;
pub mod train_engine;
pub mod vl_engine;
pub mod weight_sync;
