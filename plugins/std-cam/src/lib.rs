//! Class activation maps: methods that weight the feature maps of one spatial layer
//! by the target's gradient there and upsample the weighted sum to the input.
//!
//! [`cam`] holds what they share: choosing the layer, reading its activations and
//! their gradient in one pass (core's `method::layer_gradient`), the bilinear
//! upsampling and the five gradient weightings. [`methods`] registers them: `grad_cam`, `grad_cam_plus_plus`,
//! `hires_cam`, `xgrad_cam` and `layer_cam`.

pub mod cam;
pub mod methods;

pub use cam::{CamConfig, Weighting};
pub use methods::{GradCam, GradCamPlusPlus, HiResCam, LayerCam, XGradCam};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();
