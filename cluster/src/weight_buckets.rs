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

    /// Checks a layout that came over the wire before anything is allocated for it: every
    /// entry in a bucket that exists and inside it (checked arithmetic), of a known dtype,
    /// with non-negative dimensions whose bytes are its size, at an offset its dtype can be
    /// viewed at.
    pub fn validate(&self) -> Result<(), String> {
        if self.buckets.iter().any(|&b| b > i64::MAX as u64) {
            return Err("a bucket larger than a tensor can be".into());
        }
        for entry in &self.entries {
            let name = &entry.name;
            let Some(&size) = self.buckets.get(entry.bucket) else {
                return Err(format!(
                    "tensor `{name}` is in bucket {}, of {}",
                    entry.bucket,
                    self.buckets.len()
                ));
            };
            let kind = dtype_kind(&entry.dtype)
                .ok_or_else(|| format!("tensor `{name}`: unknown dtype `{}`", entry.dtype))?;
            let element = kind.elt_size_in_bytes() as u64;
            let bytes = entry.shape.iter().try_fold(element, |n, &d| {
                u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
            });
            if bytes != Some(entry.bytes) {
                return Err(format!(
                    "tensor `{name}`: {} bytes do not hold {:?} of {}",
                    entry.bytes, entry.shape, entry.dtype
                ));
            }
            if entry
                .offset
                .checked_add(entry.bytes)
                .is_none_or(|end| end > size)
            {
                return Err(format!(
                    "tensor `{name}` does not fit bucket {} of {size} bytes",
                    entry.bucket
                ));
            }
            if entry.offset % element != 0 {
                return Err(format!(
                    "tensor `{name}`: offset {} is not a multiple of its {element}-byte elements",
                    entry.offset
                ));
            }
        }
        Ok(())
    }

    /// The largest bucket, bytes (what one reusable buffer must hold).
    pub fn largest(&self) -> u64 {
        self.buckets.iter().copied().max().unwrap_or(0)
    }

    /// Checks that `tensors` are the layout's, in its order, with its shapes.
    fn check_tensors(&self, tensors: &[(String, Tensor)]) -> Result<(), String> {
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
        }
        Ok(())
    }

    /// Copies the tensors of bucket `bucket` (of `tensors`, in the layout's order, any device)
    /// into `buffer`, a `u8` tensor of that bucket's size.
    pub fn pack_bucket(
        &self,
        bucket: usize,
        tensors: &[(String, Tensor)],
        buffer: &mut Tensor,
    ) -> Result<(), String> {
        self.check_tensors(tensors)?;
        self.check_buffer(bucket, buffer)?;
        for ((_, tensor), entry) in tensors.iter().zip(&self.entries) {
            if entry.bucket == bucket {
                let mut slot = buffer.narrow(0, entry.offset as i64, entry.bytes as i64);
                slot.copy_(&as_bytes(tensor));
            }
        }
        Ok(())
    }

    /// The named tensors of bucket `bucket`, read from `buffer` (owned copies on its device,
    /// so the buffer can be reused). The layout is validated first ([`Self::validate`]).
    pub fn unpack_bucket(
        &self,
        bucket: usize,
        buffer: &Tensor,
    ) -> Result<Vec<(String, Tensor)>, String> {
        self.validate()?;
        self.check_buffer(bucket, buffer)?;
        self.entries
            .iter()
            .filter(|entry| entry.bucket == bucket)
            .map(|entry| {
                let kind = dtype_kind(&entry.dtype).expect("validated");
                let tensor = buffer
                    .f_narrow(0, entry.offset as i64, entry.bytes as i64)
                    .and_then(|bytes| bytes.f_view_dtype(kind))
                    .and_then(|t| t.f_reshape(&entry.shape[..]))
                    .and_then(|t| {
                        let mut owned = t.f_empty_like()?;
                        owned.f_copy_(&t)?;
                        Ok(owned)
                    })
                    .map_err(|e| format!("tensor `{}`: {e}", entry.name))?;
                Ok((entry.name.clone(), tensor))
            })
            .collect()
    }

    /// Copies `tensors` into `buckets` (one per bucket of the layout).
    pub fn pack_into(
        &self,
        tensors: &[(String, Tensor)],
        buckets: &mut [Tensor],
    ) -> Result<(), String> {
        self.check_count(buckets)?;
        for (i, buffer) in buckets.iter_mut().enumerate() {
            self.pack_bucket(i, tensors, buffer)?;
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

    /// The named tensors `buckets` hold, in the layout's order.
    pub fn unpack(&self, buckets: &[Tensor]) -> Result<Vec<(String, Tensor)>, String> {
        self.check_count(buckets)?;
        let mut out = Vec::with_capacity(self.entries.len());
        for (i, buffer) in buckets.iter().enumerate() {
            out.extend(self.unpack_bucket(i, buffer)?);
        }
        Ok(out)
    }

    fn check_count(&self, buckets: &[Tensor]) -> Result<(), String> {
        if buckets.len() != self.buckets.len() {
            return Err(format!(
                "{} buckets given for a layout of {}",
                buckets.len(),
                self.buckets.len()
            ));
        }
        Ok(())
    }

    fn check_buffer(&self, bucket: usize, buffer: &Tensor) -> Result<(), String> {
        let Some(&bytes) = self.buckets.get(bucket) else {
            return Err(format!(
                "no bucket {bucket} in a layout of {}",
                self.buckets.len()
            ));
        };
        if buffer.kind() != Kind::Uint8 || buffer.numel() as u64 != bytes {
            return Err(format!(
                "bucket {bucket} is {:?} × {}, the layout says u8 × {bytes}",
                buffer.kind(),
                buffer.numel()
            ));
        }
        for entry in self.entries.iter().filter(|e| e.bucket == bucket) {
            if entry.offset + entry.bytes > bytes {
                return Err(format!(
                    "tensor `{}` ends at byte {} of bucket {bucket} of {bytes} bytes",
                    entry.name,
                    entry.offset + entry.bytes
                ));
            }
        }
        Ok(())
    }
}
