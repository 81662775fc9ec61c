//! `grlhf-plugins`: the whole `grlhf` command line, with this crate's kinds registered beside
//! the built-ins (`grlhf-plugins kinds` lists them).

use std::process::ExitCode;
use std::sync::Arc;

use grlhf_actors::registry::Registry;

fn main() -> ExitCode {
    grlhf::cli::main(Arc::new(|| {
        let mut registry = Registry::with_builtins();
        grlhf_plugins_example::register(&mut registry);
        registry
    }))
}
