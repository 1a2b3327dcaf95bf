//! Standard propagation methods: gradients through a modified backward pass, taken
//! from a named rule preset ([`rules`]: Guided Backprop's and Deconvnet's ReLU rules)
//! and applied through the rule-aware forward pass. Every item registers itself with
//! `inventory`.

pub mod modified;
pub mod rules;

pub use modified::{ModifiedGradient, ModifiedGradientConfig};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

// Gallery columns of this pack's methods (see lumen_core::present).
lumen_core::submit_gallery_preset!("guided_backprop", 50, None, &[]);
lumen_core::submit_gallery_preset!("deconvnet", 60, None, &[]);
