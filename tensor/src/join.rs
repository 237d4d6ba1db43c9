//! Concat, split and index-select (placeholder)
