//! `grlhf doctor`: what this machine offers the runtime — libtorch and CUDA versions, devices,
//! cuDNN and thread counts — as a table or JSON, for checking a setup before a run.

use crate::doctor;
use anyhow::Result;

/// Prints the diagnosis, as JSON with `json`.
pub fn doctor(json: bool) -> Result<()> {
    let report = doctor::diagnose();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.render());
    }
    Ok(())
}
