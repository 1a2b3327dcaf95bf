//! The registered CAMs: one struct per paper, all on [`CamConfig`], and Guided
//! Grad-CAM, which multiplies Grad-CAM by a nested Guided Backprop map.

use crate::cam::{explain, CamConfig, Kind, Weighting};
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Explanation, Method, MethodProps, Nested, Result, Target};

/// Every CAM reads a layer's maps, so it needs the layer vocabulary.
pub const PROPS: MethodProps = MethodProps { needs_rules: true, ..MethodProps::NONE };

macro_rules! cam_method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $kind:expr, $summary:literal) => {
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
                Ok(explain(Self::NAME, $kind, &self.config, model, inputs, target)?.with_params(self.params()))
            }
        }

        lumen_core::submit_method!($ty);
    };
}

cam_method!(
    /// Grad-CAM (Selvaraju et al. 2017).
    GradCam,
    "grad_cam",
    Kind::Gradient(Weighting::GradCam),
    "Grad-CAM: a layer's maps weighted by their mean gradient, upsampled to the input"
);
cam_method!(
    /// Grad-CAM++ (Chattopadhay et al. 2018).
    GradCamPlusPlus,
    "grad_cam_plus_plus",
    Kind::Gradient(Weighting::GradCamPlusPlus),
    "Grad-CAM++: a layer's maps weighted by positive gradients with per-position coefficients"
);
cam_method!(
    /// HiResCAM (Draelos & Carin 2020).
    HiResCam,
    "hires_cam",
    Kind::Gradient(Weighting::HiResCam),
    "HiResCAM: the element-wise product of a layer's maps and gradient, summed over channels"
);
cam_method!(
    /// XGrad-CAM (Fu et al. 2020).
    XGradCam,
    "xgrad_cam",
    Kind::Gradient(Weighting::XGradCam),
    "XGrad-CAM: a layer's maps weighted by their activation-normalised gradient"
);
cam_method!(
    /// LayerCAM (Jiang et al. 2021).
    LayerCam,
    "layer_cam",
    Kind::Gradient(Weighting::LayerCam),
    "LayerCAM: a layer's maps times their positive gradient, element-wise, summed over channels"
);
cam_method!(
    /// Eigen-CAM (Muhammad & Yeasin 2020).
    EigenCam,
    "eigen_cam",
    Kind::Eigen { of_gradient: false },
    "Eigen-CAM: the first principal component of a layer's maps (no gradient, no class)"
);
cam_method!(
    /// EigenGrad-CAM: Eigen-CAM of the gradient-weighted maps `G ⊙ A`.
    EigenGradCam,
    "eigen_grad_cam",
    Kind::Eigen { of_gradient: true },
    "EigenGrad-CAM: the first principal component of a layer's maps times their gradient"
);
cam_method!(
    /// Score-CAM (Wang et al. 2020).
    ScoreCam,
    "score_cam",
    Kind::Score,
    "Score-CAM: a layer's maps weighted by the softmax of the target's score on the input masked by each map"
);
cam_method!(
    /// Ablation-CAM (Desai & Ramaswamy 2020).
    AblationCam,
    "ablation_cam",
    Kind::Ablation,
    "Ablation-CAM: a layer's maps weighted by the relative drop of the target when each is set to zero"
);

/// Configuration of [`GuidedGradCam`]: Grad-CAM's and the guide's.
#[derive(Debug, Clone, lumen_core::Config)]
pub struct GuidedGradCamConfig {
    #[param(flatten)]
    pub cam: CamConfig,
    /// the input-resolution map multiplied by the CAM; its parameters go as guide.NAME=VALUE
    pub guide: Nested,
}

impl Default for GuidedGradCamConfig {
    fn default() -> Self {
        GuidedGradCamConfig { cam: CamConfig::default(), guide: Nested::named("guided_backprop") }
    }
}

/// Guided Grad-CAM (Selvaraju et al. 2017, §3.1): the Guided Backprop map times the
/// upsampled Grad-CAM, element-wise. The guide is a nested method, so another
/// pack's Guided Backprop serves and any map can stand in.
#[derive(Debug, Clone)]
pub struct GuidedGradCam {
    pub config: GuidedGradCamConfig,
}

impl Method for GuidedGradCam {
    const NAME: &'static str = "guided_grad_cam";
    const SUMMARY: &'static str = "Guided Grad-CAM: Guided Backprop times the upsampled Grad-CAM";
    type Config = GuidedGradCamConfig;
    const PROPS: MethodProps = PROPS;
    fn new(config: GuidedGradCamConfig) -> Result<Self> {
        config.guide.get()?;
        Ok(GuidedGradCam { config })
    }
    fn config(&self) -> &GuidedGradCamConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let cam = explain(Self::NAME, Kind::Gradient(Weighting::GradCam), &self.config.cam, model, inputs, target)?;
        let guide = self.config.guide.get()?.attribute(model, inputs, &cam.target)?;
        let map = (guide.attribution() * cam.attribution())?;
        let mut e = Explanation::new(Self::NAME, map, cam.target.clone()).with_params(self.params());
        e.tensors.insert("cam".into(), cam.tensor("cam")?.clone());
        e.tensors.insert("guide".into(), guide.attribution().clone());
        e.diagnostics = cam.diagnostics;
        Ok(e)
    }
}

lumen_core::submit_method!(GuidedGradCam);
