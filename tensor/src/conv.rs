//! 2-D convolution (placeholder, being written)
