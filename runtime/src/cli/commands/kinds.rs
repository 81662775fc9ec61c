//! `grlhf kinds`: every kind a config may name, per role, with its settings fields — the
//! built-ins and whatever the binary's registry adds (a user's crate's own `grlhf`).

use anyhow::Result;
use grlhf_actors::registry::Registry;

use crate::kinds::{all_kinds, render};

/// Prints the listing (a table, or JSON).
pub fn kinds(mut registry: Registry, json: bool) -> Result<()> {
    let kinds = all_kinds(&mut registry);
    if json {
        println!("{}", serde_json::to_string_pretty(&kinds)?);
    } else {
        print!("{}", render(&kinds));
    }
    Ok(())
}
