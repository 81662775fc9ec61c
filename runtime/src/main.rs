//! The `grlhf` binary: the command line of [`grlhf::cli`] with the built-in kinds.

use std::process::ExitCode;
use std::sync::Arc;

use grlhf_actors::registry::Registry;

fn main() -> ExitCode {
    grlhf::cli::main(Arc::new(Registry::with_builtins))
}
