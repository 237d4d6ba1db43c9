//! Tape-based reverse-mode automatic differentiation (work in progress: see the issues).
