//! Group normalisation kernels (placeholder)
