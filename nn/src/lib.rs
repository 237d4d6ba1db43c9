//! Neural-network layers, optimisers and checkpoints (in progress: see the issues).

pub mod safetensors;
