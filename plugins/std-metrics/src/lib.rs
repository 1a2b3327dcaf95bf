//! Standard evaluation metrics. Each is a [`lumen_core::Metric`] registered with
//! `submit_metric!`, so the host reaches it through the registry like a method
//! (`Registry::build_metric(name, &params)`):
//!
//! - `deletion`, `insertion` (Petsiuk et al., RISE): target probability while positions
//!   are removed from / inserted into the image in order of relevance; AUC.
//! - `pixel_flipping` (Samek et al.): r×r regions perturbed most relevant first; AOPC.
//! - `infidelity`, `max_sensitivity` (Yeh et al., as Captum defines them).
//! - `sanity_randomization` (Adebayo et al.): cascading layer randomization; Spearman
//!   and SSIM per step.
//! - `localization`: relevance mass and rank accuracy inside a ground-truth mask, with
//!   the masks of the biased-8 square and the genomic motifs.
//! - `completeness`: summation to delta, for methods that claim it.
//! - `road`, `road_morf`, `road_lerf` (Rong et al.): the target score after noisy
//!   linear imputation of the most or least relevant positions; `confidence_drop` and
//!   `confidence_increase` on the input times the map (pytorch-grad-cam's CAM metrics).
//!
//! Maps are reduced to one relevance per position by summing over channels (signed),
//! so a pixel's rank does not depend on which channel carries it.

pub mod completeness;
pub mod localization;
pub mod perturbation;
pub mod road;
pub mod robustness;
pub mod sanity;
pub mod util;

pub use completeness::{Completeness, CompletenessConfig};
pub use localization::{biased_square_masks, motif_masks, Localization, LocalizationConfig, Mass};
pub use perturbation::{Deletion, DeletionConfig, Direction, Fill, PixelFlipping, PixelFlippingConfig};
pub use road::{Confidence, Order, Road, RoadConfig};
pub use robustness::{Infidelity, InfidelityConfig, MaxSensitivity, MaxSensitivityConfig, Noise};
pub use sanity::{SanityConfig, SanityRandomization};
pub use util::Score;

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

#[cfg(test)]
mod tests;
