//! The model-agnostic pack on the shipped `mnist-cnn`, against committed Captum
//! outputs (tests/fixtures/captum_shapley, written by
//! tools/captum/make_shapley_fixtures.py) and against its own exact values.

use crate::util::{lumen, repo_root, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::{Attributor, Classifier, Explanation, Params, Target};
use std::collections::HashMap;
use std::sync::Arc;

fn fixture() -> HashMap<String, Tensor> {
    let p = repo_root().join("tests/fixtures/captum_shapley/mnist-cnn.safetensors");
    lumen_core::candle::safetensors::load(&p, &Device::Cpu).expect("captum_shapley fixture")
}

fn model() -> Arc<dyn Classifier> {
    lumen_models::load_shipped("mnist-cnn", &Device::Cpu).expect("shipped mnist-cnn")
}

fn method(name: &str, params: &[&str]) -> Box<dyn Attributor> {
    lumen_std_shapley::link();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    reg.build_method(name, &Params::parse_pairs(params).unwrap()).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.flatten_from(1).unwrap().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

/// Per-feature values of an explanation.
fn values(e: &Explanation) -> Vec<Vec<f64>> {
    serde_json::from_value(e.diagnostics["feature_values"].clone()).unwrap()
}

/// The largest |a − b| of each example, over the largest |b|.
fn scaled_errors(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
            a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
        })
        .collect()
}

fn inputs_and_targets(f: &HashMap<String, Tensor>) -> (Tensor, Target) {
    let x = f["inputs"].to_dtype(DType::F32).unwrap();
    let t: Vec<usize> = f["targets"].to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap().iter().map(|v| *v as usize).collect();
    (x, Target::Classes(t))
}

/// FeatureAblation and exact Shapley values agree with Captum to 1e-4 of the map's
/// scale; the stripes come from the committed `.png` mask (mask=file).
#[test]
fn captum_feature_ablation_and_exact_shapley() {
    let f = fixture();
    let (x, t) = inputs_and_targets(&f);
    let m = model();
    let fa = method("feature_ablation", &["mask=grid", "cell=7"]).attribute(m.as_ref(), &x, &t).unwrap();
    let err = scaled_errors(&rows(fa.attribution()), &rows(&f["feature_ablation_grid7"]));
    assert!(err.iter().all(|e| *e < 1e-4), "feature_ablation vs Captum: {err:?}");
    let png = repo_root().join("tests/fixtures/captum_shapley/stripes7.png");
    let mask = format!("mask_file={}", png.display());
    let sv = method("shapley_exact", &["mask=file", &mask]).attribute(m.as_ref(), &x, &t).unwrap();
    let err = scaled_errors(&rows(sv.attribution()), &rows(&f["shapley_values_stripes7"]));
    assert!(err.iter().all(|e| *e < 1e-4), "shapley_exact (stripes) vs Captum ShapleyValues: {err:?}");
    // The same mask as a safetensors file.
    let st = repo_root().join("tests/fixtures/captum_shapley/stripes7.safetensors");
    let sv2 = method("shapley_exact", &[&format!("mask_file={}", st.display())]).attribute(m.as_ref(), &x, &t).unwrap();
    assert_eq!(rows(sv.attribution()), rows(sv2.attribution()));
}

