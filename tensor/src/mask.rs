//! Dropout masks from a counter-based generator: element `i` of the mask depends
//! only on `(seed, i)`, so the mask is filled in parallel, in vectorised loops,
//! and comes out the same at any thread count.
//!
//! A sequential generator (ChaCha, one call per element) cost a few per cent of
//! a U-Net training step. Here each element hashes its index with SplitMix64's
//! finaliser ([`crate::rng`]), a bijection of `u64` whose output bits pass
//! statistical test suites for consecutive inputs (Steele, Lea and Flood 2014):
//!
//! ```text
//! z = seed + (i + 1) * 0x9E3779B97F4A7C15
//! z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//! z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//! z =  z ^ (z >> 31)
//! u = (z >> 40) / 2^24                     uniform on [0, 1) with 24 bits
//! mask[i] = 0 if u < p else 1 / (1 - p)   (inverted dropout keeps the mean)
//! ```

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::layout::checked_numel;
use crate::rng::{self, GOLDEN_GAMMA};
use crate::simd;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};

/// SplitMix64's output for counter `i` of the stream `seed`.
#[inline(always)]
fn splitmix64(seed: u64, i: u64) -> u64 {
    rng::splitmix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

impl Tensor {
    /// An inverted-dropout mask of `shape`: each element is 0 with probability `p`
    /// and `1 / (1 - p)` otherwise, independently, from the stream `seed`.
    pub fn dropout_mask(shape: &[usize], p: f32, seed: u64) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid(
                "dropout_mask",
                format!("probability {p} is not in [0, 1)"),
            ));
        }
        let scale = 1.0 / (1.0 - p);
        // u < p  <=>  (z >> 40) < p * 2^24, compared in integers.
        let threshold = (f64::from(p) * f64::from(1u32 << 24)).ceil() as u64;
        let fill = |(c, out): (usize, &mut [f32])| {
            simd::widest(
                #[inline(always)]
                || {
                    let base = (c * CHUNK) as u64;
                    for (j, m) in out.iter_mut().enumerate() {
                        let dropped = (splitmix64(seed, base + j as u64) >> 40) < threshold;
                        *m = if dropped { 0.0 } else { scale };
                    }
                },
            )
        };
        let mut mask = vec![0.0; checked_numel("dropout_mask", shape)?];
        if mask.len() >= PARALLEL_MIN_ELEMENTS {
            mask.par_chunks_mut(CHUNK).enumerate().for_each(fill);
        } else {
            mask.chunks_mut(CHUNK).enumerate().for_each(fill);
        }
        Ok(Tensor::from_contiguous(mask, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_outputs() {
        // The first outputs of Vigna's splitmix64.c seeded with 1234567: the state
        // advances by the golden gamma before each output, as (i + 1) does here.
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423];
        for (i, &w) in want.iter().enumerate() {
            assert_eq!(splitmix64(1234567, i as u64), w);
        }
    }
}
