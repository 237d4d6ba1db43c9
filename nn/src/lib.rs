//! Neural-network layers and optimisers (work in progress: see the issues).
