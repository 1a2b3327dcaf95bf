//! Any `candle_nn::Module` that maps `[B, C, H, W]` (or any batch) to logits `[B, K]`
//! becomes a [`Classifier`]. Gradient and perturbation methods work with it; rule
//! and layer methods are refused with `UnsupportedModel` by the trait's default
//! `forward_with`, since such a module has no explainable layer structure.

use lumen_core::candle::{Device, Tensor};
use lumen_core::candle_nn::Module;
use lumen_core::{Classifier, Error, ModelInfo, Result};

/// A black-box classifier around a candle module.
pub struct ModuleClassifier<M> {
    info: ModelInfo,
    module: M,
    device: Device,
}

impl<M: Module + Send + Sync> ModuleClassifier<M> {
    /// `info` says what the module expects (input shape without the batch, labels,
    /// input range); it is the caller's, since a module carries no metadata.
    pub fn new(info: ModelInfo, module: M, device: &Device) -> Result<Self> {
        if info.labels.is_empty() || info.input_shape.is_empty() {
            return Err(Error::msg(format!("model '{}': labels and input_shape must not be empty", info.name)));
        }
        Ok(ModuleClassifier { info, module, device: device.clone() })
    }

    pub fn module(&self) -> &M {
        &self.module
    }
}

impl<M: Module + Send + Sync> Classifier for ModuleClassifier<M> {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.info.check_input(xs)?;
        let y = self.module.forward(xs)?;
        let (b, k) = (xs.dim(0)?, self.info.num_classes());
        if y.dims() != [b, k] {
            return Err(Error::shape(format!("logits [{b}, {k}] from model '{}'", self.info.name), format!("{:?}", y.dims())));
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::DType;
    use lumen_core::candle_nn::{VarBuilder, VarMap};
    use lumen_core::model::ForwardOptions;
    use lumen_core::rules::Composite;
    use lumen_core::{Attributor, Target};

    fn wrap(name: &str, net: lumen_core::candle_nn::Func<'static>, device: &Device) -> ModuleClassifier<lumen_core::candle_nn::Func<'static>> {
        let info = ModelInfo {
            name: name.into(),
            input_shape: vec![3, 64, 64],
            labels: (0..5).map(|i| format!("c{i}")).collect(),
            input_range: (0.0, 1.0),
            card: None,
        };
        ModuleClassifier::new(info, net, device).unwrap()
    }

    /// Random weights: a fresh VarMap initialises every parameter on first use.
    fn random_vb(device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, device)
    }

    fn check_saliency(m: &dyn Classifier, x: &Tensor) -> Result<()> {
        let e = lumen_std_gradients::saliency::Saliency::default().attribute(m, x, &Target::Predicted)?;
        let a = e.attribution();
        assert_eq!(a.dims(), x.dims());
        let v = a.flatten_all()?.to_vec1::<f32>()?;
        assert!(v.iter().all(|g| g.is_finite()));
        assert!(v.iter().any(|g| *g != 0.0), "the gradient should not vanish everywhere");
        Ok(())
    }

    #[test]
    fn resnet18_through_the_adapter() {
        let d = Device::Cpu;
        let net = candle_transformers::models::resnet::resnet18(5, random_vb(&d)).unwrap();
        let m = wrap("resnet18-random", net, &d);
        let x = Tensor::rand(0f32, 1f32, (2, 3, 64, 64), &d).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[2, 5]);

        // A rule composite needs the explainable vocabulary.
        let composite = lumen_core::rules::RuleMap::default();
        let opts = ForwardOptions { composite: Some(&composite as &dyn Composite), ..Default::default() };
        let err = m.forward_with(&x, &opts).unwrap_err();
        assert!(matches!(err, Error::UnsupportedModel { .. }), "{err}");

        // Wrong input shape is a clear error, not a candle panic.
        let bad = Tensor::zeros((1, 1, 64, 64), DType::F32, &d).unwrap();
        assert!(matches!(m.forward(&bad).unwrap_err(), Error::ShapeMismatch { .. }));

        // Candle 0.11 has no backward for a 3×3/stride-2 max-pool (ResNet's stem), so
        // gradient methods get an error naming it, not a panic. When candle gains it,
        // this turns into the finite-saliency check below.
        match check_saliency(&m, &x) {
            Ok(()) => {}
            Err(e) => assert!(e.to_string().contains("maxpool2d"), "{e}"),
        }
    }

    #[test]
    fn plain_candle_module_gets_a_finite_saliency() {
        // Any candle_nn::Module works; this one is built from candle_nn layers directly.
        use lumen_core::candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear};
        struct Tiny {
            conv: Conv2d,
            fc: Linear,
        }
        impl Module for Tiny {
            fn forward(&self, x: &Tensor) -> lumen_core::candle::Result<Tensor> {
                self.fc.forward(&self.conv.forward(x)?.relu()?.max_pool2d(2)?.flatten_from(1)?)
            }
        }
        let d = Device::Cpu;
        let vb = random_vb(&d);
        let cfg = Conv2dConfig { stride: 2, padding: 1, ..Default::default() };
        let net = Tiny { conv: conv2d(3, 8, 3, cfg, vb.pp("conv")).unwrap(), fc: linear(8 * 16 * 16, 5, vb.pp("fc")).unwrap() };
        let info = ModelInfo {
            name: "tiny-candle-net".into(),
            input_shape: vec![3, 64, 64],
            labels: (0..5).map(|i| format!("c{i}")).collect(),
            input_range: (0.0, 1.0),
            card: None,
        };
        let m = ModuleClassifier::new(info, net, &d).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 64, 64), &d).unwrap();
        check_saliency(&m, &x).unwrap();
        let composite = lumen_core::rules::RuleMap::default();
        let opts = ForwardOptions { composite: Some(&composite as &dyn Composite), ..Default::default() };
        assert!(matches!(m.forward_with(&x, &opts).unwrap_err(), Error::UnsupportedModel { .. }));
    }
}
