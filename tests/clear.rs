//! CLEAR (issue 8) from the outside: the method on the shipped mnist-allcnn through
//! the registry and the CLI, the refusal of mnist-cnn, and `lumen reproduce clear --quick`.
//! The method's own checks (naive back-projection, constructed Ĉ/D, HSV) are unit
//! tests in plugins/clear.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::{DType, Device, Tensor, D};
use lumen_core::data::{Mnist, Split};
use lumen_core::{Params, Registry, Target};

fn registry() -> Registry {
    lumen_clear::link();
    let _ = lumen_models::models_dirs;
    Registry::from_inventory().expect("registry")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn clear_on_shipped_allcnn_is_consistent() {
    let d = Device::Cpu;
    let reg = registry();
    let model = reg.load_model("mnist-allcnn", &d).expect("mnist-allcnn is shipped");
    let (x, y) = Mnist::load().unwrap().batch(Split::Test, &[0, 150, 300, 450], &d).unwrap();
    let m = reg.build_method("clear", &Params::new().with("batch_size", 7usize)).unwrap();
    let e = m.attribute(&*model, &x, &Target::Classes(y.clone())).unwrap();
    let maps = e.tensor("class_maps").unwrap();
    assert_eq!(maps.dims(), &[4, 10, 28, 28]);
    assert_eq!(e.attribution().dims(), &[4, 1, 28, 28]);
    assert_eq!(e.tensor("clear_rgb").unwrap().dims(), &[4, 3, 28, 28]);
    // Ĉ is the argmax and D the max of the per-class maps
    let argmax = maps.argmax(1).unwrap().to_dtype(DType::F32).unwrap();
    assert_eq!(max_diff(&argmax, e.tensor("class_map").unwrap()), 0.0);
    assert_eq!(max_diff(&maps.max(1).unwrap(), e.tensor("level").unwrap()), 0.0);
    // attribution = the true class's map; the maps are not all alike
    for (i, c) in y.iter().enumerate() {
        let a = e.attribution().get(i).unwrap().squeeze(0).unwrap();
        assert!(max_diff(&a, &maps.get(i).unwrap().get(*c).unwrap()) < 1e-5);
    }
    let spread = max_diff(&maps.get(0).unwrap().get(0).unwrap(), &maps.get(0).unwrap().get(1).unwrap());
    assert!(spread > 1e-3, "class maps of different kernels differ");
    // one batch or many, same maps
    let whole = reg.build_method("clear", &Params::new()).unwrap().attribute(&*model, &x, &Target::Classes(y.clone())).unwrap();
    assert!(max_diff(whole.tensor("class_maps").unwrap(), maps) < 1e-5);
    // top_k = 3: the three largest logits, largest first; the target still explained
    let top = reg.build_method("clear", &Params::new().with("top_k", 3usize)).unwrap();
    let e3 = top.attribute(&*model, &x, &Target::Class(5)).unwrap();
    let classes = e3.tensor("classes").unwrap().to_vec2::<f32>().unwrap();
    let logits = model.forward(&x).unwrap();
    let order = logits.arg_sort_last_dim(false).unwrap().narrow(D::Minus1, 0, 3).unwrap().to_dtype(DType::F32).unwrap();
    assert_eq!(classes, order.to_vec2::<f32>().unwrap());
    let t5 = whole.tensor("class_maps").unwrap().narrow(1, 5, 1).unwrap();
    assert!(max_diff(&e3.attribution().squeeze(1).unwrap(), &t5.squeeze(1).unwrap()) < 1e-5);
}

#[test]
fn clear_from_cli_and_refusal_of_mnist_cnn() {
    let dir = tmpdir("clear-cli");
    let out = lumen(&[
        "explain", "--model", "mnist-allcnn", "--input", "mnist:test:3", "--method", "clear", "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let t = lumen_core::candle::safetensors::load(dir.join("mnist-test-3_clear.safetensors"), &Device::Cpu).unwrap();
    // the CLEAR picture itself (6× upscaled 28×28 map over the input, legend below)
    let png = image::open(dir.join("mnist-test-3_clear_rgb.png")).unwrap().to_rgb8();
    assert_eq!(png.width(), 168);
    assert!(png.height() > 168, "no legend under the map");
    for (name, dims) in [
        ("attribution", vec![1, 1, 28, 28]),
        ("class_maps", vec![1, 10, 28, 28]),
        ("class_map", vec![1, 28, 28]),
        ("level", vec![1, 28, 28]),
        ("clear_rgb", vec![1, 3, 28, 28]),
    ] {
        assert_eq!(t[name].dims(), dims.as_slice(), "{name}");
    }
    let out = lumen(&[
        "explain", "--model", "mnist-cnn", "--input", "mnist:test:3", "--method", "clear", "--out", dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one kernel per class") && err.contains("global average pooling") && err.contains("mnist-cnn"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reproduce_clear_quick() {
    let dir = tmpdir("clear-repro");
    let out = lumen(&["reproduce", "clear", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    for f in ["clear_correct.png", "clear_wrong.png", "strong_features.png", "results.md"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let js: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert!(js["full"].as_f64().unwrap() > 85.0, "{}", js["full"]);
    let sweeps = js["sweeps"].as_array().unwrap();
    assert_eq!(sweeps.len(), 2);
    for s in sweeps {
        let rows = s["rows"].as_array().unwrap();
        let kept: Vec<f64> = rows.iter().map(|r| r["pixels_kept"].as_f64().unwrap()).collect();
        assert!(kept.windows(2).all(|w| w[0] >= w[1]), "a higher threshold keeps fewer pixels: {kept:?}");
        let last = rows.last().unwrap();
        // Almost nothing removed: the image without strong features is still recognised
        // far more often than the few kept pixels alone.
        assert!(last["without"].as_f64().unwrap() > last["only"].as_f64().unwrap());
    }
    std::fs::remove_dir_all(&dir).ok();
}
