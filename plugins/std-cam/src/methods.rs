//! The registered gradient CAMs: one struct per paper, all on [`CamConfig`].

use crate::cam::{explain, CamConfig, Weighting};
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Explanation, Method, MethodProps, Result, Target};

/// Every CAM reads a layer's maps, so it needs the layer vocabulary.
pub const PROPS: MethodProps = MethodProps { needs_rules: true, ..MethodProps::NONE };

macro_rules! gradient_cam {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $weighting:expr, $summary:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $ty {
            pub config: CamConfig,
        }

        impl Method for $ty {
            const NAME: &'static str = $name;
            const SUMMARY: &'static str = $summary;
            type Config = CamConfig;
            const PROPS: MethodProps = PROPS;
            fn new(config: CamConfig) -> Result<Self> {
                Ok($ty { config })
            }
            fn config(&self) -> &CamConfig {
                &self.config
            }
            fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
                Ok(explain(Self::NAME, $weighting, &self.config, model, inputs, target)?.with_params(self.params()))
            }
        }

        lumen_core::submit_method!($ty);
    };
}

gradient_cam!(
    /// Grad-CAM (Selvaraju et al. 2017).
    GradCam,
    "grad_cam",
    Weighting::GradCam,
    "Grad-CAM: a layer's maps weighted by their mean gradient, upsampled to the input"
);
gradient_cam!(
    /// Grad-CAM++ (Chattopadhay et al. 2018).
    GradCamPlusPlus,
    "grad_cam_plus_plus",
    Weighting::GradCamPlusPlus,
    "Grad-CAM++: a layer's maps weighted by positive gradients with per-position coefficients"
);
gradient_cam!(
    /// HiResCAM (Draelos & Carin 2020).
    HiResCam,
    "hires_cam",
    Weighting::HiResCam,
    "HiResCAM: the element-wise product of a layer's maps and gradient, summed over channels"
);
gradient_cam!(
    /// XGrad-CAM (Fu et al. 2020).
    XGradCam,
    "xgrad_cam",
    Weighting::XGradCam,
    "XGrad-CAM: a layer's maps weighted by their activation-normalised gradient"
);
gradient_cam!(
    /// LayerCAM (Jiang et al. 2021).
    LayerCam,
    "layer_cam",
    Weighting::LayerCam,
    "LayerCAM: a layer's maps times their positive gradient, element-wise, summed over channels"
);
