//! `Embedding`: a table of learned vectors, looked up by index (class labels).

use autograd::{Parameter, Result, Var};
use rand::Rng;
use tensor::Tensor;

use crate::module::{join, Module};

/// A `[count, dim]` table; row `i` is the vector of index `i`.
pub struct Embedding {
    /// `[count, dim]`.
    pub weight: Parameter,
}

impl Embedding {
    /// A table of `count` vectors of `dim`, initialised `N(0, 1)` as PyTorch does.
    pub fn new<R: Rng + ?Sized>(count: usize, dim: usize, rng: &mut R) -> Embedding {
        let weight = Tensor::rand_normal(&[count, dim], 0.0, 1.0, rng).expect("std 1 is valid");
        Embedding {
            weight: Parameter::new(weight),
        }
    }

    /// The rows for `indices`: `[indices.len(), dim]`. An index past the table is an
    /// error that names it.
    pub fn forward(&self, indices: &[usize]) -> Result<Var> {
        self.weight.var().index_select(0, indices)
    }
}

impl Module for Embedding {
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
    }
}
