//! Where a model comes from: a checkpoint directory, or `world:<preset>` — a fresh world model of
//! that size, written where the caller asks. Every config field and flag that names a model
//! (`model.policy`, a pipeline's `model`, `grlhf sft --model`) is parsed into this one type.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use grlhf_actors::vl_engine::{init_world_model, WorldModelSize};

/// A model to start from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A fresh world model of this preset (`world:tiny`, `world:small`).
    World {
        preset: String,
        size: WorldModelSize,
    },
    /// A Hugging Face-style checkpoint directory.
    Dir(PathBuf),
}

impl ModelSource {
    /// Parses `value`; `field` names the setting in errors. A directory must exist.
    pub fn parse(field: &str, value: &str) -> Result<ModelSource> {
        match value.strip_prefix("world:") {
            Some(preset) => {
                let size = WorldModelSize::preset(preset).map_err(|e| anyhow!("{field}: {e}"))?;
                Ok(ModelSource::World {
                    preset: preset.to_string(),
                    size,
                })
            }
            None if Path::new(value).is_dir() => Ok(ModelSource::Dir(PathBuf::from(value))),
            None => {
                bail!("{field}: `{value}` is neither a checkpoint directory nor world:<preset>")
            }
        }
    }

    /// The directory to load: the checkpoint itself, or a fresh world model written into
    /// `fresh` with `seed`.
    pub fn materialise(&self, fresh: &Path, seed: u64) -> Result<PathBuf> {
        match self {
            ModelSource::Dir(dir) => Ok(dir.clone()),
            ModelSource::World { size, .. } => {
                init_world_model(fresh, *size, seed as i64).map_err(|e| anyhow!("{e}"))?;
                Ok(fresh.to_path_buf())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_presets_and_directories_parse_and_anything_else_names_its_field() {
        let tiny = ModelSource::parse("model.policy", "world:tiny").unwrap();
        assert!(matches!(&tiny, ModelSource::World { preset, .. } if preset == "tiny"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert_eq!(
            ModelSource::parse("--model", path).unwrap(),
            ModelSource::Dir(dir.path().to_path_buf())
        );
        let unknown = ModelSource::parse("model.policy", "world:huge").unwrap_err();
        assert!(
            unknown.to_string().starts_with("model.policy: ")
                && unknown.to_string().contains("huge"),
            "{unknown}"
        );
        let missing = ModelSource::parse("model", "/no/such/dir").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("model: `/no/such/dir` is neither"),
            "{missing}"
        );
        // A directory is used as it is; nothing is written into `fresh`.
        let fresh = dir.path().join("fresh");
        assert_eq!(
            ModelSource::Dir(dir.path().to_path_buf())
                .materialise(&fresh, 0)
                .unwrap(),
            dir.path()
        );
        assert!(!fresh.exists());
    }
}
