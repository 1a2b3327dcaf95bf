//! Layer and neuron attribution, with Captum's definitions (the tests compare against
//! Captum 0.9 in float64).
//!
//! The layer methods attribute the target to the units of one layer (`layer=NAME`;
//! default: the last layer with spatial output, as the CAMs choose it); their
//! attribution has the layer's shape `[B, ...]`, not the input's:
//! `layer_activation`, `layer_gradient_x_activation`, `layer_integrated_gradients`,
//! `layer_conductance` and `internal_influence` ([`layer`]).
//!
//! `neuron_conductance` ([`neuron`]) attributes the target class to the input
//! features through one hidden unit, named by the parameter `neuron=LAYER:CHANNEL[:Y,X]`.
//! The other neuron methods of Captum are existing methods with a hidden target
//! (`Target::Hidden`, `--target hidden:LAYER:CHANNEL[:Y,X]`): NeuronGradient is
//! `saliency`, NeuronIntegratedGradients `integrated_gradients`, NeuronGuidedBackprop
//! `guided_backprop`, NeuronDeepLift `deeplift`.
//!
//! [`path`] holds what they share: the path points from the baseline in chunks (the
//! layer comes from core's `method::resolve_layer`, the quadrature from core's
//! `quadrature`).

pub mod layer;
pub mod neuron;
pub mod path;

pub use layer::{
    InternalInfluence, LayerActivation, LayerConductance, LayerConfig, LayerGradientXActivation, LayerIntegratedGradients,
    LayerPathConfig,
};
pub use neuron::{Neuron, NeuronConductance, NeuronConductanceConfig};
pub use lumen_core::quadrature::Scheme;

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// Gallery columns after the gradient family. The layer methods' maps have the layer's
// shape, so the gallery marks them as not applicable (`lumen explain` draws them);
// neuron conductance is shown for conv2's unit 0 at (7, 7) (the shipped CNNs' second
// convolution).
lumen_core::submit_gallery_preset!("layer_activation", 60, None, &[]);
lumen_core::submit_gallery_preset!("layer_gradient_x_activation", 61, None, &[]);
lumen_core::submit_gallery_preset!("layer_integrated_gradients", 62, None, &[("steps", "20")]);
lumen_core::submit_gallery_preset!("layer_conductance", 63, None, &[("steps", "20")]);
lumen_core::submit_gallery_preset!("internal_influence", 64, None, &[("steps", "20")]);
lumen_core::submit_gallery_preset!("neuron_conductance", 65, None, &[("steps", "20"), ("neuron", "conv2:0:7,7")]);

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

#[cfg(test)]
mod tests;
