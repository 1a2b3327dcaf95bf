//! Standard gradient methods: saliency, input × gradient, integrated gradients and
//! GradientSHAP, Blur IG, Guided IG and the noise tunnel (SmoothGrad, SmoothGrad², VarGrad) around any method. Every item
//! registers itself with `inventory`; the host reaches it through the registry like
//! any other pack.

pub mod blur_ig;
pub mod gradient_shap;
pub mod guided_ig;
pub mod input_x_gradient;
pub mod integrated_gradients;
pub mod noise_tunnel;
pub mod saliency;
mod util;

pub use blur_ig::{BlurIg, BlurIgConfig};
pub use gradient_shap::{GradientShap, GradientShapConfig};
pub use guided_ig::{GuidedIg, GuidedIgConfig};
pub use input_x_gradient::{InputXGradient, InputXGradientConfig};
pub use integrated_gradients::{Baseline, IntegratedGradients, IntegratedGradientsConfig, Scheme};
pub use noise_tunnel::{Aggregation, NoiseTunnel, NoiseTunnelConfig, SmoothGradConfig};
pub use saliency::{Saliency, SaliencyConfig};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

#[cfg(test)]
mod tests;

// Gallery columns of this pack's methods (see lumen_core::present).
lumen_core::submit_gallery_preset!("saliency", 10, None, &[]);
lumen_core::submit_gallery_preset!("input_x_gradient", 20, None, &[]);
lumen_core::submit_gallery_preset!("integrated_gradients", 30, None, &[]);
lumen_core::submit_gallery_preset!("gradient_shap", 31, None, &[("n_samples", "20"), ("stdev", "0.1")]);
// σ up to 10 px blurs a 28×28 digit to a near-constant image; 32 steps keep the column quick.
lumen_core::submit_gallery_preset!("blur_ig", 32, None, &[("steps", "32"), ("max_sigma", "10")]);
lumen_core::submit_gallery_preset!("guided_ig", 33, None, &[("steps", "64")]);
lumen_core::submit_gallery_preset!("smoothgrad", 40, None, &[]);
