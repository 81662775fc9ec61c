//! `grlhf`: the library behind the `grlhf` command.
//!
//! It holds the topology builder ([`topology`]: one plan of roles and engines, spawned, driven,
//! drained and summarised, for real and simulated runs alike), `grlhf run CONFIG [--resume
//! RUN_DIR]` (placement, weight-sync wiring, supervision, checkpoints, fault injection,
//! telemetry), the two-stage pipeline, the throughput bench, and the diagnostic, model and data
//! commands. The architecture is described in `docs/architecture.md`.

pub mod bench;
pub mod bench_settings;
pub mod charts;
pub mod cli;
pub mod cluster_config;
pub mod cuda_devices;
pub mod data;
pub mod distributed;
pub mod doctor;
pub mod export;
pub mod faults;
pub mod generate;
pub mod grounding;
pub mod inspect;
pub mod kinds;
pub mod loaded_model;
pub mod machine;
pub mod model_presets;
pub mod model_source;
pub mod node_placement;
pub mod pipeline;
pub mod pipeline_config;
pub mod prometheus_endpoint;
pub mod report;
pub mod reward_model_eval;
pub mod run;
pub mod run_board;
pub mod run_config;
pub mod run_layout;
pub mod run_plots;
pub mod seeds;
pub mod tensorboard;
pub mod token_list;
pub mod topology;
pub mod variant;
pub mod warm_start;
pub mod worker_processes;
