//! Minibatches for the offline trainers ([`crate::sft`] and [`crate::bradley_terry`]): every
//! item once per epoch, in a seeded random order that is reshuffled when the epoch ends. A
//! batch that crosses the end of an epoch takes the rest of that epoch and the start of the
//! next, so every item is seen equally often whatever the batch size.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices `0..len` in epochs of seeded random order.
pub struct EpochSampler {
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
}

impl EpochSampler {
    /// A sampler over `len` items (at least one), its first epoch already shuffled.
    pub fn new(len: usize, seed: u64) -> EpochSampler {
        assert!(len > 0, "an epoch sampler needs at least one item");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        EpochSampler {
            rng,
            order,
            cursor: 0,
        }
    }

    /// The next `size` indices.
    pub fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            if self.cursor == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            batch.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop `train_sft` and `train_bradley_terry` each had before they shared this sampler:
    /// the sampler must draw exactly what it drew, so seeded trainings are unchanged.
    fn inline_loop(len: usize, seed: u64, batch: usize, steps: usize) -> Vec<Vec<usize>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        let mut cursor = 0;
        let mut out = Vec::new();
        for _ in 0..steps {
            let mut b = Vec::with_capacity(batch);
            while b.len() < batch {
                if cursor == order.len() {
                    order.shuffle(&mut rng);
                    cursor = 0;
                }
                b.push(order[cursor]);
                cursor += 1;
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn draws_what_the_trainers_drew_before() {
        for (len, seed, batch) in [(1, 0, 3), (7, 1, 3), (10, 42, 10), (5, 9, 16), (100, 3, 8)] {
            let mut sampler = EpochSampler::new(len, seed);
            let drawn: Vec<Vec<usize>> = (0..20).map(|_| sampler.next_batch(batch)).collect();
            assert_eq!(
                drawn,
                inline_loop(len, seed, batch, 20),
                "{len} {seed} {batch}"
            );
        }
    }

    #[test]
    fn every_epoch_is_a_permutation_and_the_seed_fixes_the_order() {
        let (len, batch) = (12, 5);
        let mut sampler = EpochSampler::new(len, 7);
        let flat: Vec<usize> = (0..12).flat_map(|_| sampler.next_batch(batch)).collect();
        for epoch in flat.chunks(len) {
            let mut sorted = epoch.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        }
        assert_ne!(flat[..len], flat[len..2 * len], "each epoch is reshuffled");
        let mut again = EpochSampler::new(len, 7);
        assert_eq!(again.next_batch(len), flat[..len]);
        let mut other = EpochSampler::new(len, 8);
        assert_ne!(other.next_batch(len), flat[..len]);
    }
}
