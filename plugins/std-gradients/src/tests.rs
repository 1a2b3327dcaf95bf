//! Hand-derived values on tiny networks, and the noise tunnel's contracts.

use crate::*;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use lumen_core::{Attributor, Explanation, Target};
use std::collections::HashMap;

fn net(specs: Vec<LayerSpec>, params: &[(&str, Tensor)], input_shape: Vec<usize>, classes: usize) -> NetworkModel {
    let d = Device::Cpu;
    let m: HashMap<String, Tensor> = params.iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
    let network = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "tiny".into(),
        input_shape,
        labels: (0..classes).map(|c| c.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, network, &d).unwrap()
}

fn t2(v: &[&[f32]]) -> Tensor {
    let rows = v.len();
    let flat: Vec<f32> = v.iter().flat_map(|r| r.iter().copied()).collect();
    let cols = flat.len() / rows;
    Tensor::from_vec(flat, (rows, cols), &Device::Cpu).unwrap()
}

/// y0 = 1 − relu(1 − x1 − x2), y1 = relu(1 − x1 − x2).
fn relu2() -> NetworkModel {
    net(
        vec![
            LayerSpec::new("fc1", LayerKind::Linear { in_features: 2, out_features: 1, bias: true }),
            LayerSpec::new("relu", LayerKind::Relu),
            LayerSpec::new("fc2", LayerKind::Linear { in_features: 1, out_features: 2, bias: true }),
        ],
        &[
            ("fc1.weight", t2(&[&[-1., -1.]])),
            ("fc1.bias", Tensor::new(&[1f32], &Device::Cpu).unwrap()),
            ("fc2.weight", t2(&[&[-1.], &[1.]])),
            ("fc2.bias", Tensor::new(&[1f32, 0.], &Device::Cpu).unwrap()),
        ],
        vec![2],
        2,
    )
}

const W: [[f32; 3]; 2] = [[1., -2., 0.5], [-1., 1., 1.]];

/// y = W x + b.
fn linear() -> NetworkModel {
    net(
        vec![LayerSpec::new("fc", LayerKind::Linear { in_features: 3, out_features: 2, bias: true })],
        &[("fc.weight", t2(&[&W[0], &W[1]])), ("fc.bias", Tensor::new(&[0.1f32, -0.2], &Device::Cpu).unwrap())],
        vec![3],
        2,
    )
}

