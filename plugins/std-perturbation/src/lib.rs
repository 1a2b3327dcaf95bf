//! Standard perturbation methods: occlusion and prediction difference analysis,
//! with the marginal and conditional Gaussian patch samplers. Every item registers
//! itself with `inventory`; the host reaches it through the registry.

pub mod gaussian;
pub mod marginal;
pub mod occlusion;
pub mod pda;
pub mod windows;

pub use gaussian::{ConditionalGaussian, GaussianConfig};
pub use marginal::Marginal;
pub use occlusion::{Occlusion, OcclusionConfig};
pub use pda::{ClassSet, Pda, PdaConfig, PdaOutput};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

#[cfg(test)]
mod tests;