/// Exact Shapley on 16 grid features: efficiency to 1e-5, the independent subset
/// enumeration of the fixture to 1e-4; sampling with S = 2,000 within three
/// standard errors for ≥ 95% of the features; KernelSHAP with 4,096 samples within
/// 1e-2 of exact (relative to the largest value), as Captum's KernelShap is.
#[test]
fn grid16_exact_sampled_and_kernel() {
    let f = fixture();
    let (x, t) = inputs_and_targets(&f);
    let m = model();
    let exact = method("shapley_exact", &["mask=grid", "cell=7"]).attribute(m.as_ref(), &x, &t).unwrap();
    let gaps: Vec<f64> = serde_json::from_value(exact.diagnostics["efficiency_gap"].clone()).unwrap();
    assert!(gaps.iter().all(|g| g.abs() < 1e-5), "efficiency: {gaps:?}");
    let ex = values(&exact);
    let err = scaled_errors(&rows(exact.attribution()), &rows(&f["shapley_exact_grid7"]));
    assert!(err.iter().all(|e| *e < 1e-4), "shapley_exact vs the naive enumeration: {err:?}");

    let ks = method("kernel_shap", &["mask=grid", "cell=7", "samples=4096", "seed=1"]).attribute(m.as_ref(), &x, &t).unwrap();
    let err = scaled_errors(&values(&ks), &ex);
    assert!(err.iter().all(|e| *e < 1e-2), "kernel_shap (4096) vs exact: {err:?}");
    // Captum's KernelShap with the same budget, against the same exact values: lumen's
    // error is no worse than twice Captum's (statistical, not elementwise).
    let captum = scaled_errors(&rows(&f["kernel_shap_grid7"]), &rows(exact.attribution()));
    let ours = scaled_errors(&rows(ks.attribution()), &rows(exact.attribution()));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&ours) <= 2.0 * mean(&captum) + 1e-3, "lumen {ours:?} vs Captum {captum:?}");

    // Sampling on two digits (the others add time, not evidence).
    let two = x.narrow(0, 0, 2).unwrap();
    let s = method("shapley_sampling", &["mask=grid", "cell=7", "samples=2000"]).attribute(m.as_ref(), &two, &t.select(0..2)).unwrap();
    let se: Vec<Vec<f64>> = serde_json::from_value(s.diagnostics["std_err"].clone()).unwrap();
    let sv = values(&s);
    let (mut inside, mut all, mut misses) = (0, 0, vec![]);
    for e in 0..2 {
        // Blank cells (input = baseline) contribute nothing: their standard error is 0
        // and only float32 rounding separates the two estimates, hence the floor.
        let floor = 1e-5 * ex[e].iter().fold(0f64, |m, v| m.max(v.abs()));
        for i in 0..16 {
            let ok = (sv[e][i] - ex[e][i]).abs() <= 3.0 * se[e][i] + floor;
            inside += ok as usize;
            all += 1;
            if !ok {
                misses.push((e, i, sv[e][i], ex[e][i], se[e][i]));
            }
        }
    }
    assert!(inside as f64 >= 0.95 * all as f64, "{inside}/{all} within 3 standard errors; misses {misses:?}");
}

/// SLIC masks on a digit: about the requested number of segments, and Partition
/// SHAP and LIME run on them with their diagnostics.
#[test]
fn slic_masks_partition_shap_and_lime_on_a_digit() {
    let f = fixture();
    let (x, t) = inputs_and_targets(&f);
    let (x, t) = (x.narrow(0, 0, 1).unwrap(), t.select(0..1));
    let m = model();
    let p = method("partition_shap", &["mask=slic", "segments=30"]).attribute(m.as_ref(), &x, &t).unwrap();
    let n: Vec<usize> = serde_json::from_value(p.diagnostics["features"].clone()).unwrap();
    assert!((15..=60).contains(&n[0]), "{n:?} segments");
    let gaps: Vec<f64> = serde_json::from_value(p.diagnostics["efficiency_gap"].clone()).unwrap();
    assert!(gaps[0].abs() < 1e-4, "{gaps:?}");
    let l = method("lime", &["mask=slic", "segments=30", "samples=500"]).attribute(m.as_ref(), &x, &t).unwrap();
    let r2: Vec<f64> = serde_json::from_value(l.diagnostics["surrogate_r2"].clone()).unwrap();
    assert!(r2[0] > 0.0 && r2[0] <= 1.0, "{r2:?}");
    assert_eq!(l.tensor("mask").unwrap().dims(), x.dims());
}

/// Through the CLI: bad masks, too many features for exact Shapley and a bad
/// tolerance are one-line errors; a good run writes its map.
#[test]
fn cli_errors_and_a_run() {
    let d = tmpdir("shapley-cli");
    let out = d.join("out");
    let run = |extra: &[&str]| {
        let mut a = vec!["explain", "--input", "mnist:test:0", "--out", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        lumen(&a)
    };
    let one_line = |o: &std::process::Output, needle: &str| {
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{e}");
        let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() == 1 && lines[0].starts_with("error: ") && e.contains(needle), "{e}");
    };
    one_line(&run(&["--method", "shapley_exact", "--param", "cell=2"]), "shapley_sampling or kernel_shap");
    one_line(&run(&["--method", "shapley_sampling", "--param", "tolerance=0"]), "tolerance");
    one_line(&run(&["--method", "kernel_shap", "--param", "mask=hexagons"]), "grid, slic, file, segments");
    let bad = d.join("mask.safetensors");
    let t = Tensor::zeros((5, 5), DType::I64, &Device::Cpu).unwrap();
    t.save_safetensors("mask", &bad).unwrap();
    one_line(&run(&["--method", "feature_ablation", "--param", &format!("mask_file={}", bad.display())]), "feature mask");
    let ok = run(&["--method", "feature_ablation"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(std::fs::read_dir(&out).unwrap().count() > 0);
}
