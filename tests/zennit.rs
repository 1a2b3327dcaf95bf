//! LRP against Zennit (issue 22): lumen's composites and single rules on the shipped
//! MNIST models against maps that Zennit 0.5 computed on the same weights and digits
//! (tests/fixtures/zennit, written by tools/zennit/make_fixtures.py).
//!
//! Zennit starts the backward pass from a one-hot output, lumen from the logit; all
//! LRP rules are linear in the relevance they receive, so the maps differ by one
//! scale per example, fitted by least squares (and checked to be the logit).

use lumen_core::candle::{Device, Tensor};
use lumen_core::model::NetworkModel;
use lumen_core::{Attributor, Classifier, Target};
use lumen_std_relevance::lrp::{Lrp, LrpConfig};
use std::collections::HashMap;

/// Fixture key -> lumen composite preset.
const PAIRS: &[(&str, &str)] = &[
    ("epsilon_gamma_box", "lrp_composite_epsilon_gamma_box"),
    ("epsilon_plus", "lrp_composite_epsilon_plus"),
    ("epsilon_plus_flat", "lrp_composite_epsilon_plus_flat"),
    ("epsilon_alpha2beta1", "lrp_composite_epsilon_alpha2beta1"),
    ("epsilon_alpha2beta1_flat", "lrp_composite_epsilon_alpha2beta1_flat"),
    ("rule_epsilon", "lrp_epsilon"),
    ("rule_gamma", "lrp_gamma"),
    ("rule_zplus", "lrp_zplus"),
    ("rule_alpha2beta1", "lrp_alpha2beta1"),
    ("rule_flat", "lrp_flat"),
    ("rule_wsquare", "lrp_wsquare"),
    ("rule_zbox", "lrp_zbox"),
];

const TOL: f64 = 1e-4;

/// z^B on every layer of mnist-allcnn is ill-conditioned: its hidden activations
/// exceed the bound h = 1, so denominators `Σ x w − l w⁺ − h w⁻` nearly cancel, and
/// Zennit's own float32 map differs from its float64 map by 8.5e-3 (measured with
/// tools/zennit/make_fixtures.py's model in float64). No composite uses z^B above the
/// first layer; this case gets the float32 noise floor instead of `TOL`, and its
/// fitted scale (which absorbs that noise: 1.3e-2 off the logit) is not checked.
const ILL_CONDITIONED: &[(&str, &str, f64)] = &[("mnist-allcnn", "rule_zbox", 1e-2)];

fn tolerance(model: &str, key: &str) -> f64 {
    ILL_CONDITIONED.iter().find(|(m, k, _)| *m == model && *k == key).map_or(TOL, |c| c.2)
}

fn fixture(model: &str) -> HashMap<String, Tensor> {
    let path = crate::util::repo_root().join("tests/fixtures/zennit").join(format!("{model}.safetensors"));
    lumen_core::candle::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let n = t.dim(0).unwrap();
    let v: Vec<f64> = t.flatten_all().unwrap().to_dtype(lumen_core::candle::DType::F64).unwrap().to_vec1().unwrap();
    v.chunks(v.len() / n).map(|c| c.to_vec()).collect()
}

/// `max |l − s z| / max |s z|` with the least-squares scale `s`, and `s`.
fn scaled_error(l: &[f64], z: &[f64]) -> (f64, f64) {
    let s = l.iter().zip(z).map(|(a, b)| a * b).sum::<f64>() / z.iter().map(|b| b * b).sum::<f64>().max(1e-300);
    let diff = l.iter().zip(z).fold(0f64, |m, (a, b)| m.max((a - s * b).abs()));
    let size = z.iter().fold(0f64, |m, b| m.max((s * b).abs()));
    (diff / size.max(1e-300), s)
}

