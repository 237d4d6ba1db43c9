//! Convolution cases and their naive references (direct loops in `f64`), shared
//! by `tests/conv.rs` and `tests/levels.rs`.

use tensor::conv::{conv2d_backward, conv2d_backward_input, conv2d_backward_weight, Conv2dParams};
use tensor::Tensor;

/// Sizes of one convolution test case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Case {
    pub fn params(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            padding: self.pad,
        }
    }
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    pub fn x_shape(&self) -> [usize; 4] {
        [self.b, self.cin, self.h, self.w]
    }
    pub fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }
    pub fn y_shape(&self) -> [usize; 4] {
        [self.b, self.cout, self.oh(), self.ow()]
    }
    /// Input pixel `(ih, iw)` read by output `(i, j)` at kernel offset `(u, v)`, if
    /// it is inside the image.
    pub fn source(&self, i: usize, j: usize, u: usize, v: usize) -> Option<(usize, usize)> {
        let ih = (i * self.stride + u).checked_sub(self.pad)?;
        let iw = (j * self.stride + v).checked_sub(self.pad)?;
        (ih < self.h && iw < self.w).then_some((ih, iw))
    }
    /// Calls `f(x_index, w_index, y_index)` for every multiply of the convolution.
    pub fn for_each_term(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = (self.oh(), self.ow());
        for b in 0..self.b {
            for o in 0..self.cout {
                for i in 0..oh {
                    for j in 0..ow {
                        let yi = ((b * self.cout + o) * oh + i) * ow + j;
                        for c in 0..self.cin {
                            for u in 0..self.kh {
                                for v in 0..self.kw {
                                    if let Some((ih, iw)) = self.source(i, j, u, v) {
                                        let xi = ((b * self.cin + c) * self.h + ih) * self.w + iw;
                                        let wi = ((o * self.cin + c) * self.kh + u) * self.kw + v;
                                        f(xi, wi, yi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A case from `[B, Cin, H, W, Cout, KH, KW, stride, padding]`.
pub fn case([b, cin, h, w, cout, kh, kw, stride, pad]: [usize; 9]) -> Case {
    Case {
        b,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        stride,
        pad,
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape).unwrap()
}

/// The same values as `tensor(shape, seed)`, as a non-contiguous view: stored as
/// `[B, H, W, C]` and permuted back to `[B, C, H, W]`.
pub fn permuted(shape: [usize; 4], seed: u64) -> Tensor {
    let t = tensor(&shape, seed);
    let nhwc = Tensor::from_vec(
        t.permute(&[0, 2, 3, 1]).unwrap().to_vec(),
        &[shape[0], shape[2], shape[3], shape[1]],
    );
    let view = nhwc.unwrap().permute(&[0, 3, 1, 2]).unwrap();
    assert_eq!(view.to_vec(), t.to_vec());
    view
}

/// The same values as `tensor(shape, seed)`, as a narrowed (non-contiguous) view.
pub fn narrowed(shape: [usize; 4], seed: u64) -> Tensor {
    let t = tensor(&shape, seed);
    let mut wide = shape;
    wide[3] += 2;
    let mut big = vec![0.0; wide.iter().product()];
    let v = t.to_vec();
    for (r, row) in v.chunks(shape[3].max(1)).enumerate() {
        big[r * wide[3] + 1..][..row.len()].copy_from_slice(row);
    }
    let view = Tensor::from_vec(big, &wide)
        .unwrap()
        .narrow(3, 1, shape[3])
        .unwrap();
    assert_eq!(view.to_vec(), v);
    view
}

pub fn naive_forward(c: &Case, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (oh, ow) = (c.oh(), c.ow());
    let mut y: Vec<f64> = (0..c.b * c.cout * oh * ow)
        .map(|yi| bias.map_or(0.0, |b| b[(yi / (oh * ow)) % c.cout] as f64))
        .collect();
    c.for_each_term(|xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
    y.into_iter().map(|v| v as f32).collect()
}

/// `dx[x] = sum over the terms reading x of w * dy`.
pub fn naive_dx(c: &Case, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f64; c.b * c.cin * c.h * c.w];
    c.for_each_term(|xi, wi, yi| dx[xi] += w[wi] as f64 * dy[yi] as f64);
    dx.into_iter().map(|v| v as f32).collect()
}

/// `dW[w] = sum over the terms using w of x * dy`.
pub fn naive_dw(c: &Case, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0f64; c.cout * c.cin * c.kh * c.kw];
    c.for_each_term(|xi, wi, yi| dw[wi] += x[xi] as f64 * dy[yi] as f64);
    dw.into_iter().map(|v| v as f32).collect()
}

pub fn naive_db(c: &Case, dy: &[f32]) -> Vec<f32> {
    let plane = c.oh() * c.ow();
    let mut db = vec![0.0f64; c.cout];
    for (i, &v) in dy.iter().enumerate() {
        db[(i / plane) % c.cout] += v as f64;
    }
    db.into_iter().map(|v| v as f32).collect()
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Checks forward, both gradients (fused and separate) against the naive loops.
pub fn check_case(c: &Case, seed: u64, strided_inputs: bool, with_bias: bool) {
    let (x, w) = if strided_inputs {
        (permuted(c.x_shape(), seed), narrowed(c.w_shape(), seed + 1))
    } else {
        (tensor(&c.x_shape(), seed), tensor(&c.w_shape(), seed + 1))
    };
    let bias = tensor(&[c.cout], seed + 2);
    let (xv, wv) = (x.to_vec(), w.to_vec());
    let y = x.conv2d(&w, with_bias.then_some(&bias), c.params()).unwrap();
    assert_eq!(y.shape(), &c.y_shape());
    let want = naive_forward(c, &xv, &wv, with_bias.then(|| bias.to_vec()).as_deref());
    assert_close(&y.to_vec(), &want, "y");

    let dy = if strided_inputs {
        permuted(c.y_shape(), seed + 3)
    } else {
        tensor(&c.y_shape(), seed + 3)
    };
    let dyv = dy.to_vec();
    let (dx_want, dw_want, db_want) = (naive_dx(c, &wv, &dyv), naive_dw(c, &xv, &dyv), naive_db(c, &dyv));
    let grads = conv2d_backward(&x, &w, &dy, c.params(), true).unwrap();
    assert_close(&grads.input.unwrap().to_vec(), &dx_want, "dx");
    assert_close(&grads.weight.to_vec(), &dw_want, "dw");
    assert_close(&grads.bias.to_vec(), &db_want, "db");
    assert!(conv2d_backward(&x, &w, &dy, c.params(), false)
        .unwrap()
        .input
        .is_none());

    let dx = conv2d_backward_input(&dy, &w, &c.x_shape(), c.params()).unwrap();
    assert_close(&dx.to_vec(), &dx_want, "dx (separate)");
    let (dw, db) = conv2d_backward_weight(&x, &dy, &c.w_shape(), c.params()).unwrap();
    assert_close(&dw.to_vec(), &dw_want, "dw (separate)");
    assert_close(&db.to_vec(), &db_want, "db (separate)");
}
