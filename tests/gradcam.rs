//! The CAM pack on the shipped `mnist-cnn`, against committed pytorch-grad-cam
//! outputs (tests/fixtures/gradcam, written by tools/gradcam/make_fixtures.py).

use crate::bad_input::one_line_error;
use crate::util::{lumen, repo_root, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::{Attributor, Classifier, Explanation, Params, Target};
use std::collections::HashMap;
use std::sync::Arc;

fn fixture() -> HashMap<String, Tensor> {
    let p = repo_root().join("tests/fixtures/gradcam/mnist-cnn.safetensors");
    lumen_core::candle::safetensors::load(&p, &Device::Cpu).expect("gradcam fixture")
}

fn model() -> Arc<dyn Classifier> {
    lumen_models::load_shipped("mnist-cnn", &Device::Cpu).expect("shipped mnist-cnn")
}

/// The shipped mnist-cnn in f64, as the fixtures were made: in f32 a ReLU or a
/// max-pool winner within rounding of a tie can flip and move a gradient.
fn model64() -> Arc<dyn Classifier> {
    let m = model();
    let net = crate::util::in_f64(m.network().unwrap());
    Arc::new(lumen_core::NetworkModel::new(m.info().clone(), net, &Device::Cpu).unwrap())
}

fn method(name: &str, params: &[&str]) -> Box<dyn Attributor> {
    lumen_std_cam::link();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    reg.build_method(name, &Params::parse_pairs(params).unwrap()).unwrap()
}

fn classes(f: &HashMap<String, Tensor>, key: &str) -> Target {
    Target::Classes(f[key].to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap().iter().map(|v| *v as usize).collect())
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.flatten_from(1).unwrap().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

/// The largest |a − b| over all examples, over the largest |b|.
fn rel(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let scale = b.iter().flatten().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().flatten().zip(b.iter().flatten()).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Each map scaled to [0, 1]: pytorch-grad-cam's output is `s(resize(s(cam)))` with
/// `s(x) = (x − min) / (1e-7 + max)`, which is this up to its ε (the ε counts
/// against the CAM's own scale only in the inner `s`, and lumen keeps that scale).
fn min_max(e: &Explanation) -> Vec<Vec<f64>> {
    rows(e.attribution())
        .into_iter()
        .map(|r| {
            let lo = r.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = r.iter().map(|v| v - lo).fold(0f64, f64::max);
            r.iter().map(|v| (v - lo) / hi.max(1e-300)).collect()
        })
        .collect()
}

/// Each CAM at pool2 (the default layer) for the top class and for the runner-up,
/// at the layer to 1e-9 of its scale (both in f64; 1e-5 for Score-CAM and
/// Ablation-CAM, whose weights pytorch-grad-cam computes in f32) and upsampled,
/// scaled as pytorch-grad-cam scales it, to 1e-5 (it resizes in f32); the two
/// classes' maps differ.
#[test]
fn cams_match_pytorch_grad_cam() {
    let f = fixture();
    let x = f["inputs"].clone();
    let m = model64();
    for name in ["grad_cam", "grad_cam_plus_plus", "hires_cam", "xgrad_cam", "layer_cam", "score_cam", "ablation_cam"] {
        // Score-CAM's and Ablation-CAM's weights pass through f32 in pytorch-grad-cam.
        let tol = if name.contains("score") || name.contains("ablation") { 1e-5 } else { 1e-9 };
        let e = method(name, &[]).attribute(m.as_ref(), &x, &classes(&f, "first")).unwrap();
        assert_eq!(e.diagnostics["layer"], "pool2", "{name}: default layer");
        assert_eq!(e.attribution().dims(), x.dims());
        assert_eq!(e.tensor("cam").unwrap().dims(), &[5, 7, 7]);
        let ec = rel(&rows(e.tensor("cam").unwrap()), &rows(&f[&format!("{name}_cam")]));
        assert!(ec < tol, "{name}: CAM at the layer differs by {ec}");
        let em = rel(&min_max(&e), &rows(&f[&format!("{name}_map")]));
        assert!(em < 1e-5, "{name}: upsampled map differs by {em}");
        let e2 = method(name, &[]).attribute(m.as_ref(), &x, &classes(&f, "second")).unwrap();
        let want2 = rows(&f[&format!("{name}_second_cam")]);
        let e2c = rel(&rows(e2.tensor("cam").unwrap()), &want2);
        assert!(e2c < tol, "{name}: runner-up CAM differs by {e2c}");
        let apart = rel(&rows(e.tensor("cam").unwrap()), &want2);
        assert!(apart > 0.05, "{name}: the two classes' CAMs should differ, got {apart}");
    }
}

/// Grad-CAM at conv2 (before its ReLU: activations of both signs, 14×14), and the
/// batch split into chunks gives the same maps.
#[test]
fn grad_cam_at_another_layer_and_in_chunks() {
    let f = fixture();
    let x = f["inputs"].clone();
    let m = model64();
    let e = method("grad_cam", &["layer=conv2", "batch_size=2"]).attribute(m.as_ref(), &x, &classes(&f, "first")).unwrap();
    assert_eq!(e.tensor("cam").unwrap().dims(), &[5, 14, 14]);
    let ec = rel(&rows(e.tensor("cam").unwrap()), &rows(&f["grad_cam_conv2_cam"]));
    assert!(ec < 1e-9, "CAM at conv2 differs by {ec}");
    let em = rel(&min_max(&e), &rows(&f["grad_cam_conv2_map"]));
    assert!(em < 1e-5, "upsampled map at conv2 differs by {em}");
    // relu=false keeps the negative part: it equals the CAM wherever that is positive.
    let signed = method("grad_cam", &["layer=conv2", "relu=false"]).attribute(m.as_ref(), &x, &classes(&f, "first")).unwrap();
    let (s, c) = (rows(signed.tensor("cam").unwrap()), rows(e.tensor("cam").unwrap()));
    assert!(s.iter().flatten().any(|v| *v < 0.0), "signed CAM has negative values");
    for (a, b) in s.iter().flatten().zip(c.iter().flatten()) {
        assert!((a.max(0.0) - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn cam_errors_are_one_line() {
    let m = model();
    let x = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let e = method("grad_cam", &["layer=nope"]).attribute(m.as_ref(), &x, &Target::Class(0)).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("pool2") && e.contains("fc1"), "lists the layers: {e}");
    let e = method("grad_cam", &["layer=fc1"]).attribute(m.as_ref(), &x, &Target::Class(0)).unwrap_err().to_string();
    assert!(e.contains("fc1") && e.contains("spatial"), "{e}");
    let e = method("layer_cam", &[]).attribute(m.as_ref(), &x, &Target::Class(10)).unwrap_err().to_string();
    assert!(e.contains("10"), "{e}");
    let dir = tmpdir("gradcam-cli");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let run = |p: &str| lumen(&["explain", "--method", "grad_cam", "--param", p, "--input", "mnist:test:0", "--out", out]);
    one_line_error(&run("layer=nope"), &["nope", "pool2"]);
    one_line_error(&run("layer=fc2"), &["fc2", "spatial"]);
    one_line_error(&run("batch_size=0"), &["batch_size"]);
    // and a run writes the map
    let ok = run("layer=pool1");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// The default layer of the all-conv net is its class layer (before the global
/// pooling), and a 1-D model (genomics-cnn, `[B, 4, L]`) gets a 1-D CAM; both maps
/// have the input's shape and repeat the CAM over the input's channels.
#[test]
fn all_conv_and_one_d_models() {
    lumen_std_relevance::link(); // genomics-cnn
    let reg = lumen_core::Registry::from_inventory().unwrap();
    for (name, layer) in [("mnist-allcnn", "conv5"), ("genomics-cnn", "")] {
        let m = reg.load_model(name, &Device::Cpu).unwrap();
        let mut shape = vec![3];
        shape.extend(&m.info().input_shape);
        let x = Tensor::rand(0f32, 1., shape.as_slice(), &Device::Cpu).unwrap();
        let e = method("grad_cam", &[]).attribute(m.as_ref(), &x, &Target::Predicted).unwrap();
        if !layer.is_empty() {
            assert_eq!(e.diagnostics["layer"], layer);
        }
        assert_eq!(e.attribution().dims(), x.dims(), "{name}");
        assert_eq!(e.tensor("cam").unwrap().rank(), x.rank() - 1, "{name}");
        let a = e.attribution().to_dtype(DType::F64).unwrap();
        let c0 = a.narrow(1, 0, 1).unwrap();
        let spread = a.broadcast_sub(&c0).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(spread, 0.0, "{name}: every input channel carries the same map");
        assert!(e.attribution().min_all().unwrap().to_scalar::<f32>().unwrap() >= 0.0, "{name}: relu=true");
    }
}

/// Eigen-CAM, EigenGrad-CAM and Grad-CAM with eigen_smooth: the first principal
/// component's projection, against pytorch-grad-cam's (f32, its sign aligned: a
/// component's sign is arbitrary; lumen makes the largest magnitude positive).
#[test]
fn principal_component_cams_match_pytorch_grad_cam() {
    let f = fixture();
    let x = f["inputs"].clone();
    let m = model64();
    for (name, params, key) in [
        ("eigen_cam", vec!["relu=false"], "eigen_cam_projection"),
        ("eigen_grad_cam", vec!["relu=false"], "eigen_grad_cam_projection"),
        ("grad_cam", vec!["relu=false", "eigen_smooth=true"], "grad_cam_eigen_smooth_projection"),
    ] {
        let e = method(name, &params).attribute(m.as_ref(), &x, &classes(&f, "first")).unwrap();
        let ours = rows(e.tensor("cam").unwrap());
        let theirs: Vec<Vec<f64>> = rows(&f[key])
            .into_iter()
            .zip(&ours)
            .map(|(t, o)| {
                let dot: f64 = t.iter().zip(o).map(|(a, b)| a * b).sum();
                t.iter().map(|v| if dot < 0.0 { -v } else { *v }).collect()
            })
            .collect();
        let err = rel(&ours, &theirs);
        assert!(err < 1e-5, "{name} {params:?}: projection differs by {err}");
        for o in &ours {
            let (lo, hi) = o.iter().fold((0f64, 0f64), |(l, h), v| (l.min(*v), h.max(*v)));
            assert!(hi >= -lo, "{name}: the largest magnitude is positive");
        }
    }
}

/// Guided Grad-CAM is Guided Backprop times the upsampled Grad-CAM, element-wise.
#[test]
fn guided_grad_cam_is_the_product() {
    lumen_std_propagation::link();
    let f = fixture();
    let x = f["inputs"].to_dtype(DType::F32).unwrap();
    let m = model();
    let t = classes(&f, "first");
    let g = method("guided_grad_cam", &[]).attribute(m.as_ref(), &x, &t).unwrap();
    let gc = method("grad_cam", &[]).attribute(m.as_ref(), &x, &t).unwrap();
    let gb = method("guided_backprop", &[]).attribute(m.as_ref(), &x, &t).unwrap();
    let want = (gb.attribution() * gc.attribution()).unwrap();
    assert_eq!(rel(&rows(g.attribution()), &rows(&want)), 0.0);
    assert_eq!(rows(g.tensor("cam").unwrap()), rows(gc.tensor("cam").unwrap()));
    assert_eq!(g.diagnostics["layer"], "pool2");
}

/// FullGrad over conv1's and conv2's biases and the input, scaled as
/// pytorch-grad-cam scales it, against its output (f32 there) to 1e-5.
#[test]
fn full_grad_matches_pytorch_grad_cam() {
    let f = fixture();
    let x = f["inputs"].clone();
    let e = method("full_grad", &["batch_size=3"]).attribute(model64().as_ref(), &x, &classes(&f, "first")).unwrap();
    assert_eq!(e.diagnostics["layers"], "conv1,conv2");
    let err = rel(&min_max(&e), &rows(&f["full_grad_map"]));
    assert!(err < 1e-5, "FullGrad differs by {err}");
}

/// aug_smooth: the mean of six test-time augmentations' maps, each scaled to [0, 1],
/// against pytorch-grad-cam's aug_smooth (f32 there) to 1e-5.
#[test]
fn aug_smooth_matches_pytorch_grad_cam() {
    let f = fixture();
    let x = f["inputs"].clone();
    let e = method("grad_cam", &["aug_smooth=true"]).attribute(model64().as_ref(), &x, &classes(&f, "first")).unwrap();
    let err = rel(&rows(e.attribution()), &rows(&f["grad_cam_aug_smooth_map"]));
    assert!(err < 1e-5, "aug_smooth differs by {err}");
    let plain = method("grad_cam", &[]).attribute(model64().as_ref(), &x, &classes(&f, "first")).unwrap();
    assert!(rel(&min_max(&plain), &rows(&f["grad_cam_aug_smooth_map"])) > 1e-3, "the augmentations change the map");
    assert_eq!(e.tensor("cam").unwrap().dims(), &[5, 7, 7]);
}

/// ROAD (noise 0) and the confidence metrics on the fixture's Grad-CAM maps,
/// against pytorch-grad-cam's metrics (f32 model on both sides): the imputed
/// images to 1e-5 and the scores to 1e-4 of their scale.
#[test]
fn road_and_confidence_match_pytorch_grad_cam() {
    use lumen_std_metrics::road::{impute_channel, percentile};
    lumen_std_metrics::link();
    let f = fixture();
    let r = lumen_core::candle::safetensors::load(repo_root().join("tests/fixtures/gradcam/road.safetensors"), &Device::Cpu).unwrap();
    let x = f["inputs"].to_dtype(DType::F32).unwrap();
    let cams = r["cams"].to_dtype(DType::F32).unwrap().reshape((5, 1, 28, 28)).unwrap();
    // the imputation itself: MoRF 50 and LeRF 30
    let (xs, cs) = (rows(&x), rows(&cams));
    for (key, most, q) in [("imputed_morf50", true, 50.0), ("imputed_lerf30", false, 30.0)] {
        let want = rows(&r[key]);
        for i in 0..5 {
            let m: Vec<f64> = if most { cs[i].clone() } else { cs[i].iter().map(|v| -v).collect() };
            let t = percentile(&m, q);
            let keep: Vec<bool> = m.iter().map(|v| *v < t).collect();
            assert!(keep.iter().any(|k| !k) && keep.iter().any(|k| *k));
            let got = impute_channel(&xs[i], &keep, 28, 28);
            let err = rel(&[got], &[want[i].clone()]);
            assert!(err < 1e-5, "{key} digit {i}: {err}");
        }
    }
    let targets: Vec<usize> = match classes(&f, "first") {
        Target::Classes(v) => v,
        _ => unreachable!(),
    };
    let m = model();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    for (name, params) in [
        ("road_morf", vec!["noise=0"]),
        ("road_lerf", vec!["noise=0"]),
        ("road", vec!["noise=0"]),
        ("confidence_drop", vec![]),
        ("confidence_increase", vec![]),
    ] {
        let metric = reg.build_metric(name, &Params::parse_pairs(&params).unwrap()).unwrap();
        let out = metric.evaluate(&lumen_core::MetricInput::new(m.as_ref(), &x, &targets, &cams)).unwrap();
        let key = match name {
            "road" => "road_combined",
            "confidence_drop" => "drop_in_confidence",
            "confidence_increase" => "increase_in_confidence",
            n => n,
        };
        let want = rows(&r[key].unsqueeze(1).unwrap());
        let scale = want.iter().flatten().fold(1f64, |a, v| a.max(v.abs()));
        for (i, (g, w)) in out.per_example.iter().zip(want.iter().flatten()).enumerate() {
            assert!((g - w).abs() < 1e-4 * scale, "{name} digit {i}: {g} vs {w}");
        }
    }
    // the noise is seeded: the same seed gives the same score, another seed another
    let noisy = reg.build_metric("road_morf", &Params::parse_pairs(&["percentiles=50"]).unwrap()).unwrap();
    let run = |seed| noisy.evaluate(&lumen_core::MetricInput::new(m.as_ref(), &x, &targets, &cams).with_seed(seed)).unwrap().per_example;
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn reproduce_gradcam_quick() {
    let dir = tmpdir("repro-gradcam");
    let out = lumen(&["reproduce", "gradcam", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["cams.png", "results.md", "results.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let js: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    // Eigen-CAM uses no class: the same map for both classes.
    assert!((js["class_map_correlation"]["eigen_cam"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(js["class_map_correlation"]["grad_cam"].as_f64().unwrap() < 0.999);
    let sanity = js["sanity_grad_cam"].as_array().unwrap();
    assert_eq!(sanity[0]["spearman"].as_f64().unwrap(), 1.0, "step 0 re-explains the trained model");
    assert!(sanity.last().unwrap()["spearman"].as_f64().unwrap() < 0.9, "randomization changes Grad-CAM");
    assert_eq!(js["faithfulness"].as_array().unwrap().len(), 11);
}

/// Grad-CAM with relu=false at the layer is Captum's LayerGradCam
/// (relu_attributions=False), at pool2 and at conv2, to 1e-9 in f64.
#[test]
fn grad_cam_is_captums_layer_grad_cam() {
    let f = fixture();
    let x = f["inputs"].clone();
    let m = model64();
    for layer in ["pool2", "conv2"] {
        let e = method("grad_cam", &[&format!("layer={layer}"), "relu=false"]).attribute(m.as_ref(), &x, &classes(&f, "first")).unwrap();
        let err = rel(&rows(e.tensor("cam").unwrap()), &rows(&f[&format!("captum_layer_grad_cam_{layer}")]));
        assert!(err < 1e-9, "{layer}: {err}");
    }
}
