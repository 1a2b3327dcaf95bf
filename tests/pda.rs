//! PDA and occlusion through the host: test 6 of issue 7 (hidden units on
//! `mnist-cnn` conv2), the registry path, and `lumen reproduce pda --quick`.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::model::{ForwardOptions, Taps};
use lumen_core::{Attributor, Classifier, Params, Target};
use lumen_std_perturbation::{ConditionalGaussian, GaussianConfig, Marginal, Pda, PdaConfig};
use std::sync::Arc;

fn model() -> Arc<dyn Classifier> {
    lumen_models::load_shipped("mnist-cnn", &Device::Cpu).expect("shipped mnist-cnn")
}

/// conv2 channel `ch` of one image: its feature-map mean, or the unit at (i, j).
fn conv2(model: &dyn Classifier, x: &Tensor, ch: usize, pos: Option<(usize, usize)>) -> f64 {
    let opts = ForwardOptions { taps: Taps::Names(vec!["conv2".into()]), ..Default::default() };
    let h = model.forward_with(x, &opts).unwrap().tap("conv2").unwrap().get(0).unwrap().get(ch).unwrap();
    let h = h.to_dtype(DType::F64).unwrap();
    match pos {
        None => h.mean_all().unwrap().to_scalar::<f64>().unwrap(),
        Some((i, j)) => h.get(i).unwrap().get(j).unwrap().to_scalar::<f64>().unwrap(),
    }
}

/// Test 6, feature-map mean: with a one-image (all-zero) marginal sampler every
/// sample is the zeroed window, so each window's activation difference can be
/// computed naively, one forward pass per window. Windows of 4 with stride 4 do
/// not overlap, so each pixel's relevance is its window's difference.
#[test]
fn hidden_feature_map_mean_on_conv2_matches_naive_differences() {
    let m = model();
    let (x, _) = Mnist::load().unwrap().batch(Split::Test, &[3], &Device::Cpu).unwrap();
    let zeros = Arc::new(Marginal::fit(&Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap()).unwrap());
    let ch = 5;
    let target = Target::Hidden { layer: "conv2".into(), channel: ch, position: None };
    let cfg = PdaConfig { window: 4, stride: 4, samples: 2, ..Default::default() };
    let e = Pda::new(cfg, zeros).attribute(m.as_ref(), &x, &target).unwrap();
    assert!(e.tensors.get("class_maps").is_none());
    let r = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let g0 = conv2(m.as_ref(), &x, ch, None);
    let img = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut nonzero = 0;
    for wy in (0..28).step_by(4) {
        for wx in (0..28).step_by(4) {
            let mut v = img.clone();
            for y in wy..wy + 4 {
                for xx in wx..wx + 4 {
                    v[y * 28 + xx] = 0.0;
                }
            }
            let xp = Tensor::from_vec(v, (1, 1, 28, 28), &Device::Cpu).unwrap();
            let ad = g0 - conv2(m.as_ref(), &xp, ch, None);
            if ad.abs() > 1e-4 {
                nonzero += 1;
            }
            for y in wy..wy + 4 {
                for xx in wx..wx + 4 {
                    let got = r[y * 28 + xx] as f64;
                    assert!((got - ad).abs() < 1e-4 * (1.0 + ad.abs()), "window ({wy},{wx}): {got} vs naive {ad}");
                }
            }
        }
    }
    assert!(nonzero > 3, "the digit's windows change the feature map");
}

/// Test 6, single unit: relevance for conv2 unit (7, 7) is zero outside its
/// receptive field (input rows/cols 8..=21: conv1 5×5 pad 2, pool 2, conv2 5×5 pad
/// 2), and non-zero inside, with the conditional sampler.
#[test]
fn hidden_unit_on_conv2_stays_in_its_receptive_field() {
    let m = model();
    let data = Mnist::load().unwrap();
    let (x, _) = data.batch(Split::Test, &[250], &Device::Cpu).unwrap();
    let (train, _) = data.all(Split::Train, &Device::Cpu).unwrap();
    let cfg = GaussianConfig { patches: 5000, patch: 6, ..Default::default() };
    let g = Arc::new(ConditionalGaussian::fit(cfg, &train).unwrap());
    // Pick the most active channel at (7, 7), so the unit is not a dead ReLU input.
    let ch = (0..64).max_by(|&a, &b| conv2(m.as_ref(), &x, a, Some((7, 7))).total_cmp(&conv2(m.as_ref(), &x, b, Some((7, 7))))).unwrap();
    let target = Target::Hidden { layer: "conv2".into(), channel: ch, position: Some(vec![7, 7]) };
    let k = 2;
    let pcfg = PdaConfig { window: k, samples: 4, seed: 3, ..Default::default() };
    let e = Pda::new(pcfg, g).attribute(m.as_ref(), &x, &target).unwrap();
    let r = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rf = 8..=21usize;
    // A pixel is touched by a window overlapping the field iff it lies within k − 1 of it.
    let near = |p: usize| p + k > *rf.start() && p < *rf.end() + k;
    let mut inside = 0;
    for y in 0..28 {
        for xx in 0..28 {
            let v = r[y * 28 + xx].abs();
            if !(near(y) && near(xx)) {
                assert!(v < 1e-5, "({y},{xx}) outside the receptive field: {v}");
            } else if v > 1e-3 {
                inside += 1;
            }
        }
    }
    assert!(inside > 20, "only {inside} relevant pixels inside the field");
}

