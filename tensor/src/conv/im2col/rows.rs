//! One row of a block's im2col matrix, copied from the input images, and its
//! adjoint, col2im, added back into the input gradient.
//!
//! Row `(c, u, v)` of the matrix holds, for every output pixel `(i, j)` of the
//! block, the input pixel `x[c, i*s + u - p, j*s + v - p]` that kernel tap `(u, v)`
//! reads (zero in the padding). In general that is a strided gather, one output
//! row at a time. For stride 1 and an output as wide as the input (the usual
//! "same" convolution) one image's share of the row is a single contiguous copy
//! of the input plane, a [`Run`], with a few zeros patched in where the kernel
//! hangs over the left and right edges: the copy then runs at memory speed.

use super::Block;
use crate::conv::Geometry;

/// For stride 1 and `Wout == W` ("same" width), the valid part of one image's
/// segment of an im2col row `(c, u, v)` is a single contiguous run of the input
/// plane: output pixel `q = r * W + j` reads plane index `q + shift`. Positions
/// inside the run whose column `j` falls in the padding ("gaps", `gap` of them per
/// row boundary) read a neighbouring row instead and are fixed up separately.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// First and one-past-last segment positions of the run.
    start: usize,
    end: usize,
    /// Plane index of segment position `start`.
    src: usize,
    /// Segment position of the first gap; gaps repeat every `Wout` positions.
    gap_first: usize,
    /// Consecutive positions per gap.
    gap: usize,
}

impl Geometry {
    /// Output positions `t` (along an axis of `out` positions over `size` input
    /// pixels) whose input `t * stride + offset - pad` is inside the image.
    fn valid(&self, offset: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if offset >= p { 0 } else { (p - offset).div_ceil(s) };
        let hi = if size + p <= offset {
            0
        } else {
            out.min((size + p - 1 - offset) / s + 1)
        };
        (lo.min(hi), hi)
    }

    /// True when im2col rows can be copied as whole [`Run`]s.
    fn runs_merge(&self) -> bool {
        self.stride == 1 && self.ow == self.w
    }

    /// The [`Run`] of row `(u, v)` in a segment covering output rows
    /// `oh0..oh0 + rows` (only when [`Geometry::runs_merge`]), or `None` when no
    /// output pixel of the segment reads inside the image.
    fn run(&self, oh0: usize, rows: usize, u: usize, v: usize) -> Option<Run> {
        let (rlo, rhi) = self.valid(u, self.h, self.oh);
        let (jlo, jhi) = self.valid(v, self.w, self.ow);
        let (r0, r1) = (rlo.max(oh0), rhi.min(oh0 + rows));
        if r0 >= r1 || jlo == jhi {
            return None;
        }
        let start = (r0 - oh0) * self.ow + jlo;
        Some(Run {
            start,
            end: (r1 - 1 - oh0) * self.ow + jhi,
            src: (r0 + u - self.pad) * self.w + jlo + v - self.pad,
            gap_first: (r0 - oh0) * self.ow + jhi,
            gap: self.ow - (jhi - jlo),
        })
    }
}

/// Sets the gaps of `run` inside `seg` (whose rows are `period` long) to zero.
fn zero_gaps(seg: &mut [f32], run: &Run, period: usize) {
    for first in (run.gap_first..run.end).take(run.gap) {
        seg[first..run.end]
            .iter_mut()
            .step_by(period)
            .for_each(|z| *z = 0.0);
    }
}

