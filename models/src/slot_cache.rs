//! A KV cache of independent rows ("slots") with fixed shapes, for continuous batching.
//!
//! [`crate::kv_cache::KvCache`] serves one batch from prefill to its end: every row shares one
//! write offset, so a finished row idles until the longest one ends. Here each slot has its own
//! length, kept in a device tensor: a decode step writes every slot's new key and value at that
//! slot's length (a scatter), and attention masks each slot's keys by its length. A slot whose
//! sequence finished takes the next prompt at once: [`SlotCache::fill`] copies that prompt's
//! prefill (a batch-1 [`KvCache`]) into the slot and sets its length.
//!
//! Every tensor a decode step touches keeps its shape from step to step (keys and values are
//! `[slots, kv_heads, capacity, head_dim]` per layer, attention always spans `capacity` keys),
//! and nothing in a step reads a device value: the shape a CUDA graph can capture. Attention
//! here is SDPA with a boolean mask; the layout stays SDPA's own (heads before positions).

use tch::{Device, Kind, Tensor};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::kv_cache::{KvCache, LayerCache};

/// Keys and values of all layers for `slots` independent rows.
#[derive(Debug)]
pub struct SlotCache {
    pub(crate) layers: Vec<LayerCache>,
    /// `[slots]` i64: positions written per slot.
    lengths: Tensor,
    /// `[1, capacity]` i64: key positions, compared against `lengths` for the mask.
    key_positions: Tensor,
    /// The same lengths as the host knows them (every change is made by the host), so a step
    /// past the capacity is an error here instead of an out-of-bounds write (a device assert
    /// on a GPU).
    host_lengths: Vec<i64>,
    capacity: i64,
}

/// What every layer of one decode step shares: where each slot writes, and which keys it sees.
#[derive(Debug)]
pub(crate) struct SlotStep {
    /// `[slots, 1, 1, 1]` i64: each slot's write position (expanded per layer as needed).
    pub(crate) index: Tensor,
    /// `[slots, 1, 1, capacity]` bool: the slot's keys up to and including the new one.
    pub(crate) mask: Tensor,
}

impl SlotCache {
    /// Allocates `slots` empty rows of up to `capacity` positions.
    pub fn new(
        num_layers: i64,
        slots: i64,
        num_kv_heads: i64,
        head_dim: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Result<SlotCache> {
        if slots <= 0 || capacity <= 0 {
            return Err(ModelError::invalid(
                "slot_cache",
                format!("slots ({slots}) and capacity ({capacity}) must be positive"),
            ));
        }
        let shape = [slots, num_kv_heads, capacity, head_dim];
        Ok(SlotCache {
            layers: LayerCache::allocate(num_layers, shape, kind, device)?,
            lengths: Tensor::f_zeros([slots], (Kind::Int64, device))?,
            key_positions: Tensor::f_arange(capacity, (Kind::Int64, device))?.unsqueeze(0),
            host_lengths: vec![0; slots as usize],
            capacity,
        })
    }

    /// Slots for a decoder of this config (its layers, KV heads and head size).
    pub fn for_decoder(
        config: &Config,
        slots: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Result<SlotCache> {
        SlotCache::new(
            config.num_hidden_layers,
            slots,
            config.num_kv_heads(),
            config.head_dim(),
            capacity,
            kind,
            device,
        )
    }

    pub fn slots(&self) -> i64 {
        self.lengths.size()[0]
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Puts a prompt's prefill (a batch-1 cache without padding) into `slot`, replacing what
    /// the slot held. Positions past the prompt keep stale values, hidden by the slot's length.
    pub fn fill(&mut self, slot: i64, prefilled: &KvCache) -> Result<()> {
        let len = prefilled.len();
        if prefilled.batch_size() != 1 || prefilled.has_padding() {
            return Err(ModelError::invalid(
                "slot_cache",
                "a slot takes the cache of one unpadded prompt",
            ));
        }
        if !(0..self.slots()).contains(&slot) || len >= self.capacity {
            return Err(ModelError::invalid(
                "slot_cache",
                format!(
                    "slot {slot} of {} cannot take {len} positions (capacity {}, one must stay \
                     free for decoding)",
                    self.slots(),
                    self.capacity
                ),
            ));
        }
        if prefilled.layers.len() != self.layers.len() {
            return Err(ModelError::invalid(
                "slot_cache",
                format!(
                    "the prefill has {} layers, the slots {}",
                    prefilled.layers.len(),
                    self.layers.len()
                ),
            ));
        }
        for (slot_layer, prompt_layer) in self.layers.iter().zip(&prefilled.layers) {
            slot_layer
                .keys
                .get(slot)
                .narrow(1, 0, len)
                .f_copy_(&prompt_layer.keys.get(0).narrow(1, 0, len))?;
            slot_layer
                .values
                .get(slot)
                .narrow(1, 0, len)
                .f_copy_(&prompt_layer.values.get(0).narrow(1, 0, len))?;
        }
        let _ = self.lengths.get(slot).f_fill_(len)?;
        self.host_lengths[slot as usize] = len;
        Ok(())
    }

    /// Empties `slot` (length 0). Its stale keys stay, hidden by the length.
    pub fn reset(&mut self, slot: i64) -> Result<()> {
        if !(0..self.slots()).contains(&slot) {
            return Err(ModelError::invalid(
                "slot_cache",
                format!("slot {slot} of {} cannot be reset", self.slots()),
            ));
        }
        let _ = self.lengths.get(slot).f_fill_(0)?;
        self.host_lengths[slot as usize] = 0;
        Ok(())
    }

    /// Write positions and masks for the next decode step (one token per slot); an error when
    /// a slot is full.
    pub(crate) fn step(&self) -> Result<SlotStep> {
        self.check_room()?;
        let mask = self.key_positions.le_tensor(&self.lengths.unsqueeze(1));
        Ok(SlotStep {
            index: self.lengths.view([-1, 1, 1, 1]),
            mask: mask.unsqueeze(1).unsqueeze(1),
        })
    }

    /// Marks the step's token as written in every slot.
    pub(crate) fn advance(&mut self) {
        let _ = self.lengths.g_add_scalar_(1);
        self.count_step();
    }

    /// An error when some slot has no room for one more token.
    pub(crate) fn check_room(&self) -> Result<()> {
        match self.host_lengths.iter().position(|&l| l >= self.capacity) {
            Some(full) => Err(ModelError::invalid(
                "slot_cache",
                format!("slot {full} is full ({} positions)", self.capacity),
            )),
            None => Ok(()),
        }
    }

    /// The host's side of [`advance`](Self::advance): a step replayed from a CUDA graph runs
    /// the device side without any Rust code, so its caller counts it here.
    pub(crate) fn count_step(&mut self) {
        self.host_lengths.iter_mut().for_each(|l| *l += 1);
    }

    /// Takes back a step the host counted but the device never ran (one recorded into a CUDA
    /// graph during capture).
    pub(crate) fn uncount_step(&mut self) {
        self.host_lengths.iter_mut().for_each(|l| *l -= 1);
    }
}

impl LayerCache {
    /// Writes one new key/value per slot (`[slots, heads, 1, head_dim]`) at each slot's own
    /// position and returns the whole cache (attention masks what is not the slot's).
    pub(crate) fn write_slots(
        &mut self,
        index: &Tensor,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let index = index.expand(keys.size(), false);
        let _ = self.keys.f_scatter_(2, &index, keys)?;
        let _ = self.values.f_scatter_(2, &index, values)?;
        Ok((self.keys.shallow_clone(), self.values.shallow_clone()))
    }
}
