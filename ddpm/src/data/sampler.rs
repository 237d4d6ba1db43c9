//! Seeded, shuffled batches of indices: the order in which training sees the data.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::error::{DataError, Result};

/// An endless stream of index batches: each epoch is a fresh permutation of
/// `0..len` cut into `len / batch_size` full batches (the remainder of each
/// permutation is dropped, so every batch has the same size). The same seed gives
/// the same stream, which makes a training run reproducible.
#[derive(Debug, Clone)]
pub struct Sampler {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    epoch: usize,
    rng: StdRng,
}

impl Sampler {
    /// A sampler over `len` items; `batch_size` must be between 1 and `len`.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 || batch_size > len {
            return Err(DataError::argument(format!(
                "batch size {batch_size} must be between 1 and the data set's {len} images"
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        Ok(Sampler {
            order,
            batch_size,
            next: 0,
            epoch: 0,
            rng,
        })
    }

    /// The epoch the next batch belongs to, counting from 0.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The number of batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len() / self.batch_size
    }
}

impl Iterator for Sampler {
    type Item = Vec<usize>;

    /// The next batch of indices; never `None`.
    fn next(&mut self) -> Option<Vec<usize>> {
        let batch = self.order[self.next..self.next + self.batch_size].to_vec();
        self.next += self.batch_size;
        if self.next + self.batch_size > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.next = 0;
            self.epoch += 1;
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_is_a_permutation_and_the_seed_fixes_the_stream() {
        let mut s = Sampler::new(10, 3, 7).unwrap();
        assert_eq!(s.batches_per_epoch(), 3);
        for epoch in 0..4 {
            assert_eq!(s.epoch(), epoch);
            let mut seen: Vec<usize> = (0..3).flat_map(|_| s.next().unwrap()).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 9, "no index twice in an epoch");
        }
        let a: Vec<_> = Sampler::new(10, 3, 7).unwrap().take(8).collect();
        let b: Vec<_> = Sampler::new(10, 3, 7).unwrap().take(8).collect();
        let c: Vec<_> = Sampler::new(10, 3, 8).unwrap().take(8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_batch_sizes_are_errors() {
        assert!(matches!(Sampler::new(10, 0, 0), Err(DataError::Argument { .. })));
        assert!(matches!(Sampler::new(10, 11, 0), Err(DataError::Argument { .. })));
        assert!(Sampler::new(10, 10, 0).is_ok());
    }
}
