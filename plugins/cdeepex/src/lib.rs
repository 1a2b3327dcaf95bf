//! Latent-space contrastive explanations: CDeepEx (Feghahati et al.) and its
//! unconstrained baseline xGEMs (Joshi et al.), plus `contrastive`, the "why A
//! not B" difference of two scaled maps for gradient-type methods.

pub mod cdeepex;
pub mod contrastive;
pub mod inversion;
pub mod solver;

pub use cdeepex::{CDeepEx, CDeepExConfig};
pub use contrastive::{Contrastive, Scale};
pub use solver::{LatentProblem, Solution, SolverConfig};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();
