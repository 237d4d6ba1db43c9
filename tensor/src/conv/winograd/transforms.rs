//! Winograd's three data transforms, vectorised across tiles over the SIMD layer
//! ([`crate::simd`]): the input transform `B^T d B`, the output transform
//! `A^T M A` (plus the bias), and the weight gradient's `A dY A^T`.
//!
//! One vector holds `LANES` neighbouring tiles of one tile row (16 with AVX-512,
//! 8 with AVX2, 4 at the portable level). A tile reads input columns
//! `2 tj - 1 ..= 2 tj + 2`, so the vector of column `j` of the tiles' 4x4
//! patches is every other float of the row: two loads and one
//! [`Vector::deinterleave`] give two such vectors. Output tiles are put back
//! with [`Vector::interleave`]. Rows and columns outside the image are zero:
//! masked loads (`Chunk`) skip them, so no padded copy of the input is made.
//!
//! The weight gradient's `dM` is written with each tile's channels contiguous
//! instead (the layout its products read), `LANES` channels a vector, gathered
//! from `LANES` planes.

use super::{Block, Tiling, XI};
use crate::conv::{Addend, Epilogue, Geometry};
use crate::simd::Vector;

/// A set of lanes for a load or a store, and whether it is all of them (then
/// the access is a plain vector load or store: masked stores are slow on some
/// CPUs, AMD's AVX2 among them, and most accesses are whole).
#[derive(Clone, Copy)]
struct Lanes<V: Vector> {
    mask: V::Mask,
    full: bool,
}

impl<V: Vector> Lanes<V> {
    /// Every lane.
    #[inline(always)]
    fn all(v: V) -> Self {
        Lanes {
            mask: v.lanes(0, V::LANES),
            full: true,
        }
    }
}

/// The lanes `l` of a vector with `0 <= start + l < len`.
#[inline(always)]
fn lane_mask<V: Vector>(v: V, start: isize, len: usize) -> Lanes<V> {
    let lanes = V::LANES as isize;
    let lo = (-start).clamp(0, lanes);
    let hi = (len as isize - start).clamp(0, lanes);
    Lanes {
        mask: v.lanes(lo as usize, hi.max(lo) as usize),
        full: lo == 0 && hi == lanes,
    }
}

/// A run of `LANES` tiles, `tj0..tj0 + LANES`, of a tile row, with the masks of
/// its loads and stores, computed once per block rather than once per access.
///
/// Partial vectors are avoided where a whole one can be stored instead (masked
/// stores are slow on some CPUs, AMD's AVX2 among them): in a row at least a
/// vector wide the last chunk is moved left to end at the row's last tile,
/// recomputing a few tiles of the chunk before it (the same values); a row
/// narrower than a vector is one chunk that `spills`: its whole-vector stores
/// write garbage past the row onto elements that a later store of the same loop
/// overwrites (see the stores).
#[derive(Clone, Copy)]
struct Chunk<V: Vector> {
    tj0: usize,
    /// The tile row is narrower than a vector.
    spills: bool,
    /// Lanes that are tiles of the row (`tj0 + l < tw`).
    tiles: Lanes<V>,
    /// Loads from an input row (`w` wide) at `2 tj0 - 1 + [0, L, 2, L + 2]`.
    input: [Lanes<V>; 4],
    /// Loads or stores on an output row (`ow` wide) at `2 tj0 + [0, L]`.
    output: [Lanes<V>; 2],
}

impl<V: Vector> Chunk<V> {
    /// The chunks of a tile row, for `w`-wide input and `ow`-wide output rows.
    #[inline(always)]
    fn all(v: V, t: &Tiling, w: usize, ow: usize) -> Vec<Chunk<V>> {
        let l = V::LANES;
        let mut chunks = Vec::with_capacity(t.tw.div_ceil(l));
        for tj0 in (0..t.tw).step_by(l) {
            let tj0 = if t.tw >= l { tj0.min(t.tw - l) } else { tj0 };
            let (i0, o0, l) = (2 * tj0 as isize - 1, 2 * tj0 as isize, l as isize);
            chunks.push(Chunk {
                tj0,
                spills: t.tw < V::LANES,
                tiles: lane_mask(v, tj0 as isize, t.tw),
                input: [0, l, 2, l + 2].map(|d| lane_mask(v, i0 + d, w)),
                output: [0, l].map(|d| lane_mask(v, o0 + d, ow)),
            });
        }
        chunks
    }
}

