//! Preference pairs and prompts from Hugging Face datasets as they are published: parquet files
//! whose image column holds `{bytes, path}` structs (the `datasets` Image feature), raw bytes,
//! or a path.
//!
//! Two layouts are known by their columns, and `[data.fields]` ([`FieldNames`]) renames any
//! column for other datasets:
//!
//! | layout | question | image | responses | preference |
//! |---|---|---|---|---|
//! | align-anything (text-image-to-text) | `question` | `image` | `response_1`, `response_2` | `overall_response` ∈ {1, 2} |
//! | RLAIF-V | `question` | `image` | `chosen`, `rejected` | the chosen one |
//!
//! Embedded images are written once into an images folder the caller chooses (a run writes
//! them into its run directory), named after the file and row, so the rest of grlhf reads them
//! as it reads a JSONL dataset's files. A bad row is named by file, row (1-based) and field, as
//! the JSONL loader names lines; with `skip_bad` it is skipped and reported.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde::{Deserialize, Serialize};

use crate::jsonl::{BadLine, DataError, LoadOptions, Loaded};
use crate::records::{PreferenceRecord, PromptRecord};

/// Column names, where a dataset differs from the layouts above (`[data.fields]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldNames {
    pub id: Option<String>,
    pub question: Option<String>,
    pub image: Option<String>,
    /// align-anything's two responses and the preferred one's number (1 or 2).
    pub response_1: Option<String>,
    pub response_2: Option<String>,
    pub preferred: Option<String>,
    /// RLAIF-V's preferred and dispreferred responses.
    pub chosen: Option<String>,
    pub rejected: Option<String>,
}

/// One row's columns by name, with what names the row in errors.
struct Columns<'a> {
    path: &'a Path,
    row: usize,
    fields: HashMap<&'a str, &'a Field>,
}

impl Columns<'_> {
    fn bad(&self, field: &str, message: impl Into<String>) -> BadLine {
        BadLine {
            path: self.path.to_path_buf(),
            line: self.row,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn get(&self, name: &str) -> Result<&Field, BadLine> {
        match self.fields.get(name) {
            Some(Field::Null) | None => Err(self.bad(name, "missing")),
            Some(field) => Ok(field),
        }
    }

    fn string(&self, name: &str) -> Result<String, BadLine> {
        match self.get(name)? {
            Field::Str(s) if !s.trim().is_empty() => Ok(s.clone()),
            Field::Str(_) => Err(self.bad(name, "empty")),
            other => Err(self.bad(name, format!("expected text, found {other}"))),
        }
    }

    fn optional_id(&self, name: &str) -> Result<Option<String>, BadLine> {
        match self.fields.get(name) {
            None | Some(Field::Null) => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s.clone())),
            Some(Field::Long(n)) => Ok(Some(n.to_string())),
            Some(Field::Int(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.bad(name, format!("expected text or a number, found {other}"))),
        }
    }

    fn integer(&self, name: &str) -> Result<i64, BadLine> {
        match self.get(name)? {
            Field::Byte(n) => Ok(*n as i64),
            Field::Short(n) => Ok(*n as i64),
            Field::Int(n) => Ok(*n as i64),
            Field::Long(n) => Ok(*n),
            Field::UInt(n) => Ok(*n as i64),
            Field::ULong(n) => Ok(*n as i64),
            Field::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.bad(name, format!("expected a number, found \"{s}\""))),
            other => Err(self.bad(name, format!("expected a number, found {other}"))),
        }
    }

    /// The row's image as a file: embedded bytes written into `images` (once), or a path
    /// relative to the parquet file's folder.
    fn image(&self, name: &str, images: &Path) -> Result<PathBuf, BadLine> {
        let (bytes, stored_path) = match self.get(name)? {
            Field::Group(group) => image_struct(group),
            Field::Bytes(b) => (Some(b.data().to_vec()), None),
            Field::Str(p) => (None, Some(p.clone())),
            other => {
                return Err(self.bad(
                    name,
                    format!("expected {{bytes, path}}, bytes or a path, found {other}"),
                ))
            }
        };
        match (bytes, stored_path) {
            (Some(bytes), stored) => {
                let format = image::guess_format(&bytes)
                    .map_err(|e| self.bad(name, format!("not an image ({e})")))?;
                let extension = format.extensions_str().first().copied().unwrap_or("img");
                let stem = self
                    .path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("data");
                let file = images.join(format!("{stem}-row{}.{extension}", self.row));
                if !file.exists() {
                    std::fs::create_dir_all(images)
                        .and_then(|()| std::fs::write(&file, &bytes))
                        .map_err(|e| self.bad(name, format!("writing {}: {e}", file.display())))?;
                }
                let _ = stored; // the embedded bytes win over the original file name
                Ok(file)
            }
            (None, Some(stored)) => {
                let folder = self.path.parent().unwrap_or(Path::new("."));
                let file = folder.join(&stored);
                if file.is_file() {
                    Ok(file)
                } else {
                    Err(self.bad(
                        name,
                        format!("{} not found (and no embedded bytes)", file.display()),
                    ))
                }
            }
            (None, None) => Err(self.bad(name, "neither bytes nor a path")),
        }
    }
}

