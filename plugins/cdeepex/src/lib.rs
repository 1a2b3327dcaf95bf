//! Latent-space contrastive explanations: CDeepEx (Feghahati et al.) and its
//! unconstrained baseline xGEMs (Joshi et al.), plus `contrastive`, the "why A
//! not B" difference of two scaled maps for gradient-type methods.

pub mod cdeepex;
pub mod contrastive;
pub mod inversion;
pub mod solver;

pub use cdeepex::{with_latent, CDeepEx, CDeepExConfig, Latent, LatentConfig, Variant, XGems, XGemsConfig};
pub use contrastive::{Contrastive, Scale};
pub use solver::{LatentBatch, LatentProblem, Solution, SolverConfig};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

// Gallery columns of this pack's methods (see lumen_core::present). With their
// defaults CDeepEx and xGEMs take about 300 s each on the 10 gallery digits.
const LIGHT: &[(&str, &str)] = &[("outer_iters", "8"), ("inner_iters", "15"), ("invert_steps", "60"), ("restarts", "0")];
lumen_core::submit_gallery_preset!("cdeepex", 120, None, LIGHT);
lumen_core::submit_gallery_preset!("xgems", 130, None, LIGHT);
