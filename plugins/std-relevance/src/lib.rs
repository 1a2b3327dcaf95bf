//! Relevance methods and their rules: DeepLIFT (Rescale and RevealCancel, with
//! references and a distribution of references, also registered as DeepLIFT-SHAP,
//! `deeplift_shap`) and LRP (composites of LRP rules),
//! plus the genomics model of DeepLIFT §3.2. The rules and their composite presets
//! are in [`rules`].

pub mod deeplift;
pub mod genomics;
pub mod lrp;
pub mod rules;

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

// Gallery columns of this pack's methods (see lumen_core::present).
lumen_core::submit_gallery_preset!("deeplift", 70, None, &[]);
lumen_core::submit_gallery_preset!("deeplift_shap", 71, None, &[("n_references", "8")]);
lumen_core::submit_gallery_preset!("lrp", 80, None, &[]);