/// The registry path: `pda` and `occlusion` build from parameters, samplers are
/// listed, and a fitted sampler file is written once and then loaded.
#[test]
fn pda_and_occlusion_through_the_registry() {
    lumen_std_perturbation::link();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    let m = model();
    let (x, _) = Mnist::load().unwrap().batch(Split::Test, &[500], &Device::Cpu).unwrap();
    let dir = tmpdir("pda-registry");
    let file = dir.join("gauss.safetensors");
    let params = Params::new()
        .with("window", 4usize)
        .with("stride", 4usize)
        .with("samples", 2usize)
        .with("classes", "top3")
        .with("sampler.patches", 2000usize)
        .with("sampler_file", file.to_string_lossy().to_string());
    let a = reg.build_method("pda", &params).unwrap().attribute(m.as_ref(), &x, &Target::Predicted).unwrap();
    assert!(file.exists());
    let b = reg.build_method("pda", &params).unwrap().attribute(m.as_ref(), &x, &Target::Predicted).unwrap();
    let (va, vb) = (a.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert!(va.iter().zip(&vb).all(|(p, q)| (p - q).abs() < 1e-4), "a loaded sampler gives the fitted one's map");
    assert_eq!(a.tensor("class_maps").unwrap().dims(), &[1, 3, 28, 28]);
    assert_eq!(a.attribution().dims(), &[1, 1, 28, 28]);
    let e = reg.build_method("pda", &Params::new().with("classes", "most")).err().unwrap().to_string();
    assert!(e.contains("classes"), "{e}");
    let o = reg
        .build_method("occlusion", &Params::new().with("window", "4,4").with("strides", "2"))
        .unwrap()
        .attribute(m.as_ref(), &x, &Target::Predicted)
        .unwrap();
    assert_eq!(o.attribution().dims(), &[1, 1, 28, 28]);
    assert!(reg.samplers().any(|(s, _)| s.name == "marginal") && reg.samplers().any(|(s, _)| s.name == "conditional_gaussian"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reproduce_pda_quick_writes_figures() {
    let dir = tmpdir("pda-reproduce");
    let out = lumen(&["reproduce", "pda", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["conditional_vs_marginal.png", "window_sweep.png", "top5_masks.png", "softmax_vs_logits.png", "results.md", "results.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("Window-size sweep") && md.contains("| 2 |"), "{md}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The model without its network, so occlusion and PDA take the plain path (one
/// full forward pass per window).
struct Opaque(Arc<dyn Classifier>);

impl Classifier for Opaque {
    fn info(&self) -> &lumen_core::model::ModelInfo {
        self.0.info()
    }
    fn device(&self) -> &Device {
        self.0.device()
    }
    fn forward(&self, xs: &Tensor) -> lumen_core::Result<Tensor> {
        self.0.forward(xs)
    }
}

/// max |a − b| ≤ 1e-5 · max |b|.
fn close_rel(a: &Tensor, b: &Tensor, what: &str) {
    let a = a.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    let b = b.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: an all-zero map proves nothing");
    let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff <= 1e-5 * scale, "{what}: max diff {diff} vs scale {scale}");
}

/// Incremental occlusion and PDA (first layers recomputed only where a window
/// reaches) equal the plain path on every shipped image model, with windows and
/// strides that hit the borders unevenly.
#[test]
fn incremental_windows_equal_full_forward_on_shipped_models() {
    let (x, _) = Mnist::load().unwrap().batch(Split::Test, &[3, 150, 700], &Device::Cpu).unwrap();
    let zeros = Arc::new(Marginal::fit(&x).unwrap());
    for name in ["mnist-cnn", "mnist-allcnn", "mnist-cnn-noise", "mnist-cnn-biased"] {
        let m = lumen_models::load_shipped(name, &Device::Cpu).unwrap();
        assert!(m.network().is_some());
        let plain = Opaque(m.clone());
        for (k, s) in [(4usize, 3usize), (5, 2), (3, 7)] {
            let cfg = lumen_std_perturbation::OcclusionConfig {
                window: (k, k + 1),
                strides: (s, s),
                baseline: 0.3,
                ..Default::default()
            };
            let occ = lumen_std_perturbation::Occlusion::new(cfg);
            let a = occ.attribute(m.as_ref(), &x, &Target::Predicted).unwrap().attribution().clone();
            let b = occ.attribute(&plain, &x, &Target::Predicted).unwrap().attribution().clone();
            close_rel(&a, &b, &format!("{name} occlusion {k}×{} stride {s}", k + 1));
        }
        let cfg = PdaConfig {
            window: 4,
            stride: 3,
            samples: 3,
            num_train: 4000,
            classes: lumen_std_perturbation::ClassSet::All,
            ..Default::default()
        };
        let pda = Pda::new(cfg, zeros.clone());
        let a = pda.attribute(m.as_ref(), &x, &Target::Predicted).unwrap();
        let b = pda.attribute(&plain, &x, &Target::Predicted).unwrap();
        close_rel(a.attribution(), b.attribution(), &format!("{name} pda"));
        close_rel(&a.tensors["class_maps"], &b.tensors["class_maps"], &format!("{name} pda class maps"));
    }
}
