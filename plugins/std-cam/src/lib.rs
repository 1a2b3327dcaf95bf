//! Class activation maps: methods that weight the feature maps of one spatial layer
//! (by the target's gradient there, by the scores of masked or ablated copies, or by
//! a principal component) and upsample the weighted sum to the input.
//!
//! [`cam`] holds what they share: choosing the layer, reading its activations and
//! their gradient in one pass (core's `method::layer_gradient`), the weightings, the
//! principal-component reduction and the bilinear upsampling. [`methods`] registers
//! `grad_cam`, `grad_cam_plus_plus`, `hires_cam`, `xgrad_cam`, `layer_cam`,
//! `eigen_cam`, `eigen_grad_cam`, `score_cam`, `ablation_cam` and
//! `guided_grad_cam`; [`full_grad`] registers `full_grad`, which reads every bias
//! layer instead of one.

pub mod cam;
pub mod full_grad;
pub mod methods;

pub use cam::{CamConfig, Kind, Weighting};
pub use full_grad::FullGrad;
pub use methods::{
    AblationCam, EigenCam, EigenGradCam, GradCam, GradCamPlusPlus, GuidedGradCam, GuidedGradCamConfig, HiResCam, LayerCam,
    ScoreCam, XGradCam,
};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

// Gallery columns of this pack's methods (see lumen_core::present).
lumen_core::submit_gallery_preset!("grad_cam", 140, None, &[]);
lumen_core::submit_gallery_preset!("grad_cam_plus_plus", 141, None, &[]);
lumen_core::submit_gallery_preset!("hires_cam", 142, None, &[]);
lumen_core::submit_gallery_preset!("xgrad_cam", 143, None, &[]);
lumen_core::submit_gallery_preset!("layer_cam", 144, None, &[]);
lumen_core::submit_gallery_preset!("eigen_cam", 145, None, &[]);
lumen_core::submit_gallery_preset!("eigen_grad_cam", 146, None, &[]);
lumen_core::submit_gallery_preset!("score_cam", 147, None, &[]);
lumen_core::submit_gallery_preset!("ablation_cam", 148, None, &[]);
lumen_core::submit_gallery_preset!("full_grad", 149, None, &[]);
lumen_core::submit_gallery_preset!("guided_grad_cam", 150, None, &[]);
