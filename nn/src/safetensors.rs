//! Safetensors checkpoints (placeholder, being written).
