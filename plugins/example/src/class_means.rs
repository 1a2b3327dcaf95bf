//! `example-class-means`: a linear MNIST classifier with no training loop and no
//! weights file. Each class k has the mean image μ_k of its training digits, and
//!   logit_k(x) = μ_k · x − ½ ‖μ_k‖²,
//! which ranks classes as the distance ‖x − μ_k‖ does (nearest class mean). It is
//! built from the explainable layer vocabulary (flatten, linear), so rule-based
//! methods can explain it too, and its input gradient is exactly μ_k.

use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::data::mnist::{Mnist, Split, PIXELS, SIDE};
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use lumen_core::{Classifier, Result};
use std::collections::HashMap;
use std::sync::Arc;

pub const NAME: &str = "example-class-means";

/// The class means `[10, 784]` of the bundled training split, in [0, 1].
pub fn class_means() -> Result<Vec<Vec<f32>>> {
    let data = Mnist::load()?;
    let mut sums = vec![vec![0f64; PIXELS]; 10];
    let mut counts = [0usize; 10];
    for &r in data.indices(Split::Train) {
        let c = data.labels[r] as usize;
        counts[c] += 1;
        for (s, &p) in sums[c].iter_mut().zip(&data.pixels[r * PIXELS..(r + 1) * PIXELS]) {
            *s += p as f64 / 255.0;
        }
    }
    Ok(sums.into_iter().zip(counts).map(|(s, n)| s.into_iter().map(|v| (v / n.max(1) as f64) as f32).collect()).collect())
}

/// Builds the model on `device`.
pub fn load(device: &Device) -> Result<NetworkModel> {
    let means = class_means()?;
    let bias: Vec<f32> = means.iter().map(|m| -0.5 * m.iter().map(|v| v * v).sum::<f32>()).collect();
    let weight: Vec<f32> = means.concat();
    let mut t = HashMap::new();
    t.insert("fc.weight".to_string(), Tensor::from_vec(weight, (10, PIXELS), device)?);
    t.insert("fc.bias".to_string(), Tensor::from_vec(bias, 10, device)?);
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: PIXELS, out_features: 10, bias: true }),
    ];
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(t, DType::F32, device))?;
    let info = ModelInfo {
        name: NAME.into(),
        input_shape: vec![1, SIDE, SIDE],
        labels: (0..10).map(|d| d.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, device)
}

lumen_core::submit_model!(NAME, "nearest-class-mean linear MNIST classifier (template pack)", |d| {
    Ok(Arc::new(load(d)?) as Arc<dyn Classifier>)
});

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::target::predict;

    #[test]
    fn logits_are_the_class_mean_formula_and_accuracy_is_reasonable() {
        let d = Device::Cpu;
        let model = load(&d).unwrap();
        let means = class_means().unwrap();
        let data = Mnist::load().unwrap();
        let (x, _) = data.batch(Split::Test, &[0], &d).unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let logits = model.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        for k in 0..10 {
            let dot: f32 = means[k].iter().zip(&xv).map(|(m, v)| m * v).sum();
            let norm: f32 = means[k].iter().map(|m| m * m).sum();
            assert!((logits[0][k] - (dot - 0.5 * norm)).abs() < 1e-3, "class {k}");
        }
        // Nearest class mean on MNIST is a weak but clearly better-than-chance classifier.
        let (xs, labels) = data.all(Split::Test, &d).unwrap();
        let pred = predict(&model, &xs).unwrap();
        let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64;
        assert!(acc > 0.7, "test accuracy {acc}");
        eprintln!("example-class-means test accuracy: {acc:.3}");
    }
}