/// `{bytes, path}` as the `datasets` Image feature stores it.
fn image_struct(group: &Row) -> (Option<Vec<u8>>, Option<String>) {
    let (mut bytes, mut path) = (None, None);
    for (key, value) in group.get_column_iter() {
        match (key.as_str(), value) {
            ("bytes", Field::Bytes(b)) if !b.data().is_empty() => bytes = Some(b.data().to_vec()),
            ("path", Field::Str(p)) if !p.is_empty() => path = Some(p.clone()),
            _ => {}
        }
    }
    (bytes, path)
}

/// Reads every row of `path` with `parse`; bad rows stop the load unless `skip_bad`.
fn load<T>(
    path: &Path,
    options: &LoadOptions,
    parse: impl Fn(&Columns) -> Result<T, BadLine>,
) -> Result<Loaded<T>, DataError> {
    let io = |error: std::io::Error| DataError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(io)?;
    let not_parquet = |e: parquet::errors::ParquetError| {
        DataError::Line(BadLine {
            path: path.to_path_buf(),
            line: 0,
            field: None,
            message: format!("not a readable parquet file: {e}"),
        })
    };
    let reader = SerializedFileReader::new(file).map_err(not_parquet)?;
    let rows = reader.get_row_iter(None).map_err(not_parquet)?;
    let mut loaded = Loaded {
        records: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, row) in rows.enumerate() {
        let row = row.map_err(not_parquet)?;
        let columns = Columns {
            path,
            row: index + 1,
            fields: row
                .get_column_iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        };
        match parse(&columns) {
            Ok(record) => loaded.records.push(record),
            Err(bad) if options.skip_bad => loaded.skipped.push(bad),
            Err(bad) => return Err(DataError::Line(bad)),
        }
    }
    if loaded.records.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(loaded)
}

fn name<'a>(chosen: &'a Option<String>, default: &'a str) -> &'a str {
    chosen.as_deref().unwrap_or(default)
}

/// Preference pairs, in the align-anything or RLAIF-V layout (chosen by the columns present,
/// after `fields`' renames). Embedded images go into `images`.
pub fn load_pairs_parquet(
    path: &Path,
    fields: &FieldNames,
    options: &LoadOptions,
    images: &Path,
) -> Result<Loaded<PreferenceRecord>, DataError> {
    let (question, image) = (
        name(&fields.question, "question"),
        name(&fields.image, "image"),
    );
    let (chosen, rejected) = (
        name(&fields.chosen, "chosen"),
        name(&fields.rejected, "rejected"),
    );
    let (r1, r2) = (
        name(&fields.response_1, "response_1"),
        name(&fields.response_2, "response_2"),
    );
    let preferred = name(&fields.preferred, "overall_response");
    let id = name(&fields.id, "id");
    load(path, options, |c| {
        let rlaif_v = c.fields.contains_key(chosen) || c.fields.contains_key(rejected);
        let (response_1, response_2, preference) = if rlaif_v {
            (c.string(chosen)?, c.string(rejected)?, 1)
        } else {
            let p = c.integer(preferred)?;
            if p != 1 && p != 2 {
                return Err(c.bad(preferred, format!("expected 1 or 2, found {p}")));
            }
            (c.string(r1)?, c.string(r2)?, p as u8)
        };
        Ok(PreferenceRecord {
            id: c.optional_id(id)?,
            image: c.image(image, images)?,
            question: c.string(question)?,
            response_1,
            response_2,
            preferred: preference,
            family: None,
            judgment: None,
            world: None,
        })
    })
}

/// Prompts for policy RL: question and image, and as the reference the preferred response
/// when the layout has one (`chosen`, or `response_1`/`response_2` by `overall_response`).
pub fn load_prompts_parquet(
    path: &Path,
    fields: &FieldNames,
    options: &LoadOptions,
    images: &Path,
) -> Result<Loaded<PromptRecord>, DataError> {
    let (question, image) = (
        name(&fields.question, "question"),
        name(&fields.image, "image"),
    );
    let chosen = name(&fields.chosen, "chosen");
    let (r1, r2) = (
        name(&fields.response_1, "response_1"),
        name(&fields.response_2, "response_2"),
    );
    let preferred = name(&fields.preferred, "overall_response");
    let id = name(&fields.id, "id");
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("data")
        .to_string();
    load(path, options, |c| {
        let reference = if c.fields.contains_key(chosen) {
            Some(c.string(chosen)?)
        } else if c.fields.contains_key(preferred) {
            match c.integer(preferred)? {
                1 => Some(c.string(r1)?),
                2 => Some(c.string(r2)?),
                p => return Err(c.bad(preferred, format!("expected 1 or 2, found {p}"))),
            }
        } else {
            None
        };
        Ok(PromptRecord {
            id: c
                .optional_id(id)?
                .unwrap_or_else(|| format!("{stem}-{}", c.row)),
            image: c.image(image, images)?,
            question: c.string(question)?,
            reference,
            family: None,
            world: None,
        })
    })
}
