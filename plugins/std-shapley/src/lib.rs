//! Model-agnostic attribution: methods that only query the model's output on
//! perturbed inputs, so they work where gradients do not (quantised, non-smooth or
//! black-box models), and the game-theoretic ones with Shapley guarantees.
//!
//! Every method takes its features through one mask parameter group
//! ([`mask::MaskSpec`]: grid cells, SLIC superpixels, a mask file or sequence
//! segments) and its baseline through core's [`lumen_core::baseline`]; all
//! coalitions of a batch go through the model in `batch_size` chunks ([`game`]).
//! [`xrai`] reuses the pack's SLIC to rank multi-scale regions of an inner
//! (gradient) method's map.

pub mod ablation;
pub mod game;
pub mod kernel_shap;
pub mod lime;
pub mod mask;
pub mod partition;
pub mod partition_shap;
pub mod rise;
pub mod shapley;
pub mod slic;
pub mod surrogate;
pub mod xrai;

pub use ablation::{FeatureAblation, FeatureAblationConfig, FeaturePermutation, FeaturePermutationConfig};
pub use game::Features;
pub use kernel_shap::{KernelShap, KernelShapConfig};
pub use lime::{Lime, LimeConfig};
pub use mask::{FeatureMask, MaskSpec};
pub use partition_shap::{PartitionShap, PartitionShapConfig};
pub use rise::{Rise, RiseConfig};
pub use shapley::{ShapleyExact, ShapleyExactConfig, ShapleySampling, ShapleySamplingConfig};
pub use xrai::{Xrai, XraiConfig};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

lumen_core::submit_method!(FeatureAblation);
lumen_core::submit_method!(FeaturePermutation);
lumen_core::submit_method!(ShapleyExact);
lumen_core::submit_method!(ShapleySampling);
lumen_core::submit_method!(KernelShap);
lumen_core::submit_method!(Lime);
lumen_core::submit_method!(Rise);
lumen_core::submit_method!(PartitionShap);
lumen_core::submit_method!(Xrai);

#[cfg(test)]
mod tests;

// Gallery columns (see lumen_core::present), after occlusion and PDA. The lighter
// settings keep each column to a few thousand forwards on the 10 gallery digits.
lumen_core::submit_gallery_preset!("feature_ablation", 110, None, &[]);
lumen_core::submit_gallery_preset!("feature_permutation", 111, None, &[]);
lumen_core::submit_gallery_preset!("shapley_exact", 112, None, &[("cell", "14")]);
lumen_core::submit_gallery_preset!("shapley_sampling", 113, None, &[("samples", "10")]);
lumen_core::submit_gallery_preset!("kernel_shap", 114, None, &[("samples", "256")]);
lumen_core::submit_gallery_preset!("partition_shap", 115, None, &[]);
lumen_core::submit_gallery_preset!("lime", 116, None, &[("samples", "300")]);
lumen_core::submit_gallery_preset!("rise", 117, None, &[("samples", "500")]);
lumen_core::submit_gallery_preset!("xrai", 118, None, &[]);