/// Fills row `(c, u, v)` of a block's im2col matrix from the group's input `x`:
/// `dst[(i, r, j)] = x[img + i, c, (oh0 + r)*s + u - p, j*s + v - p]`, zero in the
/// padding.
pub(super) fn im2col_row(
    g: &Geometry,
    x: &[f32],
    blk: &Block,
    (c, u, v): (usize, usize, usize),
    dst: &mut [f32],
) {
    for (i, seg) in dst.chunks_exact_mut(blk.rows * g.ow).enumerate() {
        let plane = &x[((blk.img + i) * g.cin + c) * g.hw_in()..][..g.hw_in()];
        if !g.runs_merge() {
            im2col_rows(g, plane, blk.oh0, (u, v), seg);
            continue;
        }
        match g.run(blk.oh0, blk.rows, u, v) {
            None => seg.fill(0.0),
            Some(run) => {
                seg[..run.start].fill(0.0);
                seg[run.end..].fill(0.0);
                seg[run.start..run.end].copy_from_slice(&plane[run.src..][..run.end - run.start]);
                zero_gaps(seg, &run, g.ow);
            }
        }
    }
}

/// [`im2col_row`] for one image's segment, one output row at a time (any stride).
fn im2col_rows(g: &Geometry, plane: &[f32], oh0: usize, (u, v): (usize, usize), seg: &mut [f32]) {
    let (rlo, rhi) = g.valid(u, g.h, g.oh);
    let (jlo, jhi) = g.valid(v, g.w, g.ow);
    for (r, d) in seg.chunks_exact_mut(g.ow).enumerate() {
        let oh = oh0 + r;
        if oh < rlo || oh >= rhi || jlo == jhi {
            d.fill(0.0);
            continue;
        }
        let src = &plane[(oh * g.stride + u - g.pad) * g.w..][..g.w];
        d[..jlo].fill(0.0);
        d[jhi..].fill(0.0);
        let first = jlo * g.stride + v - g.pad;
        for (dj, sj) in d[jlo..jhi].iter_mut().zip(src[first..].iter().step_by(g.stride)) {
            *dj = *sj;
        }
    }
}

/// The adjoint of [`im2col_row`]: adds row `(c, u, v)` of a block's column
/// gradient back into the group's input gradient `dx`, dropping the padding.
/// (Zeroes the gaps of `src` on the way.)
#[inline(always)]
pub(super) fn col2im_row(
    g: &Geometry,
    src: &mut [f32],
    blk: &Block,
    (c, u, v): (usize, usize, usize),
    dx: &mut [f32],
) {
    let hw = g.hw_in();
    for (i, seg) in src.chunks_exact_mut(blk.rows * g.ow).enumerate() {
        let plane = &mut dx[((blk.img + i) * g.cin + c) * hw..][..hw];
        if !g.runs_merge() {
            col2im_rows(g, seg, blk.oh0, (u, v), plane);
        } else if let Some(run) = g.run(blk.oh0, blk.rows, u, v) {
            zero_gaps(seg, &run, g.ow);
            let len = run.end - run.start;
            for (d, &s) in plane[run.src..][..len].iter_mut().zip(&seg[run.start..run.end]) {
                *d += s;
            }
        }
    }
}

/// [`col2im_row`] for one image's segment, one output row at a time (any stride).
#[inline(always)]
fn col2im_rows(g: &Geometry, seg: &[f32], oh0: usize, (u, v): (usize, usize), plane: &mut [f32]) {
    let (rlo, rhi) = g.valid(u, g.h, g.oh);
    let (jlo, jhi) = g.valid(v, g.w, g.ow);
    for (r, s) in seg.chunks_exact(g.ow).enumerate() {
        let oh = oh0 + r;
        if oh < rlo || oh >= rhi || jlo == jhi {
            continue;
        }
        let dst = &mut plane[(oh * g.stride + u - g.pad) * g.w..][..g.w];
        let first = jlo * g.stride + v - g.pad;
        for (d, &sv) in dst[first..].iter_mut().step_by(g.stride).zip(&s[jlo..jhi]) {
            *d += sv;
        }
    }
}

/// The rows `(c, u, v)` of the im2col matrix, in order.
pub(super) fn kernel_rows(g: &Geometry) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..g.cin).flat_map(move |c| (0..g.kh).flat_map(move |u| (0..g.kw).map(move |v| (c, u, v))))
}
