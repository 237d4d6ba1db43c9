//! Element-wise functions. With `y = f(x)` and `g = dL/dy`, `dx = g * f'(x)`,
//! where `f'` is written with whatever is cheapest to keep (often `y` itself):
//!
//! ```text
//! exp:      f' = y                      log:   f' = 1 / x
//! sqrt:     f' = 1 / (2 y)              x^p:   f' = p x^(p-1)
//! tanh:     f' = 1 - y^2                sigmoid: f' = y (1 - y)
//! relu:     f' = [x > 0]                abs:   f' = sign(x)
//! silu:     y = x s(x), s = sigmoid(x), f' = s (1 + x (1 - s))
//! ```

use tensor::{math, Tensor};

use crate::Var;

impl Var {
    /// Records `y = f(x)` with `dx = g * d(x, y)`, where `d` gives `f'` from the input
    /// and the output element-wise. `d` is a generic closure, not a function
    /// pointer, so it is inlined into the element loop and vectorised.
    fn unary(&self, op: &'static str, y: Tensor, d: impl Fn(f32, f32) -> f32 + Sync + 'static) -> Var {
        let (x, yc) = (self.value().clone(), y.clone());
        Var::from_op(y, op, &[self], move |g| {
            let fprime = x.zip_map(&yc, op, d)?;
            Ok(vec![Some(g.mul(&fprime)?)])
        })
    }

    /// `e^x`.
    pub fn exp(&self) -> Var {
        self.unary("exp", self.value().exp(), |_, y| y)
    }

    /// The natural logarithm.
    pub fn log(&self) -> Var {
        self.unary("log", self.value().log(), |x, _| 1.0 / x)
    }

    /// The square root.
    pub fn sqrt(&self) -> Var {
        self.unary("sqrt", self.value().sqrt(), |_, y| 0.5 / y)
    }

    /// `x * x`.
    pub fn square(&self) -> Var {
        self.unary("square", self.value().square(), |x, _| 2.0 * x)
    }

    /// `x ^ p` for a constant `p`.
    pub fn powf(&self, p: f32) -> Var {
        let (x, y) = (self.value().clone(), self.value().powf(p));
        Var::from_op(y, "powf", &[self], move |g| {
            Ok(vec![Some(g.mul(&x.map(|v| p * v.powf(p - 1.0)))?)])
        })
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> Var {
        self.unary("tanh", self.value().tanh(), |_, y| 1.0 - y * y)
    }

    /// The logistic function.
    pub fn sigmoid(&self) -> Var {
        self.unary("sigmoid", self.value().sigmoid(), |_, y| y * (1.0 - y))
    }

    /// SiLU (swish), `x * sigmoid(x)`: the U-Net's activation.
    pub fn silu(&self) -> Var {
        self.unary("silu", self.value().silu(), |x, _| {
            let s = math::sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        })
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Var {
        self.unary(
            "relu",
            self.value().relu(),
            |x, _| if x > 0.0 { 1.0 } else { 0.0 },
        )
    }

    /// `|x|` (gradient 0 at 0).
    pub fn abs(&self) -> Var {
        self.unary("abs", self.value().abs(), |x, _| {
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
