//! Where the end-to-end tests find the parity fixtures `make fixtures` writes
//! (`scripts/make_fixtures.py`): `$GRLHF_FIXTURES`, else `target/fixtures` of the workspace.

use std::path::{Path, PathBuf};

/// The fixture directory `case` (e.g. `qwen2_vl_hub`, `parquet`); panics, naming the command
/// that writes it, when it is missing.
pub fn fixture(case: &str) -> PathBuf {
    let root = std::env::var_os("GRLHF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let dir = root.join(case);
    assert!(
        dir.exists(),
        "{} missing: run `make fixtures`",
        dir.display()
    );
    dir
}
