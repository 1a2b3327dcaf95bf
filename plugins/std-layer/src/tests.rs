//! Hand computations on y = W2 relu(W1 x + b1) (layers fc1, relu, fc2), in f64.
//!
//! Example 0, x = (1, 0.25): h = W1 x + b1 = (0.6, −0.95), and along the path from
//! the zero baseline h(α) = (0.1 + 0.5α, −0.2 − 0.75α): unit 0 is on throughout,
//! unit 1 off. Example 1, x = (0, 1): h(α) = (0.1 − 2α, −0.2 + α): unit 0 turns off
//! at α = 0.05, unit 1 on at α = 0.2. Targets: class 0 for example 0 (W2 row
//! (2, −1)), class 1 for example 1 (row (0.5, 3)).

use lumen_core::quadrature::{PathConfig, Scheme};
use crate::*;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind, LayerSpec};
use lumen_core::{Attributor, Method, ModelInfo, Network, NetworkModel, Target};

fn tiny() -> NetworkModel {
    let d = Device::Cpu;
    let specs = vec![
        LayerSpec::new("fc1", LayerKind::Linear { in_features: 2, out_features: 2, bias: true }),
        LayerSpec::new("relu", LayerKind::Relu),
        LayerSpec::new("fc2", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
    ];
    let mut m = std::collections::HashMap::new();
    m.insert("fc1.weight".to_string(), Tensor::new(&[[1f64, -2.], [-1., 1.]], &d).unwrap());
    m.insert("fc1.bias".to_string(), Tensor::new(&[0.1f64, -0.2], &d).unwrap());
    m.insert("fc2.weight".to_string(), Tensor::new(&[[2f64, -1.], [0.5, 3.]], &d).unwrap());
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F64, &d)).unwrap();
    let info = ModelInfo {
        name: "tiny".into(),
        input_shape: vec![2],
        labels: vec!["a".into(), "b".into()],
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

fn x() -> Tensor {
    Tensor::new(&[[1f64, 0.25], [0., 1.]], &Device::Cpu).unwrap()
}

fn t() -> Target {
    Target::Classes(vec![0, 1])
}

fn close(a: &Tensor, b: &[[f64; 2]; 2], tol: f64) {
    let a = a.to_vec2::<f64>().unwrap();
    for (ra, rb) in a.iter().zip(b) {
        for (u, v) in ra.iter().zip(rb) {
            assert!((u - v).abs() < tol, "{a:?} vs {b:?}");
        }
    }
}

fn run<M: Method>(config: M::Config) -> lumen_core::Explanation {
    M::new(config).unwrap().attribute(&tiny(), &x(), &t()).unwrap()
}

fn path(layer: &str, steps: usize, scheme: Scheme, batch_size: usize) -> layer::LayerPathConfig {
    layer::LayerPathConfig { layer: Some(layer.into()), path: PathConfig { steps, scheme, batch_size, ..Default::default() } }
}

#[test]
fn activation_and_gradient_x_activation() {
    let c = layer::LayerConfig { layer: Some("fc1".into()), batch_size: 1 };
    let e = run::<LayerActivation>(c.clone());
    close(e.attribution(), &[[0.6, -0.95], [-1.9, 0.8]], 1e-12);
    assert_eq!(e.diagnostics["layer"], "fc1");
    // at relu: A = (0.6, 0), (0, 0.8); g = W2 row of the class
    let e = run::<LayerGradientXActivation>(layer::LayerConfig { layer: Some("relu".into()), ..c });
    close(e.attribution(), &[[1.2, 0.0], [0.0, 2.4]], 1e-12);
}

/// Downstream of relu the net is linear, so layer IG is (A(x) − A(0)) ⊙ W2[c] with
/// any rule, A(0) = relu(b1) = (0.1, 0); it sums to F(x) − F(0).
#[test]
fn layer_integrated_gradients_by_hand() {
    for (scheme, steps) in [(Scheme::GaussLegendre, 7), (Scheme::RiemannLeft, 3)] {
        let e = run::<LayerIntegratedGradients>(path("relu", steps, scheme, 4));
        close(e.attribution(), &[[1.0, 0.0], [-0.05, 2.4]], 1e-12);
        let c = e.facts.completeness.as_ref().unwrap();
        assert!(c.delta.iter().all(|d| d.abs() < 1e-12), "{c:?}");
    }
}

/// At fc1 (before the ReLU) with the trapezoid rule on 94 nodes, α_k = k/93 (no
/// node on a ReLU kink): example 1's unit 0 conducts for k = 0..4 (Δh = −2/93,
/// g = 0.5), unit 1 for k = 19..92 (Δh = 1/93, g = 3): (−5/93, 222/93). Example 0:
/// Δh₀ = 0.5/93, g = 2 for all 93 steps: 1.0. Any chunking gives the same sums (the
/// steps cross chunks).
#[test]
fn layer_conductance_by_hand_and_chunking() {
    for bs in [1, 2, 3, 7, 64, 202] {
        let e = run::<LayerConductance>(path("fc1", 93, Scheme::Trapezoid, bs));
        close(e.attribution(), &[[1.0, 0.0], [-5.0 / 93.0, 222.0 / 93.0]], 1e-12);
        // completeness: F(x) − F(0) = (1.0, 2.35); example 1 is off by the two steps
        // where a unit turns off or on
        let c = e.facts.completeness.as_ref().unwrap();
        assert!(c.delta[0].abs() < 1e-12 && (c.delta[1] - (217.0 / 93.0 - 2.35)).abs() < 1e-12, "{c:?}");
    }
    // at relu, the trapezoid rule telescopes exactly: (A(x) − A(0)) ⊙ W2[c]
    let e = run::<LayerConductance>(path("relu", 10, Scheme::Trapezoid, 5));
    close(e.attribution(), &[[1.0, 0.0], [-0.05, 2.4]], 1e-12);
    // Gauss–Legendre has no end nodes: the telescoped sum runs from α₀ to α_last
    let (a, _) = Scheme::GaussLegendre.nodes("m", 11).unwrap();
    let e = run::<LayerConductance>(path("relu", 10, Scheme::GaussLegendre, 5));
    let span = a[10] - a[0];
    let v = e.attribution().to_vec2::<f64>().unwrap();
    assert!((v[0][0] - span).abs() < 1e-12, "{v:?}");
}

/// Σ_k w_k ∂F/∂A: at relu the gradient is W2[c] everywhere; at fc1 it is masked by
/// the ReLU: example 0 (2, 0); example 1 unit 0 is on for α < 0.05, unit 1 for α > 0.2
/// (riemann_middle on 20 nodes, α = 0.025, 0.075, ...: 1 and 16 of them).
#[test]
fn internal_influence_by_hand() {
    let e = run::<InternalInfluence>(path("relu", 5, Scheme::GaussLegendre, 3));
    close(e.attribution(), &[[2.0, -1.0], [0.5, 3.0]], 1e-12);
    let e = run::<InternalInfluence>(path("fc1", 20, Scheme::RiemannMiddle, 3));
    close(e.attribution(), &[[2.0, 0.0], [0.5 / 20.0, 3.0 * 16.0 / 20.0]], 1e-12);
}

/// Through relu unit 0 for class c: ∂F/∂n = W2[c, 0], ∂n/∂x = W1 row 0 where h₀ > 0.
/// Example 0: on throughout, x ⊙ 2 (1, −2) = (2, −1), summing to the unit's share of
/// F(x) − F(0). Through unit 1 for example 1 (trapezoid, 94 nodes α_k = k/93):
/// ∂F/∂n = 3, on for k = 19..93, weight 74/93 + 1/186: (0, 3 · 149/186).
#[test]
fn neuron_conductance_by_hand() {
    let nc = |neuron: &str, scheme, steps| NeuronConductanceConfig {
        neuron: neuron.into(),
        path: PathConfig { scheme, steps, batch_size: 3, ..Default::default() },
    };
    let e = run::<NeuronConductance>(nc("relu:0", Scheme::GaussLegendre, 8));
    let v = e.attribution().to_vec2::<f64>().unwrap();
    assert!((v[0][0] - 2.0).abs() < 1e-12 && (v[0][1] + 1.0).abs() < 1e-12, "{v:?}");
    let e = run::<NeuronConductance>(nc("relu:1", Scheme::Trapezoid, 94));
    let v = e.attribution().to_vec2::<f64>().unwrap();
    assert!(v[1][0].abs() < 1e-12 && (v[1][1] - 3.0 * 149.0 / 186.0).abs() < 1e-12, "{v:?}");
    assert_eq!(e.diagnostics["neuron"], "relu:1");
}

#[test]
fn neuron_parsing_and_range_errors() {
    assert_eq!(
        Neuron::parse("m", "conv2:3:7,8").unwrap(),
        Neuron { layer: "conv2".into(), channel: 3, position: Some(vec![7, 8]) }
    );
    assert_eq!(Neuron::parse("m", "fc1:5").unwrap().position, None);
    for bad in ["conv2", ":3", "conv2:x", "conv2:1:a,b", "a:1:2:3"] {
        let e = Neuron::parse("m", bad).unwrap_err().to_string();
        assert!(e.contains("neuron") && !e.contains('\n'), "{bad}: {e}");
    }
    let n = Neuron::parse("m", "conv2:3:7,8").unwrap();
    assert!(n.check("m", &[1, 4, 14, 14]).is_ok());
    let e = n.check("m", &[1, 3, 14, 14]).unwrap_err().to_string();
    assert!(e.contains("channel 3 is out of range") && e.contains("[1, 3, 14, 14]"), "{e}");
    let e = n.check("m", &[1, 4, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("position [7, 8] does not fit"), "{e}");
    let e = Neuron::parse("m", "conv2:3").unwrap().check("m", &[1, 4, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("name a position"), "{e}");
    // through the method: a missing neuron and an out-of-range one are errors
    assert!(NeuronConductance::new(NeuronConductanceConfig::default()).is_err());
    let m = NeuronConductance::new(NeuronConductanceConfig { neuron: "relu:2".into(), ..Default::default() }).unwrap();
    let e = m.attribute(&tiny(), &x(), &t()).unwrap_err().to_string();
    assert!(e.contains("channel 2 is out of range"), "{e}");
    let m = NeuronConductance::new(NeuronConductanceConfig { neuron: "nope:0".into(), ..Default::default() }).unwrap();
    let e = m.attribute(&tiny(), &x(), &t()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("fc1, relu, fc2"), "{e}");
}

/// The tiny net has no spatial layer to default to; an unknown layer lists them.
#[test]
fn layer_errors() {
    let e = LayerActivation::new(Default::default()).unwrap().attribute(&tiny(), &x(), &t()).unwrap_err().to_string();
    assert!(e.contains("no layer with spatial output"), "{e}");
    let c = layer::LayerConfig { layer: Some("nope".into()), batch_size: 4 };
    let e = LayerActivation::new(c).unwrap().attribute(&tiny(), &x(), &t()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("fc1, relu, fc2"), "{e}");
}
