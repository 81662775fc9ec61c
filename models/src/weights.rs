//! Safetensors I/O with Hugging Face tensor names: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`.
//!
//! Loading is strict. Every parameter of the model must be present with the right shape, and
//! every tensor in the checkpoint must belong to the model (a few known non-parameters are
//! skipped, see [`LoadOptions`]); otherwise the error names the tensor and the file. A truncated
//! or corrupt file is caught by the safetensors header check before any tensor is read.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use tch::{nn::VarStore, Kind, Tensor};

use crate::error::{ModelError, Result};

/// File names used by Hugging Face checkpoints.
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// What to tolerate while loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Tensor names present in the checkpoint that the model deliberately does not use
    /// (e.g. `lm_head.weight` saved next to tied embeddings).
    pub ignore: Vec<String>,
    /// `(old prefix, new prefix)` pairs mapping older checkpoint layouts onto the model's
    /// names (e.g. transformers-4 `visual.` → transformers-5 `model.visual.`); the first
    /// matching prefix wins.
    pub renames: Vec<(String, String)>,
}

impl LoadOptions {
    fn rename(&self, name: &str) -> String {
        for (old, new) in &self.renames {
            if let Some(rest) = name.strip_prefix(old.as_str()) {
                return format!("{new}{rest}");
            }
        }
        name.to_string()
    }

    fn ignores(&self, name: &str) -> bool {
        // Older checkpoints store rotary inverse frequencies, which are recomputed from config.
        name.ends_with("rotary_emb.inv_freq") || self.ignore.iter().any(|i| i == name)
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The safetensors files of a checkpoint directory.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let (parsed, _): (ShardIndex, _) = crate::config::read_json_file(&index, INDEX_FILE)?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, shard) in &parsed.weight_map {
            let path = dir.join(shard);
            if !path.exists() {
                return Err(ModelError::MissingShard {
                    path: index.clone(),
                    tensor: tensor.clone(),
                    shard: shard.clone(),
                });
            }
            if !files.contains(&path) {
                files.push(path);
            }
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(ModelError::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory"),
        ),
    ))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Copies a checkpoint's tensors into the variables of `vs`, converting dtype and device.
///
/// Errors name the first missing, unexpected or mis-shaped tensor and its file.
pub fn load_checkpoint(vs: &mut VarStore, dir: &Path, options: &LoadOptions) -> Result<()> {
    let files = checkpoint_files(dir)?;
    let mut variables: HashMap<String, Tensor> = vs.variables();
    let mut loaded: HashMap<String, PathBuf> = HashMap::new();
    for path in &files {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the mapping is read-only and lives until the end of this iteration; nothing
        // in this process writes checkpoint files while they are loaded.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let tensors = SafeTensors::deserialize(&mmap).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Sorted for deterministic error messages.
        let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
        names.sort();
        for stored in names {
            let name = options.rename(&stored);
            if options.ignores(&name) {
                continue;
            }
            let Some(var) = variables.get_mut(&name) else {
                return Err(ModelError::UnexpectedTensor {
                    path: path.clone(),
                    tensor: stored,
                });
            };
            if let Some(first) = loaded.get(&name) {
                return Err(ModelError::Safetensors {
                    path: path.clone(),
                    message: format!("tensor `{name}` also appears in {}", first.display()),
                });
            }
            let view = tensors
                .tensor(&stored)
                .map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let expected = var.size();
            if found != expected {
                return Err(ModelError::ShapeMismatch {
                    path: path.clone(),
                    tensor: name,
                    expected,
                    found,
                });
            }
            let kind = kind_of(view.dtype()).ok_or_else(|| ModelError::UnsupportedDtype {
                path: path.clone(),
                tensor: name.clone(),
                dtype: format!("{:?}", view.dtype()),
            })?;
            let source = Tensor::f_from_data_size(view.data(), &found, kind)?;
            tch::no_grad(|| var.f_copy_(&source))?;
            loaded.insert(name, path.clone());
        }
    }
    let mut missing: Vec<&String> = variables
        .keys()
        .filter(|k| !loaded.contains_key(*k))
        .collect();
    missing.sort();
    if let Some(name) = missing.first() {
        return Err(ModelError::MissingTensor {
            tensor: (*name).clone(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes every variable of `vs` to one safetensors file (HF names, the variables' dtype).
/// The file is written to a temporary name and renamed, so a crash never leaves a torn file.
pub fn save_varstore(vs: &VarStore, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    save_tensors(&tensors, path)
}

/// Writes named tensors to a safetensors file atomically (temporary file + rename).
pub fn save_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let host = host_tensors(tensors, path)?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views(&host), None, &tmp).map_err(|e| {
        ModelError::Safetensors {
            path: tmp.clone(),
            message: e.to_string(),
        }
    })?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))?;
    Ok(())
}

/// Named tensors as the bytes of a safetensors file, in memory (files and the weight stream
/// between processes share one format). `origin` names where the bytes go, for errors.
pub fn encode_safetensors(tensors: &[(String, Tensor)], origin: &Path) -> Result<Vec<u8>> {
    let host = host_tensors(tensors, origin)?;
    safetensors::serialize(views(&host), None).map_err(|e| ModelError::Safetensors {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })
}

/// A named tensor on the host, contiguous, whose bytes safetensors reads in place: a
/// version's bytes are copied once, into the file or buffer, not first into a staging `Vec`
/// (which doubled the cost of encoding a version and of writing a checkpoint).
struct HostTensor {
    name: String,
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: usize,
}

impl HostTensor {
    fn new(name: &str, tensor: &Tensor, origin: &Path) -> Result<HostTensor> {
        let tensor = tensor.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let kind = tensor.f_kind()?;
        let dtype = dtype_of(kind).ok_or_else(|| ModelError::UnsupportedDtype {
            path: origin.to_path_buf(),
            tensor: name.to_string(),
            dtype: format!("{kind:?}"),
        })?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        let bytes = tensor.numel() * kind.elt_size_in_bytes();
        Ok(HostTensor {
            name: name.to_string(),
            tensor,
            dtype,
            shape,
            bytes,
        })
    }

    fn bytes(&self) -> &[u8] {
        if self.bytes == 0 {
            return &[];
        }
        // SAFETY: `tensor` is a contiguous CPU tensor owned by `self` (kept alive as long as
        // the slice), and `data_ptr` points at its first element, so `bytes` = numel × element
        // size bytes from it are its data.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, self.bytes) }
    }
}

impl safetensors::View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.bytes())
    }

    fn data_len(&self) -> usize {
        self.bytes
    }
}

fn host_tensors(tensors: &[(String, Tensor)], origin: &Path) -> Result<Vec<HostTensor>> {
    tensors
        .iter()
        .map(|(name, tensor)| HostTensor::new(name, tensor, origin))
        .collect()
}

fn views(host: &[HostTensor]) -> impl Iterator<Item = (&str, &HostTensor)> {
    host.iter().map(|h| (h.name.as_str(), h))
}

/// Tensors (on the CPU, sorted by name) from the bytes of a safetensors file. `origin` names
/// where the bytes came from, for errors.
pub fn decode_safetensors(bytes: &[u8], origin: &Path) -> Result<Vec<(String, Tensor)>> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (name, view) in tensors.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| ModelError::UnsupportedDtype {
            path: origin.to_path_buf(),
            tensor: name.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::f_from_data_size(view.data(), &shape, kind)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads every tensor of one safetensors file onto the CPU (for fixtures and tools).
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    decode_safetensors(&bytes, path)
}