/// [1, 2, 4] → max-pool 2 → [1, 1, 2] → flatten → y = V p.
fn maxpool() -> NetworkModel {
    net(
        vec![
            LayerSpec::new("pool", LayerKind::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("flat", LayerKind::Flatten),
            LayerSpec::new("fc", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
        ],
        &[("fc.weight", t2(&[&[2., -1.], &[0.5, 3.]]))],
        vec![1, 2, 4],
        2,
    )
}

fn flat(e: &Explanation) -> Vec<f32> {
    e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

fn ig(scheme: Scheme, steps: usize, baselines: Vec<Baseline>, batch_size: usize) -> IntegratedGradients {
    IntegratedGradients::new(IntegratedGradientsConfig { steps, scheme, baselines, batch_size, seed: 0 })
}

fn delta(e: &Explanation) -> Vec<f64> {
    e.diagnostics["completeness_delta"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

#[test]
fn relu_net_with_zero_gradient_but_changed_output() {
    let m = relu2();
    // x = (0.5, 1.5): the ReLU is off (1 − 2 < 0), so every gradient is zero although
    // y0 went from 0 (at the zero baseline) to 1.
    let x = t2(&[&[0.5, 1.5], &[0.5, 1.5]]);
    let t = Target::Classes(vec![0, 1]);
    assert_eq!(flat(&Saliency::default().attribute(&m, &x, &t).unwrap()), vec![0.0; 4]);
    assert_eq!(flat(&InputXGradient::default().attribute(&m, &x, &t).unwrap()), vec![0.0; 4]);
    // IG: on the path α·x the unit is on for α < ½ with ∂y0/∂x = (1, 1), ∂y1/∂x = (−1, −1);
    // so IG = x · ½ · (±1): (0.25, 0.75) for y0 and (−0.25, −0.75) for y1, summing to
    // f(x) − f(0) = 1 − 0 and 0 − 1. Midpoint and Gauss–Legendre with an even number
    // of nodes weigh the two halves exactly equally.
    for (scheme, steps) in [(Scheme::RiemannMiddle, 4), (Scheme::GaussLegendre, 6), (Scheme::RiemannMiddle, 10)] {
        let e = ig(scheme, steps, vec![Baseline::Zero], 5).attribute(&m, &x, &t).unwrap();
        assert_close(&flat(&e), &[0.25, 0.75, -0.25, -0.75], 1e-6);
        assert_close(&delta(&e).iter().map(|v| *v as f32).collect::<Vec<_>>(), &[0.0, 0.0], 1e-6);
    }
}

#[test]
fn linear_model_by_hand() {
    let m = linear();
    let xv = [1f32, 0.2, 0.4];
    let x = t2(&[&xv, &xv]);
    let t = Target::Classes(vec![0, 1]);
    let w: Vec<f32> = W.iter().flatten().copied().collect();
    assert_eq!(flat(&Saliency::default().attribute(&m, &x, &t).unwrap()), w);
    let ixg: Vec<f32> = w.iter().enumerate().map(|(i, w)| w * xv[i % 3]).collect();
    assert_close(&flat(&InputXGradient::default().attribute(&m, &x, &t).unwrap()), &ixg, 1e-7);
    // IG of a linear model is W·(x − b) under every quadrature (weights sum to 1).
    for s in [Scheme::RiemannLeft, Scheme::RiemannRight, Scheme::RiemannMiddle, Scheme::Trapezoid, Scheme::GaussLegendre] {
        let e = ig(s, 7, vec![Baseline::Zero], 4).attribute(&m, &x, &t).unwrap();
        assert_close(&flat(&e), &ixg, 1e-6);
        let e = ig(s, 3, vec![Baseline::Constant(0.5)], 64).attribute(&m, &x, &t).unwrap();
        let want: Vec<f32> = w.iter().enumerate().map(|(i, w)| w * (xv[i % 3] - 0.5)).collect();
        assert_close(&flat(&e), &want, 1e-6);
    }
    // Two baselines (zero and a user tensor) are averaged: W·(x − (0 + u)/2).
    let u = [0.4f32, -0.6, 1.0];
    let user = Tensor::new(&u, &Device::Cpu).unwrap();
    let e = ig(Scheme::Trapezoid, 2, vec![Baseline::Zero, Baseline::Tensor(user)], 3).attribute(&m, &x, &t).unwrap();
    let want: Vec<f32> = w.iter().enumerate().map(|(i, w)| w * (xv[i % 3] - u[i % 3] / 2.0)).collect();
    assert_close(&flat(&e), &want, 1e-6);
    assert!(delta(&e).iter().all(|d| d.abs() < 1e-5), "{:?}", e.diagnostics);
    // A mis-shaped user baseline is a clear error.
    let bad = Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap();
    let err = ig(Scheme::Trapezoid, 2, vec![Baseline::Tensor(bad)], 3).attribute(&m, &x, &t).unwrap_err();
    assert!(err.to_string().contains("baseline of shape [3]"), "{err}");
}

#[test]
fn maxpool_net_by_hand() {
    let m = maxpool();
    // windows: {1, 3 | 2, −1} → 3 at (0,1); {−2, 0.5 | −4, 0.2} → 0.5 at (0,3)
    let xv = [1f32, 3., -2., 0.5, 2., -1., -4., 0.2];
    let x = Tensor::from_vec(xv.to_vec(), (1, 1, 2, 4), &Device::Cpu).unwrap();
    let t = Target::Class(0); // y0 = 2·3 − 0.5 = 5.5
    let sal = flat(&Saliency::default().attribute(&m, &x, &t).unwrap());
    assert_eq!(sal, vec![0., 2., 0., -1., 0., 0., 0., 0.]);
    let ixg = flat(&InputXGradient::default().attribute(&m, &x, &t).unwrap());
    assert_eq!(ixg, vec![0., 6., 0., -0.5, 0., 0., 0., 0.]);
    // Along α·x (α > 0) the maxima stay where they are, so IG = x·∇ = I×G.
    let e = ig(Scheme::GaussLegendre, 5, vec![Baseline::Zero], 2).attribute(&m, &x, &t).unwrap();
    assert_close(&flat(&e), &ixg, 1e-6);
    assert!(delta(&e)[0].abs() < 1e-6);
}

#[test]
fn completeness_delta_shrinks_with_steps_on_a_kinked_path() {
    // y1 = relu(1 − x1 − x2) from the zero baseline to (0.3, 1.2): the kink is at
    // α = 2/3, so left Riemann sums converge like 1/m.
    let m = relu2();
    let x = t2(&[&[0.3, 1.2]]);
    let t = Target::Class(1);
    let d = |steps| delta(&ig(Scheme::RiemannLeft, steps, vec![Baseline::Zero], 64).attribute(&m, &x, &t).unwrap())[0].abs();
    let (d5, d50, d500) = (d(5), d(50), d(500));
    assert!(d5 > d50 && d50 > d500 && d500 < 5e-3, "{d5} {d50} {d500}");
}

#[test]
fn uniform_and_blur_baselines() {
    let m = maxpool();
    let x = Tensor::from_vec(vec![1f32, 3., -2., 0.5, 2., -1., -4., 0.2], (1, 1, 2, 4), &Device::Cpu).unwrap();
    let g = ig(Scheme::GaussLegendre, 4, vec![Baseline::Uniform], 64);
    let b1 = g.baseline(&m, &x, &Baseline::Uniform, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b2 = g.baseline(&m, &x, &Baseline::Uniform, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b3 = g.baseline(&m, &x, &Baseline::Uniform, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(b1, b2);
    assert_ne!(b1, b3);
    assert!(b1.iter().all(|v| (0.0..1.0).contains(v)));
    let e = ig(Scheme::GaussLegendre, 4, vec![Baseline::Uniform, Baseline::Blur { sigma: 1.0 }], 3)
        .attribute(&m, &x, &Target::Class(1))
        .unwrap();
    assert_eq!(e.params["baseline"], "uniform,blur");
    assert_eq!(e.seed, Some(0));
}

fn sg(agg: Aggregation, n: usize, sigma: f64, seed: u64, inner: Box<dyn Attributor>) -> NoiseTunnel {
    NoiseTunnel::new(inner, NoiseTunnelConfig { agg, n, sigma, seed, batch_size: 7 })
}

#[test]
fn noise_tunnel_on_a_linear_model_by_hand() {
    // The gradient of a linear model ignores the noise: SG = W, SG² = W², VarGrad = 0.
    let m = linear();
    let x = t2(&[&[1., 0.2, 0.4], &[0.3, 0.9, 0.1]]);
    let t = Target::Classes(vec![1, 0]);
    let w: Vec<f32> = W[1].iter().chain(&W[0]).copied().collect();
    let run = |agg| flat(&sg(agg, 20, 0.3, 1, Box::new(Saliency::default())).attribute(&m, &x, &t).unwrap());
    assert_close(&run(Aggregation::SmoothGrad), &w, 1e-6);
    assert_close(&run(Aggregation::SmoothGradSq), &w.iter().map(|v| v * v).collect::<Vec<_>>(), 1e-6);
    assert_close(&run(Aggregation::VarGrad), &[0.0; 6], 1e-6);
    // Input × gradient over noise: mean W·(x + ε̄) differs from W·x, VarGrad = W²·var(ε) > 0.
    let e = sg(Aggregation::VarGrad, 20, 0.3, 1, Box::new(InputXGradient::default())).attribute(&m, &x, &t).unwrap();
    assert!(flat(&e).iter().all(|v| *v > 0.0));
}

#[test]
fn noise_tunnel_sigma_zero_n_one_is_the_inner_method_exactly() {
    let m = maxpool();
    let x = Tensor::from_vec((0..16).map(|i| ((i * 7) % 11) as f32 / 10.0 - 0.3).collect(), (2, 1, 2, 4), &Device::Cpu)
        .unwrap();
    let t = Target::Classes(vec![1, 0]);
    let inners: Vec<Box<dyn Attributor>> = vec![
        Box::new(Saliency::default()),
        Box::new(InputXGradient::default()),
        Box::new(ig(Scheme::Trapezoid, 6, vec![Baseline::Zero], 5)),
    ];
    for inner in inners {
        let want = flat(&inner.attribute(&m, &x, &t).unwrap());
        let name = inner.name().to_string();
        let got = flat(&sg(Aggregation::SmoothGrad, 1, 0.0, 3, inner).attribute(&m, &x, &t).unwrap());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn noise_tunnel_seeds() {
    let m = maxpool();
    let x = Tensor::from_vec((0..16).map(|i| ((i * 5) % 9) as f32 / 8.0).collect(), (2, 1, 2, 4), &Device::Cpu).unwrap();
    let t = Target::Predicted;
    let run = |seed| flat(&sg(Aggregation::SmoothGrad, 10, 0.5, seed, Box::new(Saliency::default())).attribute(&m, &x, &t).unwrap());
    assert_eq!(run(4), run(4));
    assert_ne!(run(4), run(5));
    let e = sg(Aggregation::SmoothGrad, 3, 0.5, 9, Box::new(Saliency::default())).attribute(&m, &x, &t).unwrap();
    assert_eq!(e.seed, Some(9));
    assert_eq!(e.params["inner"], "saliency");
    assert_eq!(e.params["inner.batch_size"], "64");
}

#[test]
fn batches_with_per_example_targets_equal_single_runs() {
    let m = relu2();
    let x = t2(&[&[0.5, 1.5], &[0.1, 0.2], &[0.3, -0.4], &[0.9, 0.05]]);
    let classes = vec![0, 1, 1, 0];
    let methods: Vec<Box<dyn Attributor>> = vec![
        Box::new(Saliency::new(SaliencyConfig { batch_size: 3 })),
        Box::new(InputXGradient::new(InputXGradientConfig { batch_size: 3 })),
        Box::new(IntegratedGradients::new(IntegratedGradientsConfig {
            steps: 9,
            scheme: Scheme::RiemannMiddle,
            baselines: vec![Baseline::Uniform, Baseline::Constant(0.2)],
            batch_size: 5,
            seed: 2,
        })),
        Box::new(sg(Aggregation::VarGrad, 6, 0.2, 1, Box::new(ig(Scheme::GaussLegendre, 4, vec![Baseline::Zero], 5)))),
    ];
    for method in methods {
        let all = flat(&method.attribute(&m, &x, &Target::Classes(classes.clone())).unwrap());
        for (i, c) in classes.iter().enumerate() {
            let one = flat(&method.attribute(&m, &x.narrow(0, i, 1).unwrap(), &Target::Class(*c)).unwrap());
            assert_close(&all[2 * i..2 * i + 2], &one, 1e-6);
        }
    }
}

/// Expanding methods stream in `batch_size` chunks: one path point or noisy copy per
/// pass gives the same maps as every row in one pass.
#[test]
fn batch_size_one_equals_one_big_batch() {
    let m = relu2();
    let x = t2(&[&[0.5, 1.5], &[0.1, 0.2], &[0.3, -0.4]]);
    let t = Target::Classes(vec![0, 1, 1]);
    let pairs: Vec<(Box<dyn Attributor>, Box<dyn Attributor>)> = vec![
        (Box::new(ig(Scheme::GaussLegendre, 37, vec![Baseline::Zero, Baseline::Uniform], 1)),
         Box::new(ig(Scheme::GaussLegendre, 37, vec![Baseline::Zero, Baseline::Uniform], 4096))),
        (Box::new(NoiseTunnel::new(Box::new(Saliency::default()),
            NoiseTunnelConfig { agg: Aggregation::VarGrad, n: 23, sigma: 0.3, seed: 4, batch_size: 1 })),
         Box::new(NoiseTunnel::new(Box::new(Saliency::default()),
            NoiseTunnelConfig { agg: Aggregation::VarGrad, n: 23, sigma: 0.3, seed: 4, batch_size: 4096 }))),
    ];
    for (small, big) in pairs {
        let (a, b) = (flat(&small.attribute(&m, &x, &t).unwrap()), flat(&big.attribute(&m, &x, &t).unwrap()));
        let scale = b.iter().fold(0f32, |s, v| s.max(v.abs())).max(1e-6);
        assert_close(&a, &b, 1e-5 * scale);
    }
}

fn gshap(n_samples: usize, stdev: f64, dist: Option<Tensor>, seed: u64, batch_size: usize) -> lumen_core::Result<GradientShap> {
    <GradientShap as lumen_core::Method>::new(GradientShapConfig {
        n_samples,
        stdev,
        baselines: vec![Baseline::Zero],
        baseline_distribution: dist,
        seed,
        batch_size,
    })
}

#[test]
fn gradient_shap_on_a_linear_model_by_hand() {
    let m = linear();
    let xv = [1f32, 0.2, 0.4];
    let x = t2(&[&xv, &xv]);
    let t = Target::Classes(vec![0, 1]);
    // No noise, one zero reference: every draw gives W[t] ⊙ x whatever α is.
    let e = gshap(7, 0.0, None, 3, 4).unwrap().attribute(&m, &x, &t).unwrap();
    let ixg: Vec<f32> = W.iter().flatten().enumerate().map(|(i, w)| w * xv[i % 3]).collect();
    assert_close(&flat(&e), &ixg, 1e-6);
    assert!(delta(&e).iter().all(|d| d.abs() < 1e-6), "{:?}", e.diagnostics);
    assert_eq!(e.seed, Some(3));
    // Two references with W0·b equal (0 and (2, 1, 0)): φ = W0 ⊙ (x − p·b2) where p is
    // the share of draws that picked b2, and the delta is exactly zero for class 0.
    let dist = t2(&[&[0., 0., 0.], &[2., 1., 0.]]);
    let e = gshap(50, 0.0, Some(dist), 1, 16).unwrap().attribute(&m, &x.narrow(0, 0, 1).unwrap(), &Target::Class(0)).unwrap();
    let phi = flat(&e);
    let p = (xv[0] - phi[0] / W[0][0]) / 2.0;
    assert!(p > 0.1 && p < 0.9, "both references drawn: p = {p}");
    assert_close(&phi, &[W[0][0] * (xv[0] - 2.0 * p), W[0][1] * (xv[1] - p), W[0][2] * xv[2]], 1e-5);
    assert!(delta(&e)[0].abs() < 1e-5, "{:?}", e.diagnostics);
    assert_eq!(e.diagnostics["n_references"].as_u64(), Some(2));
}

#[test]
fn gradient_shap_seeds_batches_and_bad_params() {
    let m = relu2();
    let x = t2(&[&[0.5, 1.5], &[0.1, 0.2], &[0.3, -0.4]]);
    let dist = t2(&[&[0., 0.], &[0.2, -0.1], &[1., 1.]]);
    let classes = vec![0, 1, 1];
    let run = |seed, bs, x: &Tensor, t: &Target| flat(&gshap(9, 0.2, Some(dist.clone()), seed, bs).unwrap().attribute(&m, x, t).unwrap());
    let all = run(5, 4, &x, &Target::Classes(classes.clone()));
    assert_eq!(all, run(5, 4, &x, &Target::Classes(classes.clone())));
    assert_ne!(all, run(6, 4, &x, &Target::Classes(classes.clone())));
    // The draws depend on the seed and the example only: not on the batch or its split.
    assert_close(&run(5, 1, &x, &Target::Classes(classes.clone())), &all, 1e-6);
    for (i, c) in classes.iter().enumerate() {
        assert_close(&all[2 * i..2 * i + 2], &run(5, 7, &x.narrow(0, i, 1).unwrap(), &Target::Class(*c)), 1e-6);
    }
    let err = gshap(5, -0.1, None, 0, 4).unwrap_err();
    assert!(err.to_string().contains("stdev"), "{err}");
    let bad = t2(&[&[0., 0., 0.]]);
    let err = gshap(5, 0.0, Some(bad), 0, 4).unwrap().attribute(&m, &x, &Target::Class(0)).unwrap_err();
    assert!(err.to_string().contains("baseline_distribution"), "{err}");
}

fn blur_ig(steps: usize, max_sigma: f64, batch_size: usize) -> lumen_core::Result<BlurIg> {
    <BlurIg as lumen_core::Method>::new(BlurIgConfig { steps, max_sigma, batch_size })
}

#[test]
fn blur_ig_telescopes_on_a_linear_model() {
    // The blur is linear too, so Σφ = f(x) − f(blur(x, σmax)) exactly and a single
    // step gives W ⊙ (x − blur(x, σmax)).
    let m = linear();
    let x = t2(&[&[1., 0.2, 0.4], &[0.3, 0.9, -0.5]]);
    let t = Target::Classes(vec![0, 1]);
    let blurred = flat_t(&lumen_core::method::gaussian_blur(&x, 2.0).unwrap());
    let xs = flat_t(&x);
    let e = blur_ig(1, 2.0, 64).unwrap().attribute(&m, &x, &t).unwrap();
    let w: Vec<f32> = W.iter().flatten().copied().collect();
    let want: Vec<f32> = (0..6).map(|i| w[i] * (xs[i] - blurred[i])).collect();
    assert_close(&flat(&e), &want, 1e-6);
    for (steps, bs) in [(1, 64), (5, 3), (20, 1)] {
        let e = blur_ig(steps, 2.0, bs).unwrap().attribute(&m, &x, &t).unwrap();
        assert!(delta(&e).iter().all(|d| d.abs() < 1e-5), "{steps}: {:?}", e.diagnostics);
        // The reference value is the model at the fully blurred input.
        let f_b = e.diagnostics["f_baseline"][0].as_f64().unwrap();
        let want0: f64 = (0..3).map(|i| (w[i] * blurred[i]) as f64).sum::<f64>() + 0.1;
        assert!((f_b - want0).abs() < 1e-5, "{f_b} vs {want0}");
    }
}

#[test]
fn blur_ig_on_images_and_bad_params() {
    // Max-pool net: not linear, but the delta shrinks with steps, and a batch run equals
    // its examples one at a time whatever the chunking.
    let m = maxpool();
    let x = Tensor::from_vec((0..16).map(|i| ((i * 7) % 11) as f32 / 10.0 - 0.3).collect(), (2, 1, 2, 4), &Device::Cpu)
        .unwrap();
    let t = Target::Classes(vec![1, 0]);
    let d = |steps| delta(&blur_ig(steps, 3.0, 64).unwrap().attribute(&m, &x, &t).unwrap()).iter().fold(0f64, |a, v| a.max(v.abs()));
    let (d2, d200) = (d(2), d(200));
    assert!(d200 < 1e-2 && d200 <= d2, "{d2} {d200}");
    let all = flat(&blur_ig(13, 3.0, 5).unwrap().attribute(&m, &x, &t).unwrap());
    for (i, c) in [1usize, 0].iter().enumerate() {
        let one = flat(&blur_ig(13, 3.0, 64).unwrap().attribute(&m, &x.narrow(0, i, 1).unwrap(), &Target::Class(*c)).unwrap());
        assert_close(&all[8 * i..8 * i + 8], &one, 1e-6);
    }
    for s in [0.0, -1.0, f64::NAN, 1e4] {
        let err = blur_ig(10, s, 4).unwrap_err();
        assert!(err.to_string().contains("max_sigma"), "{err}");
    }
}

fn flat_t(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn guided_ig_steps_by_hand() {
    // x = (1, 1) from b = 0 in two steps with a band as wide as the path: the
    // low-gradient feature covers the first half of the L1 distance on its own.
    let (x, b) = ([1.0, 1.0], [0.0, 0.0]);
    let (mut cur, mut attr) = (b.to_vec(), vec![0.0; 2]);
    guided_ig::guided_step(&mut cur, &x, &b, &[1.0, 3.0], &mut attr, (0, 2), 0.5, 1.0);
    assert_eq!((cur.clone(), attr.clone()), (vec![1.0, 0.0], vec![1.0, 0.0]));
    guided_ig::guided_step(&mut cur, &x, &b, &[5.0, 7.0], &mut attr, (1, 2), 0.5, 1.0);
    assert_eq!((cur, attr), (vec![1.0, 1.0], vec![1.0, 7.0]));
    // A band of 0.02: both features are pulled up to α = 0.98 first, then the smaller
    // gradient's feature finishes, then the other.
    let (mut cur, mut attr) = (b.to_vec(), vec![0.0; 2]);
    let it = guided_ig::guided_step(&mut cur, &x, &b, &[1.0, 3.0], &mut attr, (0, 1), 0.5, 0.02);
    assert_eq!(it, 2);
    assert_close(&[cur[0] as f32, cur[1] as f32, attr[0] as f32, attr[1] as f32], &[1.0, 1.0, 1.0, 3.0], 1e-12);
}

fn gig(steps: usize, fraction: f64, max_dist: f64, batch_size: usize) -> lumen_core::Result<GuidedIg> {
    <GuidedIg as lumen_core::Method>::new(GuidedIgConfig {
        steps,
        fraction,
        max_dist,
        baselines: vec![Baseline::Zero],
        seed: 0,
        batch_size,
    })
}

#[test]
fn guided_ig_without_a_band_is_left_riemann_ig() {
    // max_dist = 0 keeps every feature on the straight line: the gradient at the start
    // of each step times (x − b)/m, i.e. IG with the left Riemann rule.
    let m = relu2();
    let x = t2(&[&[0.5, 1.5], &[0.1, 0.2], &[0.3, -0.4]]);
    let t = Target::Classes(vec![0, 1, 1]);
    let want = flat(&ig(Scheme::RiemannLeft, 8, vec![Baseline::Zero], 64).attribute(&m, &x, &t).unwrap());
    assert_close(&flat(&gig(8, 0.25, 0.0, 2).unwrap().attribute(&m, &x, &t).unwrap()), &want, 1e-6);
}

#[test]
fn guided_ig_completeness_batches_and_bad_params() {
    // Any path gives Σφ = f(x) − f(b) on a linear model.
    let m = linear();
    let x = t2(&[&[1., 0.2, 0.4], &[0.3, 0.9, -0.5]]);
    let t = Target::Classes(vec![0, 1]);
    let e = gig(10, 0.25, 0.1, 64).unwrap().attribute(&m, &x, &t).unwrap();
    assert!(delta(&e).iter().all(|d| d.abs() < 1e-5), "{:?}", e.diagnostics);
    // On the ReLU net the path adapts, the delta shrinks with steps, and a batch equals
    // its examples one at a time.
    let m = relu2();
    let x = t2(&[&[0.5, 1.5], &[0.1, 0.2], &[0.3, -0.4], &[0.9, 0.05]]);
    let classes = vec![0, 1, 1, 0];
    let tc = Target::Classes(classes.clone());
    let run = |steps, bs, x: &Tensor, t: &Target| gig(steps, 0.5, 0.05, bs).unwrap().attribute(&m, x, t).unwrap();
    let worst = |e: &Explanation| delta(e).iter().fold(0f64, |a, v| a.max(v.abs()));
    assert!(worst(&run(400, 64, &x, &tc)) < 1e-2, "{:?}", run(400, 64, &x, &tc).diagnostics);
    let all = flat(&run(20, 3, &x, &tc));
    for (i, c) in classes.iter().enumerate() {
        assert_close(&all[2 * i..2 * i + 2], &flat(&run(20, 64, &x.narrow(0, i, 1).unwrap(), &Target::Class(*c))), 1e-6);
    }
    for (f, d, name) in [(0.0, 0.1, "fraction"), (1.5, 0.1, "fraction"), (0.5, -0.1, "max_dist"), (0.5, f64::NAN, "max_dist")] {
        let err = gig(5, f, d, 4).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}
