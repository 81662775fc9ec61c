//! Writes a generated world to a folder that the JSONL loaders read back:
//!
//! ```text
//! DIR/manifest.json          the config, the files and their record counts
//! DIR/tokenizer.json         the world's word-level tokenizer (Qwen2-VL special tokens)
//! DIR/<split>.jsonl          one file per split (see `world`)
//! DIR/images/<id>.png        one image per record
//! ```
//!
//! Files are written to a temporary name and renamed, so an interrupted run leaves whole files or
//! none. An existing non-empty folder is never written into unless the caller allows it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::records::WorldKey;
use crate::render::render_png;
use crate::vocabulary;
use crate::world::{Split, SplitRecords, WorldConfig};

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{} exists and is not empty; choose another folder or overwrite it (`grlhf data generate --force`)", path.display())]
    NotEmpty { path: PathBuf },
    #[error("world config: {0}")]
    Config(String),
}

/// One written split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub split: Split,
    pub file: String,
    pub records: usize,
}

/// `manifest.json`: what was generated, from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub config: WorldConfig,
    pub tokenizer: String,
    pub files: Vec<ManifestFile>,
}

/// Progress of an export: (split, records written, records in the split).
pub type Progress<'a> = &'a mut dyn FnMut(Split, usize, usize);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |error| ExportError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// Generates every split of `config` into `dir`.
pub fn export_world(
    config: &WorldConfig,
    dir: &Path,
    overwrite: bool,
    progress: Progress<'_>,
) -> Result<Manifest, ExportError> {
    config.validate().map_err(ExportError::Config)?;
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(io_error(dir))?;
        if entries.next().is_some() && !overwrite {
            return Err(ExportError::NotEmpty {
                path: dir.to_path_buf(),
            });
        }
    }
    let images = dir.join("images");
    fs::create_dir_all(&images).map_err(io_error(&images))?;
    write_atomically(
        &dir.join("tokenizer.json"),
        vocabulary::tokenizer_file().as_bytes(),
    )?;

    let mut files = Vec::new();
    for split in config.splits() {
        let records = config.generate(split).map_err(ExportError::Config)?;
        let total = records.len();
        let mut lines = String::new();
        let mut write_record = |index: usize, id: &str, world: &Option<WorldKey>, json: String| {
            if let Some(world) = world {
                let path = dir.join("images").join(format!("{id}.png"));
                write_atomically(&path, &render_png(&world.scene))?;
            }
            lines.push_str(&json);
            lines.push('\n');
            progress(split, index + 1, total);
            Ok::<(), ExportError>(())
        };
        match &records {
            SplitRecords::Prompts(rs) => {
                for (i, r) in rs.iter().enumerate() {
                    write_record(
                        i,
                        &r.id,
                        &r.world,
                        serde_json::to_string(r).expect("records serialise"),
                    )?;
                }
            }
            SplitRecords::Pairs(rs) => {
                for (i, r) in rs.iter().enumerate() {
                    let id = r.id.clone().unwrap_or_default();
                    write_record(
                        i,
                        &id,
                        &r.world,
                        serde_json::to_string(r).expect("records serialise"),
                    )?;
                }
            }
            SplitRecords::Sft(rs) => {
                for (i, r) in rs.iter().enumerate() {
                    write_record(
                        i,
                        &r.id,
                        &r.world,
                        serde_json::to_string(r).expect("records serialise"),
                    )?;
                }
            }
        }
        let file = split.file_name();
        write_atomically(&dir.join(&file), lines.as_bytes())?;
        files.push(ManifestFile {
            split,
            file,
            records: total,
        });
    }
    let manifest = Manifest {
        generator: format!("grlhf-tasks {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        tokenizer: "tokenizer.json".to_string(),
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("the manifest serialises");
    write_atomically(&dir.join("manifest.json"), text.as_bytes())?;
    Ok(manifest)
}
