//! Reductions and softmax (placeholder)
