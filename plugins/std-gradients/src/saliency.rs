//! Vanilla gradient (Simonyan et al.; SmoothGrad §2): the raw signed gradient of the
//! target with respect to the input. Absolute values and the max over channels are
//! rendering options, not separate methods.

use lumen_core::candle::Tensor;
use lumen_core::method::{gradient, per_chunk, prepare, Batched};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Explanation, Method, Result, Target};

/// Configuration of [`Saliency`]: `batch_size`, examples per backward pass.
pub type SaliencyConfig = Batched;

#[derive(Debug, Clone, Default)]
pub struct Saliency {
    pub config: SaliencyConfig,
}

impl Saliency {
    pub fn new(config: SaliencyConfig) -> Self {
        Saliency { config }
    }
}

impl Method for Saliency {
    const NAME: &'static str = "saliency";
    const SUMMARY: &'static str = "vanilla gradient: the signed gradient of the target w.r.t. the input";
    type Config = SaliencyConfig;
    fn new(config: SaliencyConfig) -> Result<Self> {
        Ok(Saliency { config })
    }
    fn config(&self) -> &SaliencyConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let grad = per_chunk(inputs, self.config.batch_size, |r, x| {
            Ok(gradient(model, x, &target.select(r), ForwardOptions::default())?.grad)
        })?;
        Ok(Explanation::new(Self::NAME, grad, target).with_params(self.params()))
    }
}

lumen_core::submit_method!(Saliency);

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::{DType, Device};
    use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
    use lumen_core::candle_nn::VarBuilder;
    use std::collections::HashMap;

    /// y = W2 relu(W1 x + b1): the gradient is W2 diag(relu'(W1x+b1)) W1, by hand.
    #[test]
    fn matches_hand_derived_gradient_and_finite_differences() {
        let d = Device::Cpu;
        let specs = vec![
            LayerSpec::new("fc1", LayerKind::Linear { in_features: 3, out_features: 2, bias: true }),
            LayerSpec::new("relu", LayerKind::Relu),
            LayerSpec::new("fc2", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
        ];
        let mut m = HashMap::new();
        m.insert("fc1.weight".into(), Tensor::new(&[[1f32, -2., 0.5], [-1., 1., 1.]], &d).unwrap());
        m.insert("fc1.bias".into(), Tensor::new(&[0.1f32, -0.2], &d).unwrap());
        m.insert("fc2.weight".into(), Tensor::new(&[[2f32, -1.], [0.5, 3.]], &d).unwrap());
        let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
        let info = ModelInfo {
            name: "tiny".into(),
            input_shape: vec![3],
            labels: vec!["a".into(), "b".into()],
            input_range: (0.0, 1.0),
            card: None,
        };
        let model = NetworkModel::new(info, net, &d).unwrap();
        // x = (1, 0.2, 0.4): h = (1 - 0.4 + 0.2 + 0.1, -1 + 0.2 + 0.4 - 0.2) = (0.9, -0.6)
        // only unit 0 is active: d y0/dx = 2 * (1, -2, 0.5); d y1/dx = 0.5 * (1, -2, 0.5)
        let x = Tensor::new(&[[1f32, 0.2, 0.4], [1., 0.2, 0.4]], &d).unwrap();
        let e = Saliency::default().attribute(&model, &x, &Target::Classes(vec![0, 1])).unwrap();
        let g = e.attribution().to_vec2::<f32>().unwrap();
        assert_eq!(g[0], vec![2.0, -4.0, 1.0]);
        assert_eq!(g[1], vec![0.5, -1.0, 0.25]);
        // finite differences agree
        let f = |v: [f32; 3]| -> f32 {
            let t = Tensor::new(&[v], &d).unwrap();
            model.forward(&t).unwrap().to_vec2::<f32>().unwrap()[0][0]
        };
        for i in 0..3 {
            let mut a = [1f32, 0.2, 0.4];
            let mut b = a;
            a[i] += 1e-3;
            b[i] -= 1e-3;
            let fd = (f(a) - f(b)) / 2e-3;
            assert!((fd - g[0][i]).abs() < 1e-2, "{i}: {fd} vs {}", g[0][i]);
        }
        // wrong shape is a clear error
        let bad = Tensor::zeros((1, 4), DType::F32, &d).unwrap();
        let err = Saliency::default().attribute(&model, &bad, &Target::Predicted).unwrap_err().to_string();
        assert!(err.contains("expected [batch, 3]"), "{err}");
    }
}
