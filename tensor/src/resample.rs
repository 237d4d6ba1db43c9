//! Nearest-neighbour upsampling (placeholder)
