//! Matrix products (placeholder)
