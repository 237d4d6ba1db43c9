//! Output buffers that a kernel writes in full, without zeroing them first.
//!
//! `vec![0.0; n]` writes every element once before the kernel writes it again:
//! for a tensor of activations that is a whole extra pass over memory. Instead
//! the kernel gets the buffer's slots as `MaybeUninit<f32>` and must write each
//! one; only then is the buffer a `Vec<f32>`.

use std::mem::MaybeUninit;

/// A vector of `len` floats, each written by `fill` (which gets all `len` slots).
///
/// # Safety
///
/// `fill` must write every slot it is given (with `MaybeUninit::write`, or by
/// first writing a range and then reading it back through [`assume_written`]).
pub(crate) unsafe fn filled_by(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is at least `len`, and the caller's contract is that
    // `fill` wrote all of the first `len` slots, so they are initialised floats.
    unsafe { out.set_len(len) };
    out
}

/// The slots of `s`, already written, as floats.
///
/// # Safety
///
/// Every slot of `s` must have been written.
#[inline(always)]
pub(crate) unsafe fn assume_written(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the size, alignment and layout of `f32`, and
    // the caller guarantees every slot holds an initialised value.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}
