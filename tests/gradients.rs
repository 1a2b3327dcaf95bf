//! The gradient family and the guided/deconv presets on the shipped `mnist-cnn`:
//! IG completeness, nesting the noise tunnel (Rust, registry, CLI), and batches with
//! per-example targets against single runs. Hand-derived checks on tiny nets live in
//! the packs' unit tests.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::{Attributor, Classifier, Explanation, Params, Registry, Target};
use lumen_std_gradients::{
    Aggregation, Baseline, IntegratedGradients, IntegratedGradientsConfig, NoiseTunnel, NoiseTunnelConfig, Scheme,
};
use lumen_std_propagation::ModifiedGradient;
use std::sync::Arc;

fn registry() -> Registry {
    lumen_std_gradients::link();
    lumen_std_propagation::link();
    Registry::from_inventory().expect("registry")
}

fn mnist_cnn(reg: &Registry) -> Arc<dyn Classifier> {
    reg.load_model("mnist-cnn", &Device::Cpu).expect("shipped mnist-cnn")
}

/// Test digits by index within the test split (ordered by class).
fn digits(idx: &[usize]) -> (Tensor, Vec<usize>) {
    Mnist::load().unwrap().batch(Split::Test, idx, &Device::Cpu).unwrap()
}

fn flat(e: &Explanation) -> Vec<f32> {
    e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn diag(e: &Explanation, key: &str) -> Vec<f64> {
    e.diagnostics[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn ig(scheme: Scheme, steps: usize) -> IntegratedGradients {
    IntegratedGradients::new(IntegratedGradientsConfig {
        steps,
        scheme,
        baselines: vec![Baseline::Zero],
        batch_size: 100,
        seed: 0,
    })
}

#[test]
fn ig_completeness_on_mnist_cnn() {
    let reg = registry();
    let model = mnist_cnn(&reg);
    let (x, _) = digits(&[345, 912]);
    let t = Target::Predicted;
    // Left Riemann sums: the delta shrinks as steps grow.
    let mean_abs = |s: Scheme, steps| {
        let e = ig(s, steps).attribute(model.as_ref(), &x, &t).unwrap();
        let d = diag(&e, "completeness_delta");
        let rel = diag(&e, "completeness_delta_relative");
        (d.iter().map(|v| v.abs()).sum::<f64>() / d.len() as f64, rel)
    };
    let (d10, _) = mean_abs(Scheme::RiemannLeft, 10);
    let (d40, _) = mean_abs(Scheme::RiemannLeft, 40);
    let (d160, _) = mean_abs(Scheme::RiemannLeft, 160);
    assert!(d10 > d40 && d40 > d160, "left Riemann |delta|: {d10} {d40} {d160}");
    // Trapezoid and Gauss–Legendre at 300 steps: |delta| < 1e-3 |f(x) − f(b)|.
    for s in [Scheme::Trapezoid, Scheme::GaussLegendre] {
        let (_, rel) = mean_abs(s, 300);
        assert!(rel.iter().all(|r| r.abs() < 1e-3), "{s:?}: relative deltas {rel:?}");
    }
}

#[test]
fn smoothgrad_nests_from_rust_and_from_the_registry() {
    let reg = registry();
    let model = mnist_cnn(&reg);
    let (x, _) = digits(&[0, 505]);
    let t = Target::Predicted;
    let cfg = NoiseTunnelConfig { agg: Aggregation::SmoothGrad, n: 4, sigma: 0.2, seed: 7, batch_size: 3 };
    // Over guided backprop.
    let rust = NoiseTunnel::new(Box::new(ModifiedGradient::guided_backprop(Default::default())), cfg.clone());
    let p = Params::new().with("inner", "guided_backprop").with("n", 4usize).with("sigma", 0.2).with("seed", 7usize).with("batch_size", 3usize);
    let via_reg = reg.build_method("smoothgrad", &p).unwrap();
    let a = rust.attribute(model.as_ref(), &x, &t).unwrap();
    let b = via_reg.attribute(model.as_ref(), &x, &t).unwrap();
    assert_eq!(flat(&a), flat(&b));
    // It differs from plain SmoothGrad and from guided backprop alone.
    let plain = reg.build_method("smoothgrad", &Params::new().with("n", 4usize).with("sigma", 0.2).with("seed", 7usize)).unwrap();
    assert_ne!(flat(&plain.attribute(model.as_ref(), &x, &t).unwrap()), flat(&a));
    let gb = reg.build_method("guided_backprop", &Params::new()).unwrap().attribute(model.as_ref(), &x, &t).unwrap();
    assert_ne!(flat(&gb), flat(&a));
    // Over integrated gradients, with nested parameters.
    let rust = NoiseTunnel::new(Box::new(ig(Scheme::Trapezoid, 6)), NoiseTunnelConfig { agg: Aggregation::VarGrad, ..cfg });
    let p = Params::parse_pairs(&[
        "inner=integrated_gradients", "inner.steps=6", "inner.scheme=trapezoid", "inner.batch_size=100",
        "agg=vargrad", "n=4", "sigma=0.2", "seed=7", "batch_size=3",
    ])
    .unwrap();
    let via_reg = reg.build_method("smoothgrad", &p).unwrap();
    let b = via_reg.attribute(model.as_ref(), &x, &t).unwrap();
    assert_eq!(flat(&rust.attribute(model.as_ref(), &x, &t).unwrap()), flat(&b));
    assert_eq!(b.params["inner"], "integrated_gradients");
    assert_eq!(b.params["inner.steps"], "6");
    assert_eq!(b.params["agg"], "vargrad");
    // Mistakes in nested parameters name the parameter.
    let e = reg.build_method("smoothgrad", &Params::parse_pairs(&["inner=integrated_gradients", "inner.stepz=3"]).unwrap());
    let e = e.err().expect("unknown nested parameter").to_string();
    assert!(e.contains("stepz") && e.contains("integrated_gradients"), "{e}");
    let e = reg.build_method("smoothgrad", &Params::parse_pairs(&["inner=nope"]).unwrap()).err().unwrap().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn smoothgrad_nests_from_the_cli() {
    let dir = tmpdir("smoothgrad-cli");
    for (inner, extra) in [("guided_backprop", "inner.batch_size=8"), ("integrated_gradients", "inner.steps=5")] {
        let out = lumen(&[
            "explain", "--model", "mnist-cnn", "--input", "mnist:test:3", "--method", "smoothgrad", "--param",
            &format!("inner={inner}"), "--param", extra, "--param", "n=3", "--param", "seed=5", "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{inner}: {}", String::from_utf8_lossy(&out.stderr));
        let js: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("mnist-test-3_smoothgrad.json")).unwrap()).unwrap();
        assert_eq!(js["params"]["inner"], inner, "{js}");
        let (k, v) = extra.split_once('=').unwrap();
        assert_eq!(js["params"][k], v, "{js}");
        // The stored map is the one the registry computes in-process.
        let st = lumen_core::candle::safetensors::load(dir.join("mnist-test-3_smoothgrad.safetensors"), &Device::Cpu)
            .unwrap();
        let reg = registry();
        let p = Params::new().with("inner", inner).with("n", 3usize).with("seed", 5usize).with(k, v);
        let e = reg.build_method("smoothgrad", &p).unwrap().attribute(mnist_cnn(&reg).as_ref(), &st["input"], &Target::Predicted).unwrap();
        let want = flat(&e);
        let got = st["attribution"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-5 * scale), "{inner}");
    }
    let out = lumen(&["list"]);
    let s = String::from_utf8_lossy(&out.stdout);
    for m in ["input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop", "deconvnet"] {
        assert!(s.contains(m), "{m} missing from lumen list");
    }
}

#[test]
fn batches_with_per_example_targets_equal_single_runs_on_mnist_cnn() {
    let reg = registry();
    let model = mnist_cnn(&reg);
    let (x, labels) = digits(&[12, 230, 671]);
    let classes = vec![labels[0], 5, labels[2]];
    let contrast = Target::Contrast { a: labels.clone(), b: vec![8, 8, 1] };
    let methods: Vec<(&str, Params)> = vec![
        ("saliency", Params::new().with("batch_size", 2usize)),
        ("input_x_gradient", Params::new().with("batch_size", 2usize)),
        ("integrated_gradients", Params::parse_pairs(&["steps=8", "baseline=zero,uniform,blur", "batch_size=5"]).unwrap()),
        ("guided_backprop", Params::new().with("batch_size", 2usize)),
        ("deconvnet", Params::new()),
        ("smoothgrad", Params::parse_pairs(&["n=3", "inner=integrated_gradients", "inner.steps=4", "batch_size=4"]).unwrap()),
    ];
    for (name, p) in methods {
        let m = reg.build_method(name, &p).unwrap();
        for target in [Target::Classes(classes.clone()), contrast.clone()] {
            let all = flat(&m.attribute(model.as_ref(), &x, &target).unwrap());
            let scale = all.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{name}: empty map");
            for i in 0..3 {
                let xi = x.narrow(0, i, 1).unwrap();
                let one = flat(&m.attribute(model.as_ref(), &xi, &target.select(i..i + 1)).unwrap());
                let part = &all[i * 784..(i + 1) * 784];
                let worst = part.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{name} {target:?} example {i}: differs by {worst} (scale {scale})");
            }
        }
    }
}

#[test]
fn guided_and_deconv_differ_from_the_gradient_on_mnist_cnn() {
    let reg = registry();
    let model = mnist_cnn(&reg);
    let (x, _) = digits(&[450]);
    let t = Target::Predicted;
    let run = |n: &str| flat(&reg.build_method(n, &Params::new()).unwrap().attribute(model.as_ref(), &x, &t).unwrap());
    let (sal, gb, dc) = (run("saliency"), run("guided_backprop"), run("deconvnet"));
    assert_ne!(sal, gb);
    assert_ne!(gb, dc);
    assert!(gb.iter().any(|v| *v != 0.0) && dc.iter().any(|v| *v != 0.0));
}

#[test]
fn reproduce_smoothgrad_quick() {
    let dir = tmpdir("repro-smoothgrad");
    let out = lumen(&["reproduce", "smoothgrad", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["sigma_sweep.png", "n_sweep.png", "combined.png", "results.md", "results.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let js: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let acc = js["accuracy"]["mnist-cnn"].as_f64().unwrap();
    assert!(acc > 0.9, "{js}");
}
