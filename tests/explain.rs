//! `lumen explain` and `lumen gallery` from the outside, on a seeded random-weight
//! model (so these tests do not depend on the shipped weights) and on the shipped one.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::Device;
use lumen_core::model::{network::init_params, ModelCard};
use std::path::{Path, PathBuf};

/// Writes a card and seeded random weights for the mnist-cnn architecture into
/// `dir`; returns the card path.
pub fn random_cnn(dir: &Path, name: &str) -> PathBuf {
    let layers = lumen_models::arch::mnist_cnn();
    let params = init_params(&layers, 3, &Device::Cpu).expect("init");
    lumen_core::io::save_safetensors(dir.join(format!("{name}.safetensors")), &params).expect("weights");
    let card = ModelCard {
        name: name.into(),
        architecture: "mnist-cnn".into(),
        input_shape: vec![1, 28, 28],
        input_range: [0.0, 1.0],
        labels: (0..10).map(|i| i.to_string()).collect(),
        weights: format!("{name}.safetensors"),
        layers,
        ..Default::default()
    };
    let path = dir.join(format!("{name}.toml"));
    card.save(&path).expect("card");
    path
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn explain_writes_map_tensors_and_sidecar() {
    let dir = tmpdir("explain");
    let card = random_cnn(&dir, "random-cnn");
    let out_dir = dir.join("out");
    let s = ok(&lumen(&[
        "explain", "--model-card", card.to_str().unwrap(), "--input", "mnist:test:3", "--method", "saliency",
        "--out", out_dir.to_str().unwrap(),
    ]));
    assert!(s.contains("true label 0") && s.contains("prediction:"), "{s}");
    // three "class probability" pairs, in decreasing order, summing to at most 1
    let top = s.lines().find(|l| l.starts_with("top-3: ")).expect("top-3 line");
    let probs: Vec<f32> =
        top["top-3: ".len()..].split(", ").map(|p| p.split(' ').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(probs.len(), 3, "{top}");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f32>() <= 1.0 + 1e-3, "{top}");

    let png = out_dir.join("mnist-test-3_saliency.png");
    let img = lumen_core::image::open(&png).expect("png").to_rgb8();
    assert!(img.width() >= 224 && img.height() > 224, "{:?}", img.dimensions());
    let t = lumen_core::candle::safetensors::load(out_dir.join("mnist-test-3_saliency.safetensors"), &Device::Cpu)
        .expect("safetensors");
    assert_eq!(t["attribution"].dims(), &[1, 1, 28, 28]);
    assert_eq!(t["input"].dims(), &[1, 1, 28, 28]);
    // The stored map is the model's input gradient for the predicted class.
    let model = lumen_core::NetworkModel::load(&card, &Device::Cpu).unwrap();
    let e = lumen_core::method::gradient(
        &model,
        &t["input"],
        &lumen_core::Target::Predicted.resolve(&model, &t["input"]).unwrap(),
        Default::default(),
    )
    .unwrap();
    let diff = (e.grad - &t["attribution"]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-6, "{diff}");
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("mnist-test-3_saliency.json")).unwrap()).unwrap();
    assert_eq!(js["method"], "saliency");
    assert_eq!(js["top3"].as_array().unwrap().len(), 3);
    assert!(js["render"]["cap"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn explain_rendering_flags_and_contrast_target() {
    let dir = tmpdir("explain-flags");
    let card = random_cnn(&dir, "random-cnn");
    // a PNG input of the right size
    let (x, _) = lumen_core::data::Mnist::load().unwrap().get(lumen_core::data::Split::Test, 250, &Device::Cpu).unwrap();
    let px: Vec<u8> = x.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| (v * 255.0).round() as u8).collect();
    let digit = dir.join("digit.png");
    lumen_core::image::GrayImage::from_raw(28, 28, px).unwrap().save(&digit).unwrap();
    let out_dir = dir.join("o");
    ok(&lumen(&[
        "explain", "--model-card", card.to_str().unwrap(), "--input", digit.to_str().unwrap(), "--target", "3-5",
        "--abs", "--times-input", "--overlay", "--percentile", "95", "--scale", "4", "--out", out_dir.to_str().unwrap(),
    ]));
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("digit_saliency.json")).unwrap()).unwrap();
    assert_eq!(js["target"]["Contrast"]["a"][0], 3);
    assert_eq!(js["render"]["absolute"], true);
    assert_eq!(js["render"]["percentile"], 95.0);
    let img = lumen_core::image::open(out_dir.join("digit_saliency.png")).unwrap().to_rgb8();
    assert!(img.width() >= 112);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gallery_writes_grid_page_and_summary() {
    let dir = tmpdir("gallery");
    let card = random_cnn(&dir, "random-cnn");
    let out_dir = dir.join("g");
    let s = ok(&lumen(&[
        "gallery", "--model-card", card.to_str().unwrap(), "--methods", "saliency", "--param", "saliency.batch_size=4",
        "--out", out_dir.to_str().unwrap(),
    ]));
    assert!(s.contains("saliency"), "{s}");
    let img = lumen_core::image::open(out_dir.join("gallery.png")).unwrap().to_rgb8();
    // ten rows of 112-px tiles, two columns
    assert!(img.height() > 10 * 112 && img.width() > 2 * 112, "{:?}", img.dimensions());
    let html = std::fs::read_to_string(out_dir.join("gallery.html")).unwrap();
    assert!(html.contains("<img src=\"gallery.png\"") && html.contains("batch_size=4") && html.contains("Legend"));
    let js: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("gallery.json")).unwrap()).unwrap();
    assert_eq!(js["labels"], serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert_eq!(js["methods"][0]["ok"], true);
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's path: the shipped model by name.
#[test]
fn explain_shipped_model_by_name() {
    let dir = tmpdir("explain-shipped");
    let s = ok(&lumen(&["explain", "--model", "mnist-cnn", "--input", "mnist:test:0", "--out", dir.to_str().unwrap()]));
    assert!(s.contains("prediction: 0"), "the shipped model should get the first test zero right: {s}");
    std::fs::remove_dir_all(&dir).ok();
}
