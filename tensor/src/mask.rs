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
//!
//! Because element `i`'s mask value is a function of `(seed, i)`, dropout itself
//! ([`Tensor::dropout`]) needs no mask tensor: forward computes `x[i] * mask[i]`
//! in one pass, and backward computes `g[i] * mask[i]` again from the same seed,
//! so the tape keeps a seed instead of a tensor the size of the activation.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::layout::checked_numel;
use crate::rng::{self, GOLDEN_GAMMA};
use crate::simd;
use crate::tensor::{Tensor, PARALLEL_MIN_ELEMENTS};
use crate::uninit::filled_by;

/// SplitMix64's output for counter `i` of the stream `seed`.
#[inline(always)]
fn splitmix64(seed: u64, i: u64) -> u64 {
    rng::splitmix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The mask of `(p, seed)` as a function of the element index, for kernels that
/// apply dropout on the way out (group norm's, see [`crate::group_norm`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaskStream {
    threshold: u64,
    scale: f32,
    seed: u64,
}

impl MaskStream {
    /// The stream of dropout probability `p` (in `[0, 1)`, else an error naming
    /// `op`): an element is dropped when `u < p`, compared in integers as
    /// `(z >> 40) < p 2^24`.
    pub(crate) fn new(op: &'static str, p: f32, seed: u64) -> Result<MaskStream> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid(op, format!("probability {p} is not in [0, 1)")));
        }
        Ok(MaskStream {
            threshold: (f64::from(p) * f64::from(1u32 << 24)).ceil() as u64,
            scale: 1.0 / (1.0 - p),
            seed,
        })
    }

    /// `mask[i]`: 0 or `1 / (1 - p)`.
    #[inline(always)]
    pub(crate) fn at(&self, i: usize) -> f32 {
        let dropped = (splitmix64(self.seed, i as u64) >> 40) < self.threshold;
        if dropped {
            0.0
        } else {
            self.scale
        }
    }

    /// Writes every slot of `out` (a whole tensor), in parallel when large:
    /// `out[i] = f(i, mask[i])`.
    fn fill(self, out: &mut [MaybeUninit<f32>], f: impl Fn(usize, f32) -> f32 + Sync) {
        let fill = |(c, out): (usize, &mut [MaybeUninit<f32>])| {
            simd::widest(
                #[inline(always)]
                || {
                    let base = c * CHUNK;
                    for (j, o) in out.iter_mut().enumerate() {
                        o.write(f(base + j, self.at(base + j)));
                    }
                },
            )
        };
        if out.len() >= PARALLEL_MIN_ELEMENTS {
            out.par_chunks_mut(CHUNK).enumerate().for_each(fill);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(fill);
        }
    }
}

impl Tensor {
    /// Inverted dropout of `self` with the mask of `(p, seed)`: the same values as
    /// `self * Tensor::dropout_mask(self.shape(), p, seed)`, in one pass and with
    /// no mask tensor. Its gradient is `g.dropout(p, seed)` (the same mask).
    pub fn dropout(&self, p: f32, seed: u64) -> Result<Tensor> {
        let mask = MaskStream::new("dropout", p, seed)?;
        let x = self.contiguous();
        let xs = x.as_slice().unwrap_or_default();
        // SAFETY: `MaskStream::fill` writes every slot.
        let out = unsafe { filled_by(xs.len(), |o| mask.fill(o, |i, m| xs[i] * m)) };
        Ok(Tensor::from_contiguous(out, self.shape()))
    }

    /// An inverted-dropout mask of `shape`: each element is 0 with probability `p`
    /// and `1 / (1 - p)` otherwise, independently, from the stream `seed`.
    pub fn dropout_mask(shape: &[usize], p: f32, seed: u64) -> Result<Tensor> {
        let stream = MaskStream::new("dropout_mask", p, seed)?;
        let len = checked_numel("dropout_mask", shape)?;
        // SAFETY: `MaskStream::fill` writes every slot.
        let mask = unsafe { filled_by(len, |o| stream.fill(o, |_, m| m)) };
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
