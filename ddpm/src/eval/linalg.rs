//! Dense symmetric linear algebra in `f64`: a cyclic Jacobi eigenvalue solver.
//!
//! Each Jacobi rotation `J(p, q, theta)` zeroes the off-diagonal entry `a[p][q]` of
//! `A <- J^T A J`; a sweep visits every pair `p < q` once. The off-diagonal mass
//! decreases monotonically and quadratically near the end, so a handful of sweeps
//! reach round-off. The accumulated rotations are the eigenvectors.

/// Stop when the off-diagonal Frobenius norm falls below this fraction of the total.
const TOLERANCE: f64 = 1e-14;
/// Give up after this many sweeps (convergence typically takes under 15).
const MAX_SWEEPS: usize = 100;

/// Eigenvalues and eigenvectors of the symmetric `n x n` row-major matrix `a`.
///
/// Returns `(w, v)`: `w[k]` is the k-th eigenvalue (unsorted) and column `k` of the
/// row-major `n x n` matrix `v` its unit eigenvector, so `A = V diag(w) V^T`.
/// Only the symmetric part of `a` matters. Panics if `a.len() != n * n`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: {} entries for {n}x{n}", a.len());
    let mut m: Vec<f64> = (0..n * n)
        .map(|k| 0.5 * (a[k] + a[(k % n) * n + k / n]))
        .collect();
    let mut v = identity(n);
    let total = frobenius(&m).max(f64::MIN_POSITIVE);
    for _ in 0..MAX_SWEEPS {
        if off_diagonal(&m, n) <= TOLERANCE * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut m, &mut v, n, p, q);
            }
        }
    }
    ((0..n).map(|i| m[i * n + i]).collect(), v)
}

/// The `n x n` identity, row-major.
pub fn identity(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect()
}

/// The product of row-major `n x n` matrices `a b`.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            let (row, brow) = (&mut c[i * n..(i + 1) * n], &b[k * n..(k + 1) * n]);
            row.iter_mut().zip(brow).for_each(|(c, b)| *c += aik * b);
        }
    }
    c
}

/// `V diag(f(w)) V^T`: a function of a symmetric matrix from its eigenpairs.
pub fn from_eigen(w: &[f64], v: &[f64], n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let fw: Vec<f64> = w.iter().map(|&x| f(x)).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n).map(|k| v[i * n + k] * fw[k] * v[j * n + k]).sum();
        }
    }
    out
}

fn frobenius(m: &[f64]) -> f64 {
    m.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn off_diagonal(m: &[f64], n: usize) -> f64 {
    let s: f64 = (0..n * n).filter(|k| k / n != k % n).map(|k| m[k] * m[k]).sum();
    s.sqrt()
}

/// Applies the Jacobi rotation that zeroes `m[p][q]` to `m` (both sides) and `v`
/// (right side), with the stable tangent formula of Golub and Van Loan (8.5.2).
fn rotate(m: &mut [f64], v: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = m[p * n + q];
    if apq == 0.0 {
        return;
    }
    let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    for k in 0..n {
        let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
        m[k * n + p] = c * mkp - s * mkq;
        m[k * n + q] = s * mkp + c * mkq;
    }
    for k in 0..n {
        let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
        m[p * n + k] = c * mpk - s * mqk;
        m[q * n + k] = s * mpk + c * mqk;
        let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
        v[k * n + p] = c * vkp - s * vkq;
        v[k * n + q] = s * vkp + c * vkq;
    }
    m[p * n + q] = 0.0;
    m[q * n + p] = 0.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two() {
        let (mut w, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12, "{w:?}");
    }

    #[test]
    fn diagonal_is_its_own_eigendecomposition() {
        let a = [5.0, 0.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.5];
        let (w, v) = symmetric_eigen(&a, 3);
        assert_eq!(w, vec![5.0, -2.0, 0.5]);
        assert_eq!(v, identity(3));
    }

    #[test]
    fn empty_matrix() {
        assert_eq!(symmetric_eigen(&[], 0), (vec![], vec![]));
    }
}
