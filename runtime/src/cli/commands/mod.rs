//! One module per `grlhf` command: each turns its parsed arguments (defined with the clap
//! definitions in `cli.rs`) into a call into the library and prints what the user reads.
//! The work itself lives in the library (`crate::…`); these modules only adapt and report.

pub mod bench;
pub mod data;
pub mod doctor;
pub mod eval_grm;
pub mod generate;
pub mod init_model;
pub mod inspect;
pub mod kinds;
pub mod launch;
pub mod pipeline;
pub mod plot;
pub mod reproduce;
pub mod run;
pub mod seeds;
pub mod sft;
pub mod values;