/// `row[start + l]` in each lane `l` of `lanes`, zero in the others.
///
/// # Safety
/// Every lane `l` of `lanes` has `0 <= start + l < row.len()` (`lanes` is
/// `lane_mask(start, row.len())` or a subset of it). A masked load touches only
/// the lanes of its mask, so the pointer may point outside `row` (`wrapping_offset`).
#[inline(always)]
unsafe fn load<V: Vector>(v: V, row: &[f32], start: isize, lanes: Lanes<V>) -> V::Reg {
    let p = row.as_ptr().wrapping_offset(start);
    // SAFETY: the caller's contract; when `full`, every lane is in the row.
    unsafe {
        if lanes.full {
            v.load(p)
        } else {
            v.load_masked(p, lanes.mask)
        }
    }
}

/// Writes each lane `l` of `lanes` from `x` to `row[start + l]`.
///
/// # Safety
/// Every lane `l` of `lanes` has `start + l < row.len()`.
#[inline(always)]
unsafe fn store<V: Vector>(v: V, row: &mut [f32], start: usize, lanes: Lanes<V>, x: V::Reg) {
    let p = row.as_mut_ptr().wrapping_add(start);
    // SAFETY: the caller's contract; when `full`, every lane is in the row.
    unsafe {
        if lanes.full {
            v.store(p, x)
        } else {
            v.store_masked(p, lanes.mask, x)
        }
    }
}

/// `(B^T d B)` of a 4x4 `d` given as `d[i][j]`, one tile per lane:
/// first down the columns (`B^T d`), then along the rows.
#[inline(always)]
fn bt_d_b<V: Vector>(v: V, d: [[V::Reg; 4]; 4]) -> [[V::Reg; 4]; 4] {
    let bt = |x: [V::Reg; 4]| {
        [
            v.sub(x[0], x[2]),
            v.add(x[1], x[2]),
            v.sub(x[2], x[1]),
            v.sub(x[1], x[3]),
        ]
    };
    let cols: [[V::Reg; 4]; 4] = std::array::from_fn(|j| bt([d[0][j], d[1][j], d[2][j], d[3][j]]));
    std::array::from_fn(|i| bt([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]))
}

/// Row `y` of a plane (zero for `y` outside `0..h`), as the four vectors a chunk
/// of tiles reads from it: lane `l` of vector `j` is column `2 (tj0 + l) + j - 1`.
/// The odd and even columns from `2 tj0 - 1` give `j = 0, 1`; those from
/// `2 tj0 + 1`, `j = 2, 3`.
///
/// # Safety
/// `chunk` was made for rows `w` wide.
#[inline(always)]
unsafe fn input_row<V: Vector>(
    v: V,
    plane: &[f32],
    (h, w): (usize, usize),
    y: usize,
    chunk: &Chunk<V>,
) -> [V::Reg; 4] {
    if y >= h {
        return [v.zero(); 4];
    }
    let row = &plane[y * w..][..w];
    let (first, l) = (2 * chunk.tj0 as isize - 1, V::LANES as isize);
    let [m0, m1, m2, m3] = chunk.input;
    // SAFETY: `chunk.input` holds the masks of these four loads for rows `w` wide.
    let (d0, d1) = v.deinterleave(unsafe { load(v, row, first, m0) }, unsafe {
        load(v, row, first + l, m1)
    });
    let (d2, d3) = v.deinterleave(unsafe { load(v, row, first + 2, m2) }, unsafe {
        load(v, row, first + 2 + l, m3)
    });
    [d0, d1, d2, d3]
}

