//! Standard perturbation methods: occlusion and prediction difference analysis,
//! with the marginal and conditional Gaussian patch samplers. Every item registers
//! itself with `inventory`; the host reaches it through the registry.

pub mod gaussian;
pub mod incremental;
pub mod marginal;
pub mod occlusion;
pub mod pda;
pub mod windows;

pub use gaussian::{ConditionalGaussian, GaussianConfig};
pub use marginal::Marginal;
pub use occlusion::{Occlusion, OcclusionConfig};
pub use pda::{ClassSet, Pda, PdaConfig, PdaOutput, SamplerRef};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

#[cfg(test)]
mod tests;

// Gallery columns of this pack's methods (see lumen_core::present). PDA's defaults
// (stride 1, 10 samples) take minutes on the 10 gallery digits with mnist-cnn on 2
// shared CPU cores; stride 2 with 8 samples 25–40 s.
lumen_core::submit_gallery_preset!("occlusion", 90, None, &[]);
lumen_core::submit_gallery_preset!("pda", 100, None, &[("stride", "2"), ("samples", "8")]);
