//! Bad input never panics: each case is a one-line `error: ...` naming the problem.

use crate::explain::random_cnn;
use crate::util::{lumen, lumen_bin, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// Asserts failure with exactly one stderr line that starts with `error: ` and
/// contains every one of `needles`.
pub(crate) fn one_line_error(out: &Output, needles: &[&str]) -> String {
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    for n in needles {
        assert!(e.contains(n), "'{n}' missing from: {e}");
    }
    e
}

fn explain(card: &Path, input: &str, extra: &[&str]) -> Output {
    let out = card.parent().unwrap().join("out");
    let mut args = vec!["explain", "--model-card", card.to_str().unwrap(), "--input", input, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    // Candle errors carry a backtrace when this is set; the binary must still print one line.
    std::process::Command::new(lumen_bin()).args(&args).env("RUST_BACKTRACE", "1").output().expect("run lumen")
}

#[test]
fn missing_input_file() {
    let dir = tmpdir("bad-missing");
    let card = random_cnn(&dir, "m");
    let missing = dir.join("nope.png");
    one_line_error(&explain(&card, missing.to_str().unwrap(), &[]), &["nope.png", "not found"]);
    one_line_error(&lumen(&["explain", "--model-card", "/no/such/card.toml", "--input", "mnist:test:0"]), &["card.toml"]);
}

#[test]
fn image_of_wrong_size_or_channels() {
    let dir = tmpdir("bad-image");
    let card = random_cnn(&dir, "m");
    let small = dir.join("small.png");
    lumen_core::image::GrayImage::new(20, 20).save(&small).unwrap();
    one_line_error(&explain(&card, small.to_str().unwrap(), &[]), &["small.png", "expected [batch, 1, 28, 28]", "[1, 1, 20, 20]"]);
    let rgb = dir.join("rgb.png");
    lumen_core::image::RgbImage::new(28, 28).save(&rgb).unwrap();
    one_line_error(&explain(&card, rgb.to_str().unwrap(), &[]), &["expected [batch, 1, 28, 28]", "[1, 3, 28, 28]"]);
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"not a png at all").unwrap();
    one_line_error(&explain(&card, junk.to_str().unwrap(), &[]), &["junk.png"]);
}

#[test]
fn unknown_model_method_parameter_and_wrong_type() {
    one_line_error(&lumen(&["explain", "--model", "nope", "--input", "mnist:test:0"]), &["unknown model 'nope'", "mnist-cnn"]);
    one_line_error(
        &lumen(&["explain", "--method", "nope", "--input", "mnist:test:0"]),
        &["unknown method 'nope'", "saliency"],
    );
    one_line_error(
        &lumen(&["explain", "--param", "stepz=3", "--input", "mnist:test:0"]),
        &["unknown parameter 'stepz'", "batch_size"],
    );
    one_line_error(&lumen(&["explain", "--param", "batch_size=ten", "--input", "mnist:test:0"]), &["'batch_size'", "integer"]);
    one_line_error(&lumen(&["explain", "--param", "batch_size", "--input", "mnist:test:0"]), &["name=value"]);
    one_line_error(&lumen(&["explain", "--target", "seven", "--input", "mnist:test:0"]), &["bad target", "seven"]);
    one_line_error(&lumen(&["gallery", "--methods", "saliency,nope"]), &["unknown method 'nope'"]);
    one_line_error(&lumen(&["gallery", "--methods", "saliency", "--param", "n=3"]), &["METHOD.NAME"]);
}

fn weights_case(name: &str, write: impl FnOnce(&Path)) -> (std::path::PathBuf, Output) {
    let dir = tmpdir(name);
    let card = random_cnn(&dir, "m");
    write(&dir.join("m.safetensors"));
    let out = explain(&card, "mnist:test:0", &[]);
    (dir, out)
}

#[test]
fn truncated_or_corrupt_safetensors() {
    let (_, out) = weights_case("bad-trunc", |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    });
    one_line_error(&out, &["m.safetensors", "not a valid safetensors"]);
    let (_, out) = weights_case("bad-corrupt", |p| std::fs::write(p, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap());
    one_line_error(&out, &["m.safetensors", "not a valid safetensors"]);
    let (_, out) = weights_case("bad-gone", |p| std::fs::remove_file(p).unwrap());
    one_line_error(&out, &["m.safetensors", "not found"]);
}

#[test]
fn weight_shape_disagrees_with_architecture() {
    let (_, out) = weights_case("bad-shape", |p| {
        let mut t: HashMap<String, Tensor> =
            lumen_core::candle::safetensors::load(p, &Device::Cpu).unwrap().into_iter().collect();
        t.insert("conv1.weight".into(), Tensor::zeros((32, 1, 3, 3), DType::F32, &Device::Cpu).unwrap());
        lumen_core::io::save_safetensors(p, &t).unwrap();
    });
    one_line_error(&out, &["m.safetensors", "conv1.weight", "shape"]);
    let (_, out) = weights_case("bad-missing-weight", |p| {
        let mut t = lumen_core::candle::safetensors::load(p, &Device::Cpu).unwrap();
        t.remove("fc2.bias");
        lumen_core::io::save_safetensors(p, &t).unwrap();
    });
    one_line_error(&out, &["fc2.bias"]);
}

/// The documented override route: NAME.toml in LUMEN_MODELS_DIR replaces the shipped card.
#[test]
fn broken_weights_through_lumen_models_dir() {
    let dir = tmpdir("bad-models-dir");
    random_cnn(&dir, "mnist-cnn");
    std::fs::write(dir.join("mnist-cnn.safetensors"), b"short").unwrap();
    let out = std::process::Command::new(lumen_bin())
        .args(["explain", "--model", "mnist-cnn", "--input", "mnist:test:0", "--out"])
        .arg(dir.join("out"))
        .env("LUMEN_MODELS_DIR", &dir)
        .output()
        .unwrap();
    one_line_error(&out, &["mnist-cnn.safetensors", "not a valid safetensors"]);
}

#[test]
fn mnist_index_out_of_range() {
    let dir = tmpdir("bad-index");
    let card = random_cnn(&dir, "m");
    one_line_error(&explain(&card, "mnist:test:99999", &[]), &["mnist:test:99999", "out of range", "1000"]);
    one_line_error(&explain(&card, "mnist:valid:3", &[]), &["unknown split 'valid'"]);
}

#[test]
fn bad_rendering_flags() {
    let dir = tmpdir("bad-render");
    let card = random_cnn(&dir, "m");
    one_line_error(&explain(&card, "mnist:test:0", &["--percentile", "150"]), &["--percentile"]);
    one_line_error(&explain(&card, "mnist:test:0", &["--reduce", "median"]), &["median", "max-abs"]);
    one_line_error(&explain(&card, "mnist:test:0", &["--show", "class_map"]), &["class_map", "attribution"]);
}
