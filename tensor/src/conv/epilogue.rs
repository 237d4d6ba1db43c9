//! What a forward convolution adds to its output as it writes it: the bias, and
//! an addend, so that the U-Net's time-embedding and residual adds are not
//! passes of their own.
//!
//! ```text
//! y[b, o, i, j] = (conv(x, W)[b, o, i, j] + bias[o]) + a        a = addend[b, o, i, j]  (Full)
//!                                                                or addend[b, o]       (PerChannel)
//! ```
//!
//! The two sums are done in that order, so `conv2d_add(x, w, b, a)` equals
//! `conv2d(x, w, b) + a` bit for bit. The Winograd path adds both in its output
//! transform (`winograd/transforms.rs`), the im2col path adds the addend to each
//! group's output after its GEMMs ([`Addend::add_to`]), while it is in cache.

use super::Geometry;
use crate::error::{Result, TensorError};

/// The bias (`[Cout]`) and the addend of a forward pass, as slices of the
/// images the pass (or one group of it) writes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Epilogue<'a> {
    pub(super) bias: Option<&'a [f32]>,
    pub(super) addend: Addend<'a>,
}

/// A tensor added to a convolution's output.
#[derive(Debug, Clone, Copy, Default)]
pub(super) enum Addend<'a> {
    /// Nothing.
    #[default]
    None,
    /// `[images, Cout]` (a `[B, Cout, 1, 1]` tensor): one value per image and
    /// channel, such as a time embedding.
    PerChannel(&'a [f32]),
    /// `[images, Cout, Hout, Wout]`, the output's shape: a residual.
    Full(&'a [f32]),
}

impl<'a> Addend<'a> {
    /// Recognises `addend` (row-major, of `shape`) as one of the two shapes a
    /// convolution of geometry `g` adds, or names the mismatch.
    pub(super) fn new(g: &Geometry, shape: &[usize], addend: &'a [f32]) -> Result<Self> {
        let out = g.out_shape();
        if shape == out {
            Ok(Addend::Full(addend))
        } else if shape == [g.batch, g.cout, 1, 1] {
            Ok(Addend::PerChannel(addend))
        } else {
            Err(TensorError::ShapeMismatch {
                op: "conv2d_add (the addend must have the output's shape or [B, Cout, 1, 1])",
                lhs: shape.to_vec(),
                rhs: out.to_vec(),
            })
        }
    }

    /// The part for the `count` images from image `first`.
    pub(super) fn images(self, g: &Geometry, first: usize, count: usize) -> Self {
        match self {
            Addend::None => Addend::None,
            Addend::PerChannel(a) => Addend::PerChannel(&a[first * g.cout..][..count * g.cout]),
            Addend::Full(a) => Addend::Full(&a[first * g.image_out()..][..count * g.image_out()]),
        }
    }

    /// Adds the addend to `y`, `[images, Cout, Hout, Wout]` (its images).
    pub(super) fn add_to(self, g: &Geometry, y: &mut [f32]) {
        match self {
            Addend::None => {}
            Addend::PerChannel(a) => {
                for (plane, &v) in y.chunks_exact_mut(g.hw_out()).zip(a) {
                    plane.iter_mut().for_each(|y| *y += v);
                }
            }
            Addend::Full(a) => y.iter_mut().zip(a).for_each(|(y, &v)| *y += v),
        }
    }
}

impl<'a> Epilogue<'a> {
    /// The epilogue of the `count` images from image `first`.
    pub(super) fn images(self, g: &Geometry, first: usize, count: usize) -> Self {
        Epilogue {
            bias: self.bias,
            addend: self.addend.images(g, first, count),
        }
    }
}
