//! The `Module` trait: something with named parameters (and, maybe, a training
//! mode).
//!
//! The trait is parameter visiting only, as burn's is; each layer's forward pass
//! is an inherent method with the signature it needs: `Linear::forward(&Var)`,
//! `Embedding::forward(&[usize])`, the U-Net's `forward(x, t, labels)`. A single
//! `forward(&Var)` in the trait would force models that need more inputs to
//! implement a method they can only refuse.
//!
//! Parameter names are hierarchical and dot-separated, built by each module
//! prefixing its children's names with the field name it keeps them under:
//! `down.0.block.1.conv2.weight`. These are the names checkpoints use.

use autograd::Parameter;

/// A layer or a network of layers, seen as the parameters it holds.
pub trait Module {
    /// Appends this module's parameters to `out`, each name prefixed with `prefix`.
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Parameter)>);

    /// Switches between training (dropout active) and evaluation. Modules without
    /// such behaviour ignore it; containers pass it on to their children.
    fn set_training(&self, _training: bool) {}

    /// All parameters with their full dot-separated names, in a fixed order.
    fn parameters(&self) -> Vec<(String, Parameter)> {
        let mut out = Vec::new();
        self.collect_parameters("", &mut out);
        out
    }

    /// The number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters()
            .iter()
            .map(|(_, p)| p.shape().iter().product::<usize>())
            .sum()
    }
}

/// `prefix.name`, or `name` at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