/// Writes `U[xi][c][t] = (B^T d B)[xi]` for every channel `c < channels` and tile
/// `t` of the block, `u` being `[16, channels, tiles]` ("channel-major": each
/// channel's tiles contiguous); `src` is `[images, channels, h, w]`.
///
/// Tile row `ti` reads input rows `2 ti - 1 ..= 2 ti + 2`; its last two are the
/// next tile row's first two, so they are loaded once and carried over.
#[inline(always)]
pub(super) fn input<V: Vector>(
    v: V,
    g: &Geometry,
    t: &Tiling,
    blk: Block,
    channels: usize,
    src: &[f32],
    u: &mut [f32],
) {
    let (hw, n) = (g.h * g.w, blk.tiles(t));
    assert!(u.len() >= XI * channels * n, "input transform: U too short");
    let chunks = Chunk::all(v, t, g.w, g.ow);
    for c in 0..channels {
        for chunk in &chunks {
            // The bottom two rows of the previous tile row (of the same image unless
            // `ti == 0`).
            let mut carried: Option<[[V::Reg; 4]; 2]> = None;
            for r in blk.r0..blk.r1 {
                let (img, ti) = (r / t.th, r % t.th);
                let plane = &src[(img * channels + c) * hw..][..hw];
                let col = (r - blk.r0) * t.tw + chunk.tj0;
                // SAFETY: `chunks` were made for rows `w` wide.
                let row = |y: usize| unsafe { input_row(v, plane, (g.h, g.w), y, chunk) };
                let top = match carried {
                    Some(rows) if ti > 0 => rows,
                    _ => [row((2 * ti).wrapping_sub(1)), row(2 * ti)],
                };
                let bottom = [row(2 * ti + 1), row(2 * ti + 2)];
                carried = Some(bottom);
                let tr = bt_d_b(v, [top[0], top[1], bottom[0], bottom[1]]);
                // A spilling chunk stores whole vectors while they end inside
                // the plane of `n` tiles: the lanes past this tile row fall on
                // tiles of the following rows, which this loop (over `r`) stores later.
                let lanes = if chunk.spills && col + V::LANES <= n {
                    Lanes::all(v)
                } else {
                    chunk.tiles
                };
                for (xi, x) in tr.iter().flatten().enumerate() {
                    // SAFETY: the lanes end inside the slice of `n` tiles: the whole
                    // vector by the check above, or the row's tiles, which end at
                    // `col + tw - tj0 <= n`.
                    unsafe { store(v, &mut u[(xi * channels + c) * n..][..n], col, lanes, *x) };
                }
            }
        }
    }
}

/// Writes `dM[xi][t][o] = (A dY A^T)[xi]` for every tile `t` of the block and
/// output channel `o < channels`, `dm` being `[16, tiles, channels]`
/// ("tile-major": each tile's channels contiguous, the layout the weight
/// gradient's products read); `dy` is `[images, channels, oh, ow]`, and pixels past
/// the output's edge count as zero. `LANES` channels at a time: each of a
/// tile's four `dY` pixels is gathered from `LANES` planes.
#[inline(always)]
pub(super) fn grad<V: Vector>(
    v: V,
    g: &Geometry,
    t: &Tiling,
    blk: Block,
    channels: usize,
    dy: &[f32],
    dm: &mut [f32],
) {
    let (oh, ow, n) = (g.oh, g.ow, blk.tiles(t));
    let ohw = oh * ow;
    assert!(
        V::LANES * ohw <= i32::MAX as usize,
        "plane too large for 32-bit gather offsets"
    );
    assert!(dm.len() >= XI * n * channels, "gradient transform: dM too short");
    let zero = v.zero();
    // (A x) for a 2-vector: the rows of A = [1 0; 1 1; 1 -1; 0 -1] applied to it.
    let a = |x0: V::Reg, x1: V::Reg| [x0, v.add(x0, x1), v.sub(x0, x1), v.sub(zero, x1)];
    for r in blk.r0..blk.r1 {
        let (img, ti) = (r / t.th, r % t.th);
        for tj in 0..t.tw {
            let tile = (r - blk.r0) * t.tw + tj;
            for o0 in (0..channels).step_by(V::LANES) {
                let mask = lane_mask(v, 0, channels - o0);
                let planes = &dy[(img * channels + o0) * ohw..];
                let mut e = [[zero; 2]; 2];
                for (a_row, ea) in e.iter_mut().enumerate() {
                    for (b_col, eab) in ea.iter_mut().enumerate() {
                        let (y, x) = (2 * ti + a_row, 2 * tj + b_col);
                        if y < oh && x < ow {
                            // SAFETY: lane `l` of `mask` reads `planes[l * ohw + y * ow + x]`,
                            // pixel (y, x) of channel `o0 + l < channels` of this
                            // image: inside `dy`; the offsets fit an i32 (asserted).
                            *eab =
                                unsafe { v.gather_masked(planes.as_ptr().add(y * ow + x), ohw, mask.mask) };
                        }
                    }
                }
                // Down the columns, then along the rows.
                let cols = [a(e[0][0], e[1][0]), a(e[0][1], e[1][1])];
                for i in 0..4 {
                    for (j, x) in a(cols[0][i], cols[1][i]).into_iter().enumerate() {
                        let row = &mut dm[((i * 4 + j) * n + tile) * channels..][..channels];
                        // SAFETY: the lanes of `mask` end at `channels - o0`.
                        unsafe { store(v, row, o0, mask, x) };
                    }
                }
            }
        }
    }
}