/// Worst error per (model, fixture key) over the digits; panics with the whole table
/// when one exceeds `TOL`.
fn compare(model_name: &str, pairs: &[(&str, &str)], base: &LrpConfig) -> Vec<(String, f64, f64, f64)> {
    let fx = fixture(model_name);
    let card = lumen_models::card_path(model_name).unwrap();
    let m = NetworkModel::load(card, &Device::Cpu).unwrap();
    let x = &fx["input"];
    // The fixture's digits are lumen's test digits, and PyTorch's logits are lumen's.
    let data = lumen_core::data::Mnist::load().unwrap();
    let idx: Vec<usize> = fx["digits"].to_vec1::<i64>().unwrap().iter().map(|i| *i as usize).collect();
    let (ours, _) = data.batch(lumen_core::data::Split::Test, &idx, &Device::Cpu).unwrap();
    let dx = (ours.reshape(x.shape()).unwrap() - x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(dx, 0.0, "{model_name}: the fixture's digits are not lumen's test digits {idx:?}");
    let logits = rows(&m.forward(x).unwrap());
    for (a, b) in logits.iter().flatten().zip(rows(&fx["logits"]).iter().flatten()) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{model_name}: logits differ: {a} vs {b}");
    }
    let target: Vec<usize> = fx["target"].to_vec1::<i64>().unwrap().iter().map(|t| *t as usize).collect();
    let mut out = vec![];
    for (key, preset) in pairs {
        let lrp = Lrp::new(LrpConfig { composite: preset.to_string(), batch_size: 8, ..base.clone() });
        let e = lrp.attribute(&m, x, &Target::Classes(target.clone())).unwrap();
        let (mut worst, mut worst_s) = (0f64, 0f64);
        for (k, (l, z)) in rows(e.attribution()).iter().zip(rows(&fx[*key])).enumerate() {
            let (err, s) = scaled_error(l, &z);
            let logit = logits[k][target[k]];
            // The scale is the start relevance, the logit (a global-scale bug shows here).
            worst = worst.max(err);
            worst_s = worst_s.max((s / logit - 1.0).abs());
        }
        out.push((format!("{model_name} {key} ({preset})"), worst, worst_s, tolerance(model_name, key)));
    }
    out
}

fn check(model_name: &str) {
    let res = compare(model_name, PAIRS, &LrpConfig::default());
    let table: Vec<String> =
        res.iter().map(|(k, e, s, tol)| format!("{k}: {e:.1e} (tolerance {tol:.0e}; scale vs logit {s:.1e})")).collect();
    eprintln!("{}", table.join("\n"));
    let bad: Vec<&String> = res.iter().filter(|(_, e, s, tol)| !(*e <= *tol && (*s <= 1e-3 || *tol > TOL))).map(|(k, ..)| k).collect();
    assert!(bad.is_empty(), "worse than the tolerance against Zennit: {bad:?}\n{}", table.join("\n"));
}

#[test]
fn zennit_mnist_cnn() {
    check("mnist-cnn");
}

#[test]
fn zennit_mnist_allcnn() {
    check("mnist-allcnn");
}

/// The classic conventions (and the former stabiliser) are what told lumen's former
/// maps from Zennit's: each option alone moves its rule well off Zennit (so the
/// checks above can fail).
#[test]
fn zennit_classic_conventions_differ() {
    let classic = |f: fn(&mut LrpConfig)| {
        let mut c = LrpConfig::default();
        f(&mut c);
        c
    };
    let cases: [(&str, (&str, &str), LrpConfig); 4] = [
        ("mnist-cnn", ("rule_zplus", "lrp_zplus"), classic(|c| c.zplus_bias = false)),
        ("mnist-allcnn", ("epsilon_gamma_box", "lrp_composite_epsilon_gamma_box"), classic(|c| c.gamma_sign_aware = false)),
        ("mnist-cnn", ("rule_wsquare", "lrp_wsquare"), classic(|c| c.wsquare_bias = false)),
        // lumen's former stabiliser (the 1e-9 guard only) on αβ
        ("mnist-allcnn", ("rule_alpha2beta1", "lrp_alpha2beta1"), classic(|c| c.stabilizer = 0.0)),
    ];
    for (model, pair, cfg) in cases {
        let (k, e, ..) = compare(model, &[pair], &cfg).remove(0);
        assert!(e > 1e-3, "{k} with the classic convention is within {e:.1e} of Zennit");
    }
}
