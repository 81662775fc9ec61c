//! Named tensors laid out in a few flat byte buckets, for collectives that move one buffer at a
//! time (the NCCL weight broadcast): the sender packs a snapshot into buckets, each bucket is
//! broadcast, and every receiver unpacks the same layout into named tensors. The layout (names,
//! dtypes, shapes, offsets) is small and travels as a control message; the bytes never do.
//!
//! Offsets are aligned to [`ALIGN`] bytes, so a tensor's slice of a bucket can be viewed in its
//! own dtype without a copy. Packing and unpacking work on any device: on a GPU the buckets live
//! in device memory and the copies are device copies.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Every tensor starts at a multiple of this many bytes within its bucket.
pub const ALIGN: u64 = 256;

/// Where one named tensor lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    pub bucket: usize,
    pub offset: u64,
    pub bytes: u64,
}

/// How a snapshot is split into buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketLayout {
    /// Each bucket's size in bytes.
    pub buckets: Vec<u64>,
    pub entries: Vec<BucketEntry>,
}

/// The dtypes a layout can carry, by name.
const KINDS: [(Kind, &str); 10] = [
    (Kind::Float, "f32"),
    (Kind::BFloat16, "bf16"),
    (Kind::Half, "f16"),
    (Kind::Double, "f64"),
    (Kind::Int64, "i64"),
    (Kind::Int, "i32"),
    (Kind::Int16, "i16"),
    (Kind::Int8, "i8"),
    (Kind::Uint8, "u8"),
    (Kind::Bool, "bool"),
];

fn dtype_name(kind: Kind) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n)
}

fn dtype_kind(name: &str) -> Option<Kind> {
    KINDS.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// A tensor's bytes as a flat `u8` tensor (a view where it is contiguous).
fn as_bytes(tensor: &Tensor) -> Tensor {
    tensor.contiguous().reshape([-1]).view_dtype(Kind::Uint8)
}

impl BucketLayout {
    /// Lays `tensors` out in order, starting a new bucket when the next tensor would take the
    /// current one past `max_bucket_bytes`; a tensor larger than that gets a bucket of its own.
    pub fn plan(tensors: &[(String, Tensor)], max_bucket_bytes: u64) -> Result<Self, String> {
        let mut layout = BucketLayout {
            buckets: Vec::new(),
            entries: Vec::new(),
        };
        let mut fill = 0u64;
        for (name, tensor) in tensors {
            let kind = tensor.kind();
            let dtype = dtype_name(kind)
                .ok_or_else(|| format!("tensor `{name}`: dtype {kind:?} cannot be bucketed"))?;
            let bytes = tensor.numel() as u64 * kind.elt_size_in_bytes() as u64;
            let start = align(fill);
            if layout.buckets.is_empty() || (fill > 0 && start + bytes > max_bucket_bytes) {
                layout.buckets.push(0);
                fill = 0;
            }
            let offset = align(fill);
            fill = offset + bytes;
            let bucket = layout.buckets.len() - 1;
            layout.buckets[bucket] = fill;
            layout.entries.push(BucketEntry {
                name: name.clone(),
                dtype: dtype.to_string(),
                shape: tensor.size(),
                bucket,
                offset,
                bytes,
            });
        }
        Ok(layout)
    }

    /// Total bytes over every bucket (padding included).
    pub fn total_bytes(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Buckets of the layout's sizes on `device`, uninitialised (a receiver's buffers).
    pub fn empty_buckets(&self, device: Device) -> Vec<Tensor> {
        self.buckets
            .iter()
            .map(|&b| Tensor::empty([b as i64], (Kind::Uint8, device)))
            .collect()
    }

    /// Copies `tensors` (in the layout's order, any device) into `buckets`.
    pub fn pack_into(
        &self,
        tensors: &[(String, Tensor)],
        buckets: &mut [Tensor],
    ) -> Result<(), String> {
        self.check_buckets(buckets)?;
        if tensors.len() != self.entries.len() {
            return Err(format!(
                "packing {} tensors into a layout of {}",
                tensors.len(),
                self.entries.len()
            ));
        }
        for ((name, tensor), entry) in tensors.iter().zip(&self.entries) {
            if *name != entry.name || tensor.size() != entry.shape {
                return Err(format!(
                    "tensor `{name}` {:?} does not match the layout's `{}` {:?}",
                    tensor.size(),
                    entry.name,
                    entry.shape
                ));
            }
            let mut slot = buckets[entry.bucket].narrow(0, entry.offset as i64, entry.bytes as i64);
            slot.copy_(&as_bytes(tensor));
        }
        Ok(())
    }

    /// New buckets on `device` holding `tensors`.
    pub fn pack(
        &self,
        tensors: &[(String, Tensor)],
        device: Device,
    ) -> Result<Vec<Tensor>, String> {
        let mut buckets = self.empty_buckets(device);
        self.pack_into(tensors, &mut buckets)?;
        Ok(buckets)
    }

    /// The named tensors `buckets` hold, each an owned copy on the buckets' device (so the
    /// buckets can be reused for the next version).
    pub fn unpack(&self, buckets: &[Tensor]) -> Result<Vec<(String, Tensor)>, String> {
        self.check_buckets(buckets)?;
        self.entries
            .iter()
            .map(|entry| {
                let kind = dtype_kind(&entry.dtype).ok_or_else(|| {
                    format!("tensor `{}`: unknown dtype `{}`", entry.name, entry.dtype)
                })?;
                let elements: i64 = entry.shape.iter().product();
                if elements as u64 * kind.elt_size_in_bytes() as u64 != entry.bytes {
                    return Err(format!(
                        "tensor `{}`: {} bytes do not hold {:?} of {}",
                        entry.name, entry.bytes, entry.shape, entry.dtype
                    ));
                }
                let bytes =
                    buckets[entry.bucket].narrow(0, entry.offset as i64, entry.bytes as i64);
                let tensor = bytes.view_dtype(kind).reshape(&entry.shape[..]).copy();
                Ok((entry.name.clone(), tensor))
            })
            .collect()
    }

    fn check_buckets(&self, buckets: &[Tensor]) -> Result<(), String> {
        if buckets.len() != self.buckets.len() {
            return Err(format!(
                "{} buckets given for a layout of {}",
                buckets.len(),
                self.buckets.len()
            ));
        }
        for (i, (bucket, &bytes)) in buckets.iter().zip(&self.buckets).enumerate() {
            if bucket.kind() != Kind::Uint8 || bucket.numel() as u64 != bytes {
                return Err(format!(
                    "bucket {i} is {:?} × {}, the layout says u8 × {bytes}",
                    bucket.kind(),
                    bucket.numel()
                ));
            }
        }
        for entry in &self.entries {
            let size = self.buckets.get(entry.bucket).copied().unwrap_or(0);
            if entry.offset + entry.bytes > size {
                return Err(format!(
                    "tensor `{}` ends at byte {} of bucket {} of {size} bytes",
                    entry.name,
                    entry.offset + entry.bytes,
                    entry.bucket
                ));
            }
        }
        Ok(())
    }
}
