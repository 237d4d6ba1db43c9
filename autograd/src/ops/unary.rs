//! Element-wise functions. With `y = f(x)` and `g = dL/dy`, `dx = g * f'(x)`,
//! where `f'` is written with whichever of `x` and `y` makes it cheapest, so the
//! tape keeps only that one tensor and the backward is one fused pass:
//!
//! ```text
//! from y:  exp: f' = y     sqrt: f' = 1 / (2 y)     tanh: f' = 1 - y^2     sigmoid: f' = y (1 - y)
//! from x:  log: f' = 1 / x     square: f' = 2 x     x^p: f' = p x^(p-1)
//!          relu: f' = [x > 0]     abs: f' = sign(x)
//!          silu: y = x s(x) with s = sigmoid(x), f' = s (1 + x (1 - s))
//! ```

use tensor::{math, Tensor};

use crate::Var;

/// Which tensor the derivative is written in, and so which one the tape keeps.
enum Saved {
    /// Keep `x`: `f'` is written in the input.
    Input,
    /// Keep `y`: `f'` is written in the output.
    Output,
}

impl Var {
    /// Records `y = f(x)` with `dx = g * d(v)`, where `v` is `x` or `y` as `keep`
    /// says. `d` is a generic closure (not a function pointer), so it is inlined
    /// into the single `g`-and-`v` loop and vectorised.
    fn unary(
        &self,
        op: &'static str,
        y: Tensor,
        keep: Saved,
        d: impl Fn(f32) -> f32 + Sync + 'static,
    ) -> Var {
        let saved = match keep {
            Saved::Input => self.value().clone(),
            Saved::Output => y.clone(),
        };
        Var::from_op(y, op, &[self], move |g| {
            Ok(vec![Some(g.zip_map(&saved, op, |g, v| g * d(v))?)])
        })
    }

    /// `e^x`.
    pub fn exp(&self) -> Var {
        self.unary("exp", self.value().exp(), Saved::Output, |y| y)
    }

    /// The natural logarithm.
    pub fn log(&self) -> Var {
        self.unary("log", self.value().log(), Saved::Input, |x| 1.0 / x)
    }

    /// The square root.
    pub fn sqrt(&self) -> Var {
        self.unary("sqrt", self.value().sqrt(), Saved::Output, |y| 0.5 / y)
    }

    /// `x * x`.
    pub fn square(&self) -> Var {
        self.unary("square", self.value().square(), Saved::Input, |x| 2.0 * x)
    }

    /// `x ^ p` for a constant `p`.
    pub fn powf(&self, p: f32) -> Var {
        self.unary("powf", self.value().powf(p), Saved::Input, move |x| {
            p * x.powf(p - 1.0)
        })
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> Var {
        self.unary("tanh", self.value().tanh(), Saved::Output, |y| 1.0 - y * y)
    }

    /// The logistic function.
    pub fn sigmoid(&self) -> Var {
        self.unary("sigmoid", self.value().sigmoid(), Saved::Output, |y| {
            y * (1.0 - y)
        })
    }

    /// SiLU (swish), `x * sigmoid(x)`: the U-Net's activation.
    pub fn silu(&self) -> Var {
        self.unary("silu", self.value().silu(), Saved::Input, math::silu_grad)
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Var {
        self.unary("relu", self.value().relu(), Saved::Input, |x| {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        })
    }

    /// `|x|` (gradient 0 at 0).
    pub fn abs(&self) -> Var {
        self.unary("abs", self.value().abs(), Saved::Input, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
    }
}
