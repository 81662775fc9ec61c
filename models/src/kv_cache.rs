//! A preallocated key/value cache for batched decoding.
//!
//! Keys and values of every layer live in tensors of shape
//! `[batch, num_kv_heads, capacity, head_dim]` allocated once, before prefill. Each forward pass
//! writes its new positions in place and attends over the filled prefix, so decoding never
//! reallocates or concatenates (transformers' dynamic cache concatenates every step).
//!
//! Rows of a batch share one write offset: prompts of different lengths are left-padded, and the
//! padding is hidden from attention by the key-validity mask kept next to the cache.

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Cached keys and values of one attention layer.
#[derive(Debug)]
pub struct LayerCache {
    pub(crate) keys: Tensor,
    pub(crate) values: Tensor,
}

/// Keys and values of all layers plus which cached positions hold real (non-padding) tokens.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    /// `[batch, capacity]` bool: position holds a real token.
    key_valid: Tensor,
    /// Number of positions written so far (same for every row).
    len: i64,
    capacity: i64,
    /// Whether any written position is padding; when not, attention needs no explicit mask.
    has_padding: bool,
}

impl KvCache {
    /// Allocates a cache for `batch` rows of up to `capacity` positions.
    pub fn new(
        num_layers: i64,
        batch: i64,
        num_kv_heads: i64,
        head_dim: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Result<KvCache> {
        if batch <= 0 || capacity <= 0 {
            return Err(ModelError::invalid(
                "kv_cache",
                format!("batch ({batch}) and capacity ({capacity}) must be positive"),
            ));
        }
        let shape = [batch, num_kv_heads, capacity, head_dim];
        let layers = LayerCache::allocate(num_layers, shape, kind, device)?;
        Ok(KvCache {
            layers,
            key_valid: Tensor::f_zeros([batch, capacity], (Kind::Bool, device))?,
            len: 0,
            capacity,
            has_padding: false,
        })
    }

    /// Positions written so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    pub fn batch_size(&self) -> i64 {
        self.key_valid.size()[0]
    }

    /// Whether some cached position is padding.
    pub fn has_padding(&self) -> bool {
        self.has_padding
    }

    /// Key validity of the filled prefix plus `extra` upcoming positions: `[batch, len + extra]`.
    pub(crate) fn key_valid(&self, extra: i64) -> Tensor {
        self.key_valid.narrow(1, 0, self.len + extra)
    }

    /// Records the validity of the next `valid.size()[1]` positions before they are written.
    /// `has_padding` tells whether `valid` holds any false entry (known to the caller without a
    /// device round trip).
    pub(crate) fn stage(&mut self, valid: &Tensor, has_padding: bool) -> Result<()> {
        let count = valid.size()[1];
        if self.len + count > self.capacity {
            return Err(ModelError::invalid(
                "kv_cache",
                format!(
                    "{} cached + {count} new positions exceed the capacity of {}",
                    self.len, self.capacity
                ),
            ));
        }
        self.key_valid
            .narrow(1, self.len, count)
            .f_copy_(&valid.to_kind(Kind::Bool))?;
        self.has_padding |= has_padding;
        Ok(())
    }

    /// Marks the staged positions as written; called once all layers stored them.
    pub(crate) fn advance(&mut self, count: i64) {
        self.len += count;
    }
}

/// Where a layer's new keys and values go in one forward pass.
#[derive(Debug)]
pub(crate) enum CacheWrite<'a> {
    /// Nowhere: attention covers this pass's own keys.
    None,
    /// Appended at a write offset every row shares (this module's [`KvCache`]).
    At(&'a mut LayerCache, i64),
    /// One token per slot, each at its slot's own length (the slot cache's `[slots, 1, 1, 1]`
    /// index; see `crate::slot_cache`).
    Slots(&'a mut LayerCache, &'a Tensor),
}

impl CacheWrite<'_> {
    /// Stores `keys`/`values` (`[batch, heads, count, head_dim]`) and returns the keys and
    /// values attention runs over.
    pub(crate) fn store(self, keys: Tensor, values: Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            CacheWrite::None => Ok((keys, values)),
            CacheWrite::At(layer, offset) => layer.append(offset, &keys, &values),
            CacheWrite::Slots(layer, index) => layer.write_slots(index, &keys, &values),
        }
    }
}

impl LayerCache {
    /// `num_layers` zeroed caches with `[rows, kv_heads, capacity, head_dim]` keys and values.
    pub(crate) fn allocate(
        num_layers: i64,
        shape: [i64; 4],
        kind: Kind,
        device: Device,
    ) -> Result<Vec<LayerCache>> {
        (0..num_layers)
            .map(|_| {
                Ok(LayerCache {
                    keys: Tensor::f_zeros(shape, (kind, device))?,
                    values: Tensor::f_zeros(shape, (kind, device))?,
                })
            })
            .collect()
    }

    /// Stores `keys`/`values` (`[batch, heads, count, head_dim]`) at `offset` and returns views
    /// of everything cached up to and including them.
    pub(crate) fn append(
        &mut self,
        offset: i64,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let count = keys.size()[2];
        self.keys.narrow(2, offset, count).f_copy_(keys)?;
        self.values.narrow(2, offset, count).f_copy_(values)?;
        Ok((
            self.keys.narrow(2, 0, offset + count),
            self.values.narrow(2, 0, offset + count),
        ))
    }
}