/// Writes `out[img][o][2 ti + a][2 tj + b] = ((A^T M A)[a][b] + bias[o]) + addend`
/// for every channel `o < channels` and tile of the block, `m` being `[16,
/// channels, tiles]` and `out` `[images, channels, oh, ow]`; the epilogue's
/// addend (`conv/epilogue.rs`) is `addend[img][o]` or `addend[img][o][y][x]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn output<V: Vector>(
    v: V,
    g: &Geometry,
    t: &Tiling,
    blk: Block,
    channels: usize,
    m: &[f32],
    epi: Epilogue<'_>,
    out: &mut [f32],
) {
    let (oh, ow, n) = (g.oh, g.ow, blk.tiles(t));
    let chunks = Chunk::all(v, t, g.w, g.ow);
    // (A^T x) for a 4-vector: [x0 + x1 + x2, x1 - x2 - x3].
    let at = |x: [V::Reg; 4]| [v.add(v.add(x[0], x[1]), x[2]), v.sub(v.sub(x[1], x[2]), x[3])];
    for o in 0..channels {
        let b = v.splat(epi.bias.map_or(0.0, |b| b[o]));
        for r in blk.r0..blk.r1 {
            let (img, ti) = (r / t.th, r % t.th);
            let at_plane = (img * channels + o) * oh * ow;
            let plane = &mut out[at_plane..][..oh * ow];
            let (per_channel, residual) = match epi.addend {
                Addend::None => (None, None),
                Addend::PerChannel(a) => (Some(v.splat(a[img * channels + o])), None),
                Addend::Full(a) => (None, Some(&a[at_plane..][..oh * ow])),
            };
            for chunk in &chunks {
                let col = (r - blk.r0) * t.tw + chunk.tj0;
                // SAFETY: the tile lanes of `chunk` end at `col + tw - tj0 <= n`.
                let mv: [V::Reg; 16] = std::array::from_fn(|xi| unsafe {
                    load(v, &m[(xi * channels + o) * n..][..n], col as isize, chunk.tiles)
                });
                let cols: [[V::Reg; 2]; 4] =
                    std::array::from_fn(|j| at([mv[j], mv[4 + j], mv[8 + j], mv[12 + j]]));
                let rows: [[V::Reg; 2]; 2] =
                    std::array::from_fn(|a| at([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]));
                for (a_row, [y0, y1]) in rows.into_iter().enumerate() {
                    let y = 2 * ti + a_row;
                    if y >= oh {
                        continue;
                    }
                    let (mut y0, mut y1) = (v.add(y0, b), v.add(y1, b));
                    if let Some(a) = per_channel {
                        (y0, y1) = (v.add(y0, a), v.add(y1, a));
                    }
                    let (lo, hi) = v.interleave(y0, y1);
                    for (q, half) in [lo, hi].into_iter().enumerate() {
                        let x = 2 * chunk.tj0 + q * V::LANES;
                        if x >= ow {
                            continue; // every lane is past the row
                        }
                        // A spilling chunk stores whole vectors while they end inside
                        // the plane: the stores of a plane run in increasing order of
                        // their first element and own disjoint, increasing runs of
                        // it, so lanes past this row fall on pixels that a later
                        // store (of the same `o`) owns and overwrites.
                        let start = y * ow + x;
                        let lanes = if chunk.spills && start + V::LANES <= plane.len() {
                            Lanes::all(v)
                        } else {
                            chunk.output[q]
                        };
                        // SAFETY (the load and the store): the lanes end inside the
                        // plane, and the residual's plane is as long: the whole
                        // vector by the check above, or `chunk.output[q]`, the
                        // lanes of row `y` (`ow` wide) from column `x`.
                        let half = match residual {
                            Some(res) => v.add(half, unsafe { load(v, res, start as isize, lanes) }),
                            None => half,
                        };
                        unsafe { store(v, plane, start, lanes, half) };
                    }
                }
            }
        }
    }
}
