//! Loaders for JSONL prompt sets, preference pairs and warm-start files — the world's own and real
//! data in the same shape.
//!
//! Each line is one JSON object. Image paths are resolved relative to the file's folder and must
//! exist, and may not leave the **data root** (the file's folder, or
//! [`LoadOptions::image_root`]) — not by `..`, an absolute path or a symbolic link — unless
//! [`LoadOptions::allow_images_outside_root`] says so: a dataset from elsewhere cannot make a
//! run read arbitrary files. A bad line is an error that names `file:line` and the field; with
//! [`LoadOptions::skip_bad`] bad lines are skipped and returned in [`Loaded::skipped`] so the caller
//! can count and report them. Blank lines are allowed. Unknown fields are ignored (real exports
//! carry many); a field of the wrong type never is.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::records::{PreferenceRecord, PromptRecord, SftRecord, WorldKey};
use crate::task::Family;

/// A loader failure.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{0}")]
    Line(BadLine),
    #[error("{}: no records", path.display())]
    Empty { path: PathBuf },
}

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// The offending field, when the line parsed as JSON.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// How to treat bad lines and image paths.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Skip bad lines (and report them) instead of failing on the first.
    pub skip_bad: bool,
    /// Do not check that image files exist (for tools that only read text).
    pub skip_image_check: bool,
    /// The folder image paths must stay inside (default: the file's own folder).
    pub image_root: Option<PathBuf>,
    /// Let image paths leave the data root.
    pub allow_images_outside_root: bool,
}

/// `path` made absolute with `..` and `.` resolved and symbolic links followed as far as the
/// path exists (a file that does not exist yet is judged by where it would be).
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut lexical = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    // Follow links through the longest prefix that exists.
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved
}

/// Records read from a file, and the lines skipped.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub records: Vec<T>,
    pub skipped: Vec<BadLine>,
}

/// Reads a prompt set: `id`, `image`, `question`, optional `reference`.
pub fn load_prompts(path: &Path, options: LoadOptions) -> Result<Loaded<PromptRecord>, DataError> {
    load(path, options, |fields| {
        Ok(PromptRecord {
            id: fields.id("id")?,
            image: fields.image("image")?,
            question: fields.string("question")?,
            reference: fields.optional_string("reference")?,
            family: fields.family()?,
            world: fields.world()?,
        })
    })
}

/// Reads preference pairs: `image`, `question`, `response_1`, `response_2`, `preferred` (1 | 2);
/// optional `id` and `judgment`.
pub fn load_pairs(
    path: &Path,
    options: LoadOptions,
) -> Result<Loaded<PreferenceRecord>, DataError> {
    load(path, options, |fields| {
        let preferred = match fields.get("preferred")? {
            Value::Number(n) if n.as_u64() == Some(1) || n.as_u64() == Some(2) => {
                n.as_u64().unwrap() as u8
            }
            Value::String(s) if s == "1" || s == "2" => s.parse().unwrap(),
            other => {
                return Err(fields.bad(
                    "preferred",
                    format!("expected 1 or 2, found {}", brief(other)),
                ))
            }
        };
        Ok(PreferenceRecord {
            id: fields.optional_id("id")?,
            image: fields.image("image")?,
            question: fields.string("question")?,
            response_1: fields.string("response_1")?,
            response_2: fields.string("response_2")?,
            preferred,
            family: fields.family()?,
            judgment: fields.optional_string("judgment")?,
            world: fields.world()?,
        })
    })
}

/// Reads policy warm-start records: `id`, `image`, `question`, `answer`.
pub fn load_sft(path: &Path, options: LoadOptions) -> Result<Loaded<SftRecord>, DataError> {
    load(path, options, |fields| {
        Ok(SftRecord {
            id: fields.id("id")?,
            image: fields.image("image")?,
            question: fields.string("question")?,
            answer: fields.string("answer")?,
            family: fields.family()?,
            world: fields.world()?,
        })
    })
}

/// The fields of one line, with the context to report a bad one.
struct Fields<'a> {
    object: Map<String, Value>,
    path: &'a Path,
    line: usize,
    folder: &'a Path,
    check_images: bool,
    /// The resolved data root, when image paths must stay inside it.
    root: Option<&'a Path>,
}

fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl Fields<'_> {
    fn bad(&self, field: &str, message: impl Into<String>) -> BadLine {
        BadLine {
            path: self.path.to_path_buf(),
            line: self.line,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn get(&self, field: &str) -> Result<&Value, BadLine> {
        match self.object.get(field) {
            Some(Value::Null) | None => Err(self.bad(field, "missing")),
            Some(value) => Ok(value),
        }
    }

    fn string(&self, field: &str) -> Result<String, BadLine> {
        match self.get(field)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.bad(field, format!("expected a string, found {}", brief(other)))),
        }
    }

    fn optional_string(&self, field: &str) -> Result<Option<String>, BadLine> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.string(field).map(Some),
        }
    }

    /// Ids may be strings or integers in real exports.
    fn id(&self, field: &str) -> Result<String, BadLine> {
        match self.get(field)? {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
            other => Err(self.bad(
                field,
                format!(
                    "expected a non-empty string or an integer, found {}",
                    brief(other)
                ),
            )),
        }
    }

    fn optional_id(&self, field: &str) -> Result<Option<String>, BadLine> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.id(field).map(Some),
        }
    }

    fn image(&self, field: &str) -> Result<PathBuf, BadLine> {
        let raw = self.string(field)?;
        if raw.is_empty() {
            return Err(self.bad(field, "empty path"));
        }
        let path = self.folder.join(&raw);
        if let Some(root) = self.root {
            if !resolve(&path).starts_with(root) {
                return Err(self.bad(
                    field,
                    format!(
                        "image path `{raw}` leaves the data root {} (set data.allow_images_outside_root = true to allow it)",
                        root.display()
                    ),
                ));
            }
        }
        if self.check_images && !path.is_file() {
            return Err(self.bad(field, format!("image file {} not found", path.display())));
        }
        Ok(path)
    }

    fn family(&self) -> Result<Option<Family>, BadLine> {
        match self.optional_string("family")? {
            None => Ok(None),
            Some(name) => name
                .parse()
                .map(Some)
                .map_err(|e: String| self.bad("family", e)),
        }
    }

    fn world(&self) -> Result<Option<WorldKey>, BadLine> {
        let Some(value) = self.object.get("world").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let key: WorldKey =
            serde_json::from_value(value.clone()).map_err(|e| self.bad("world", e.to_string()))?;
        key.scene
            .validate()
            .map_err(|e| self.bad("world.scene", e))?;
        key.task
            .validate(&key.scene)
            .map_err(|e| self.bad("world.task", e))?;
        Ok(Some(key))
    }
}

fn load<T>(
    path: &Path,
    options: LoadOptions,
    parse: impl Fn(&Fields<'_>) -> Result<T, BadLine>,
) -> Result<Loaded<T>, DataError> {
    let io = |error| DataError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(io)?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let root = match (&options.image_root, options.allow_images_outside_root) {
        (_, true) => None,
        (Some(root), false) => Some(root.canonicalize().map_err(|error| DataError::Io {
            path: root.clone(),
            error,
        })?),
        (None, false) => Some(resolve(folder)),
    };
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line_number = index + 1;
        let bytes = line.map_err(io)?;
        let result = match std::str::from_utf8(&bytes) {
            Err(e) => Err(BadLine {
                path: path.to_path_buf(),
                line: line_number,
                field: None,
                message: format!("not UTF-8 ({e})"),
            }),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => parse(&Fields {
                    object,
                    path,
                    line: line_number,
                    folder,
                    check_images: !options.skip_image_check,
                    root: root.as_deref(),
                }),
                Ok(other) => Err(BadLine {
                    path: path.to_path_buf(),
                    line: line_number,
                    field: None,
                    message: format!("expected a JSON object, found {}", brief(&other)),
                }),
                Err(e) => Err(BadLine {
                    path: path.to_path_buf(),
                    line: line_number,
                    field: None,
                    message: format!("not JSON: {e}"),
                }),
            },
        };
        match result {
            Ok(record) => records.push(record),
            Err(bad) if options.skip_bad => skipped.push(bad),
            Err(bad) => return Err(DataError::Line(bad)),
        }
    }
    if records.is_empty() && skipped.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Loaded { records, skipped })
}
