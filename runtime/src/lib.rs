//! `grlhf`: the library behind the `grlhf` command.
//!
//! Today it holds the diagnostic and model commands (`doctor`, `inspect logits`, `generate`,
//! `init-model`) and the embedded world's data commands (`data generate`, `data show`). The actor topology runner (`grlhf run CONFIG`: placement, weight-sync
//! wiring, telemetry, checkpoints) arrives with the runtime issue; see `../shared/DESIGN.md`.

pub mod bench;
pub mod charts;
pub mod cuda_devices;
pub mod data;
pub mod doctor;
pub mod generate;
pub mod inspect;
pub mod loaded_model;
pub mod machine;
pub mod model_presets;
pub mod pipeline;
pub mod pipeline_config;
pub mod report;
pub mod reward_model_eval;
pub mod run;
pub mod run_config;
pub mod token_list;
pub mod warm_start;
