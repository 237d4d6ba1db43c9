//! Convolution weights prepared once for many forward passes (inference).
//!
//! Before it multiplies anything, every forward pass rearranges its filters: the
//! Winograd path transforms each 3x3 filter into the 4x4 Winograd domain
//! (`V = G g G^T`, `[16, Cout, Cin]`), the im2col path transposes the weight
//! matrix for its GEMM (`[Cin KH KW, Cout]`). In training the weights change
//! every step, so each step must redo that. Sampling from a fixed model would
//! redo the same work at every network evaluation (a batch-1 sampling step of
//! `mnist-small` is 8-22% faster without it). A [`PreparedWeights`] does it once, and
//! [`Tensor::conv2d_prepared`] runs the forward pass from it, with the values of
//! [`Tensor::conv2d`] bit for bit (the same kernels on the same operands).
//!
//! A prepared weight keeps the tensor it was made from. Tensors never change
//! while shared (an op writes over a buffer only when it is the buffer's sole
//! owner), so [`PreparedWeights::is_for`] can tell, by identity, whether a layer's
//! weight is still the one it prepared: a parameter that an optimiser or a
//! checkpoint replaced is a new tensor.

use super::{im2col, rank4, slice, winograd, Conv2dParams};
use crate::error::{invalid, Result};
use crate::layout::checked_numel;
use crate::tensor::Tensor;

/// A convolution's weight, rearranged for the path its shape takes.
#[derive(Debug, Clone)]
pub struct PreparedWeights {
    /// The weight as given (contiguous): its identity, and the operand of a
    /// forward pass when the path chosen here no longer applies.
    weight: Tensor,
    params: Conv2dParams,
    filters: Filters,
}

/// The rearranged filters of one path.
#[derive(Debug, Clone)]
enum Filters {
    /// `V = G g G^T` of every filter, `[16, Cout, Cin]`.
    Winograd(Vec<f32>),
    /// The weight matrix transposed, `[Cin KH KW, Cout]`.
    Im2col(Vec<f32>),
}

impl PreparedWeights {
    /// Prepares `weight` (`[Cout, Cin, KH, KW]`) for convolutions with `params`.
    pub fn new(weight: &Tensor, params: Conv2dParams) -> Result<PreparedWeights> {
        const OP: &str = "conv2d_prepare";
        let shape = rank4(OP, "weight [Cout, Cin, KH, KW]", weight.shape())?;
        checked_numel(OP, weight.shape())?;
        if params.stride == 0 {
            return Err(invalid(OP, "stride must be at least 1"));
        }
        let [cout, cin, kh, kw] = shape;
        let weight = weight.contiguous();
        let w = slice(&weight);
        let filters = if winograd::takes_filters(shape, params.stride, params.padding) {
            Filters::Winograd(winograd::weight_transform(w, cout, cin))
        } else {
            Filters::Im2col(im2col::weight_matrix(w, cout, cin * kh * kw))
        };
        Ok(PreparedWeights {
            weight,
            params,
            filters,
        })
    }

    /// Whether these were prepared from `weight` with `params`: the same tensor
    /// (storage and view), so the same values. (A weight that was not contiguous
    /// was copied, and is never recognised: parameters are contiguous.)
    pub fn is_for(&self, weight: &Tensor, params: Conv2dParams) -> bool {
        self.params == params && self.weight.is_same_view(weight)
    }

    /// The weight they were prepared from.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The stride and padding they were prepared for.
    pub fn params(&self) -> Conv2dParams {
        self.params
    }
}

impl Tensor {
    /// [`Tensor::conv2d`] with prepared weights: the same values, without
    /// rearranging the filters again.
    pub fn conv2d_prepared(&self, prepared: &PreparedWeights, bias: Option<&Tensor>) -> Result<Tensor> {
        self.conv2d_prepared_add_opt(prepared, bias, None)
    }

    /// [`Tensor::conv2d_add`] from prepared weights: `conv2d_prepared(prepared,
    /// bias) + addend` in one pass, the same values bit for bit.
    pub fn conv2d_prepared_add(
        &self,
        prepared: &PreparedWeights,
        bias: Option<&Tensor>,
        addend: &Tensor,
    ) -> Result<Tensor> {
        self.conv2d_prepared_add_opt(prepared, bias, Some(addend))
    }

    /// [`Tensor::conv2d_prepared_add`] with the addend optional.
    fn conv2d_prepared_add_opt(
        &self,
        prepared: &PreparedWeights,
        bias: Option<&Tensor>,
        addend: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (weight, params) = (&prepared.weight, prepared.params);
        self.conv2d_with(weight.shape(), params, bias, addend, |g, x, e| {
            match &prepared.filters {
                Filters::Winograd(v) if winograd::applies(g) => winograd::forward_transformed(g, x, v, e),
                Filters::Im2col(wt) if !winograd::applies(g) => im2col::forward_transposed(g, x, wt, e),
                // The Winograd path was switched on or off since: from the weight itself.
                _ => super::forward(g, x, slice(weight), e),
            }
        })
    }
}
