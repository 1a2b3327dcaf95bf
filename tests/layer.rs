//! The layer and neuron pack (plugins/std-layer) on the shipped `mnist-cnn`, against
//! committed Captum 0.9 outputs (tests/fixtures/captum_layer, written by
//! tools/captum/make_layer_fixtures.py in float64: zero baseline, 50 steps,
//! Gauss–Legendre). lumen runs in f64 too: in f32 a ReLU or max-pool near-tie on
//! the path can flip and move a gradient.

use crate::bad_input::one_line_error;
use crate::util::{lumen, repo_root, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::{Attributor, Classifier, Explanation, Params, Target};
use std::collections::HashMap;
use std::sync::Arc;

fn fixture() -> HashMap<String, Tensor> {
    let p = repo_root().join("tests/fixtures/captum_layer/mnist-cnn.safetensors");
    lumen_core::candle::safetensors::load(&p, &Device::Cpu).expect("captum_layer fixture")
}

/// The shipped mnist-cnn in f64, as the fixtures were made.
fn model64() -> Arc<dyn Classifier> {
    let m = lumen_models::load_shipped("mnist-cnn", &Device::Cpu).expect("shipped mnist-cnn");
    let net = crate::util::in_f64(m.network().unwrap());
    Arc::new(lumen_core::NetworkModel::new(m.info().clone(), net, &Device::Cpu).unwrap())
}

fn method(name: &str, params: &[&str]) -> Box<dyn Attributor> {
    lumen_std_layer::link();
    lumen_std_gradients::link();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    reg.build_method(name, &Params::parse_pairs(params).unwrap()).unwrap()
}

fn ints(t: &Tensor) -> Vec<usize> {
    t.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap().iter().map(|v| *v as usize).collect()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

/// The largest |a − b| over the largest |b|.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Per-example sums of an attribution.
fn sums(e: &Explanation) -> Vec<f64> {
    e.attribution().flatten_from(1).unwrap().sum(1).unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

/// Captum's LayerConductance, LayerIntegratedGradients, InternalInfluence and
/// LayerGradientXActivation at conv2 (before its ReLU), pool2 and fc1, with the
/// layer's shape.
#[test]
fn layer_methods_match_captum() {
    let f = fixture();
    let (x, m) = (f["inputs"].clone(), model64());
    let t = Target::Classes(ints(&f["targets"]));
    let cases: &[(&str, &[&str])] = &[
        ("layer_conductance", &["conv2", "pool2", "fc1"]),
        ("layer_integrated_gradients", &["conv2", "pool2", "fc1"]),
        ("internal_influence", &["conv2", "fc1"]),
        ("layer_gradient_x_activation", &["conv2", "fc1"]),
    ];
    for (name, layers) in cases {
        for layer in layers.iter() {
            let e = method(name, &[&format!("layer={layer}"), "batch_size=37"]).attribute(m.as_ref(), &x, &t).unwrap();
            assert_eq!(e.diagnostics["layer"], *layer);
            let want = &f[&format!("{name}_{layer}")];
            let r = rel(e.attribution(), want);
            eprintln!("{name} at {layer}: relative difference to Captum {r:.2e}");
            // Captum rounds the quadrature weights to float32 (`torch.tensor(step_sizes)`):
            // ~1e-9 for the weighted sums; conductance uses no weights.
            assert!(r < 1e-7, "{name} at {layer}: differs from Captum by {r:e}");
        }
    }
    // LayerActivation is the layer's output; gradient × activation vanishes where it does.
    let a = method("layer_activation", &["layer=fc1"]).attribute(m.as_ref(), &x, &t).unwrap();
    let gxa = method("layer_gradient_x_activation", &["layer=fc1"]).attribute(m.as_ref(), &x, &t).unwrap();
    assert_eq!(a.attribution().dims(), &[4, 128]);
    let nz = values(a.attribution()).iter().filter(|v| **v != 0.0).count();
    assert!(nz > 0 && values(gxa.attribution()).iter().zip(values(a.attribution())).all(|(g, a)| a != 0.0 || *g == 0.0));
    // the default layer is the last spatial one, as for the CAMs
    let d = method("layer_activation", &[]).attribute(m.as_ref(), &x, &t).unwrap();
    assert_eq!((d.diagnostics["layer"].as_str(), d.attribution().dims()), (Some("pool2"), &[4usize, 64, 7, 7][..]));
}

/// Captum's NeuronConductance (the target class through one unit: `neuron=`) and
/// NeuronIntegratedGradients, which is lumen's `integrated_gradients` with the unit
/// as a hidden target.
#[test]
fn neuron_methods_match_captum() {
    let f = fixture();
    let (x, m) = (f["inputs"].clone(), model64());
    let t = Target::Classes(ints(&f["targets"]));
    for layer in ["conv2", "fc1"] {
        let n = ints(&f[&format!("neuron_{layer}")]);
        let spec = match n.len() {
            3 => format!("{layer}:{}:{},{}", n[0], n[1], n[2]),
            _ => format!("{layer}:{}", n[0]),
        };
        let e = method("neuron_conductance", &[&format!("neuron={spec}"), "batch_size=30"]).attribute(m.as_ref(), &x, &t).unwrap();
        assert_eq!(e.attribution().dims(), x.dims());
        let r = rel(e.attribution(), &f[&format!("neuron_conductance_{layer}")]);
        eprintln!("neuron_conductance at {spec}: relative difference to Captum {r:.2e}");
        assert!(r < 1e-7, "neuron_conductance at {spec}: {r:e}");
        let hidden = Target::Hidden { layer: layer.into(), channel: n[0], position: (n.len() == 3).then(|| n[1..].to_vec()) };
        let e = method("integrated_gradients", &[]).attribute(m.as_ref(), &x, &hidden).unwrap();
        let r = rel(e.attribution(), &f[&format!("neuron_integrated_gradients_{layer}")]);
        eprintln!("integrated_gradients with target hidden {spec} (NeuronIntegratedGradients): {r:.2e}");
        assert!(r < 1e-7, "neuron IG at {spec}: {r:e}");
    }
}

/// Conductance summed over a layer is the path integral of dF: F(x) − F(0), which is
/// also Integrated Gradients' total, up to the quadrature. With Gauss–Legendre
/// (Captum's default) the steps run between the first and last nodes, not 0 and 1;
/// the trapezoid rule has the end nodes and converges as the steps grow.
#[test]
fn layer_conductance_is_complete() {
    let f = fixture();
    let (x, m) = (f["inputs"].clone(), model64());
    let t = Target::Classes(ints(&f["targets"]));
    let dfx: Vec<f64> = values(&f["f_x"]).iter().zip(values(&f["f_baseline"])).map(|(a, b)| a - b).collect();
    let ig = sums(&method("integrated_gradients", &[]).attribute(m.as_ref(), &x, &t).unwrap());
    for (a, b) in ig.iter().zip(&dfx) {
        assert!((a - b).abs() < 5e-3 * b.abs(), "IG total {a} vs F(x) − F(0) {b}");
    }
    let gap = |e: &Explanation| -> f64 {
        sums(e).iter().zip(&dfx).map(|(s, d)| (s - d).abs() / d.abs()).fold(0.0, f64::max)
    };
    for layer in ["conv2", "pool2", "fc1"] {
        let l = format!("layer={layer}");
        let gl = method("layer_conductance", &[&l]).attribute(m.as_ref(), &x, &t).unwrap();
        let tr = method("layer_conductance", &[&l, "scheme=trapezoid", "steps=400"]).attribute(m.as_ref(), &x, &t).unwrap();
        let (g1, g2) = (gap(&gl), gap(&tr));
        let c = gl.facts.completeness.as_ref().expect("completeness fact");
        for ((d, s), want) in c.delta.iter().zip(sums(&gl)).zip(&dfx) {
            assert!((d - (s - want)).abs() < 1e-9, "{d} vs {}", s - want);
        }
        let vs_ig = sums(&tr).iter().zip(&ig).map(|(s, i)| (s - i).abs() / i.abs()).fold(0.0, f64::max);
        eprintln!("layer_conductance at {layer}: Σ vs F(x) − F(0): {g1:.2e} (gauss_legendre 50), {g2:.2e} (trapezoid 400); vs IG's total {vs_ig:.2e}");
        assert!(g1 < 2e-2, "{layer}: {g1}");
        assert!(g2 < 5e-3 && g2 < g1 && vs_ig < 5e-3, "{layer}: {g2} {g1} {vs_ig}");
    }
    // layer IG is complete in the same sense
    let e = method("layer_integrated_gradients", &["layer=pool2"]).attribute(m.as_ref(), &x, &t).unwrap();
    let g = gap(&e);
    eprintln!("layer_integrated_gradients at pool2: Σ vs F(x) − F(0): {g:.2e}");
    assert!(g < 1e-2, "{g}");
}

fn explain(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["explain", "--input", "mnist:test:0", "--out", dir.to_str().unwrap()];
    a.extend_from_slice(args);
    lumen(&a)
}

#[test]
fn bad_layers_and_units_are_one_line_errors() {
    let dir = tmpdir("layer-bad");
    one_line_error(&explain(&dir, &["--method", "layer_conductance", "--param", "layer=nope"]), &["nope", "conv1", "pool2", "fc2"]);
    one_line_error(
        &explain(&dir, &["--method", "neuron_conductance", "--param", "neuron=conv2:999:7,7"]),
        &["neuron", "channel 999 is out of range", "conv2"],
    );
    one_line_error(&explain(&dir, &["--method", "neuron_conductance", "--param", "neuron=conv2:1:99,0"]), &["position [99, 0] does not fit"]);
    one_line_error(&explain(&dir, &["--method", "neuron_conductance", "--param", "neuron=conv2:1"]), &["name a position"]);
    one_line_error(&explain(&dir, &["--method", "neuron_conductance"]), &["neuron", "required"]);
    one_line_error(&explain(&dir, &["--method", "saliency", "--target", "hidden:conv2:999"]), &["channel 999 is out of range"]);
    one_line_error(&explain(&dir, &["--method", "saliency", "--target", "hidden:conv2"]), &["hidden:LAYER:CHANNEL"]);
    one_line_error(&explain(&dir, &["--method", "saliency", "--target", "hidden:nope:0"]), &["nope", "conv1"]);
    one_line_error(
        &explain(&dir, &["--method", "layer_activation", "--param", "layer=conv2", "--overlay"]),
        &["[64, 14, 14]", "--overlay"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `lumen explain` draws a layer's map at its own resolution, summed over channels,
/// each channel in a mosaic beside it; a dense layer as a square block.
#[test]
fn explain_draws_layer_shaped_maps() {
    let dir = tmpdir("layer-explain");
    let out = explain(&dir, &["--method", "layer_conductance", "--param", "layer=conv2", "--param", "steps=8"]);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("has shape [1, 64, 14, 14], not the input's") && s.contains("_channels.png (each of the 64 channels"), "{s}");
    let png = lumen_core::image::open(dir.join("mnist-test-0_layer_conductance.png")).unwrap();
    let tiles = lumen_core::image::open(dir.join("mnist-test-0_layer_conductance_channels.png")).unwrap();
    assert!(tiles.width() > png.width(), "the mosaic of 8 × 8 tiles is wider than the 14 × 14 map");
    let st = lumen_core::candle::safetensors::load(dir.join("mnist-test-0_layer_conductance.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(st["attribution"].dims(), &[1, 64, 14, 14]);
    let out = explain(&dir, &["--method", "layer_gradient_x_activation", "--param", "layer=fc1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st =
        lumen_core::candle::safetensors::load(dir.join("mnist-test-0_layer_gradient_x_activation.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(st["attribution"].dims(), &[1, 128]);
    // a hidden unit as the target of an existing method (NeuronGradient)
    let out = explain(&dir, &["--method", "saliency", "--target", "hidden:conv2:3:7,7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mnist-test-0_saliency.json")).unwrap()).unwrap();
    assert!(js.to_string().contains("conv2"), "{js}");
    // NeuronGuidedBackprop and NeuronDeepLift are these methods with a hidden target
    for m in ["guided_backprop", "deeplift"] {
        let out = explain(&dir, &["--method", m, "--target", "hidden:fc1:91"]);
        assert!(out.status.success(), "{m}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::remove_dir_all(&dir).ok();
}
