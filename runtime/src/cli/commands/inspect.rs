//! `grlhf inspect logits`: a checkpoint's raw logits for given token ids (and images), as one
//! JSON object, for comparing a model against another implementation.

use crate::{inspect, token_list};
use anyhow::Result;
use grlhf_models::device::parse_device;

use crate::cli::LogitsArgs;

/// Prints `{"shape": [...], "logits": [...]}`.
pub fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = token_list::parse_token_list(&args.tokens)?;
    let dump = inspect::logits(
        &args.model,
        &tokens,
        &args.images,
        args.all,
        parse_device(&args.device)?,
        args.dtype.kind(),
    )?;
    println!("{}", serde_json::to_string(&dump)?);
    Ok(())
}
