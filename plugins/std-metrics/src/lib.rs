//! Standard evaluation metrics. Each is a [`lumen_core::Metric`] registered with
//! `submit_metric!`, so the host reaches it through the registry like a method:
//!
//! - `deletion`, `insertion` (Petsiuk et al., RISE): target probability while pixels
//!   are removed from / inserted into the image in order of relevance; AUC.
//! - `pixel_flipping` (Samek et al.): r×r regions perturbed most relevant first; AOPC.
//!
//! Maps are reduced to one relevance per pixel by summing over channels (signed), so
//! a pixel's rank does not depend on which channel carries it.

pub mod perturbation;
pub mod util;

pub use perturbation::{Deletion, DeletionConfig, Direction, Fill, PixelFlipping, PixelFlippingConfig};
pub use util::Score;

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}
