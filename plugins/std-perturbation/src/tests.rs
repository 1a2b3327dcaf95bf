//! Tests 1, 2, 4 and 5 of the issue (3 is in `windows`), plus occlusion on a linear
//! model. Test 6 (hidden units on `mnist-cnn`) is in the integration suite.

use crate::gaussian::{patch_span, ConditionalGaussian, GaussianConfig};
use crate::marginal::Marginal;
use crate::occlusion::{Occlusion, OcclusionConfig};
use crate::pda::{log2_odds_laplace, ClassSet, Pda, PdaConfig, PdaOutput};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use lumen_core::sampler::{HostImage, Sampler, Window};
use lumen_core::{Attributor, Target};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

const D: Device = Device::Cpu;

/// A stationary covariance over pixel offsets (squared exponential plus noise).
fn kern(dy: usize, dx: usize) -> f64 {
    let d2 = (dy * dy + dx * dx) as f64;
    0.04 * (-d2 / 4.0).exp() + if d2 == 0.0 { 0.01 } else { 0.0 }
}

/// A model with moments given by `kern` over `p × p` patches, mean `mu`.
fn synthetic(p: usize, padding: usize, mu: f64, ridge: f64) -> ConditionalGaussian {
    let n = p * p;
    let cov = DMatrix::from_fn(n, n, |i, j| kern((i / p).abs_diff(j / p), (i % p).abs_diff(j % p)));
    let mean = DVector::from_element(n, mu);
    let cfg = GaussianConfig { padding, patch: p, ridge, ..Default::default() };
    ConditionalGaussian::from_moments(cfg, p, 1, vec![mean], vec![cov], (-1e3, 1e3)).unwrap()
}

/// Closed-form conditional of the window given the patch pixels `b`, all in image
/// coordinates, with an explicit inverse (fine in a test, never in the sampler).
fn closed_form(img: &[f32], w: usize, win: &Window, b: &[(usize, usize)], mu: f64) -> (Vec<f64>, DMatrix<f64>) {
    let a: Vec<(usize, usize)> =
        (win.y..win.y + win.h).flat_map(|y| (win.x..win.x + win.w).map(move |x| (y, x))).collect();
    let c = |s: &[(usize, usize)], t: &[(usize, usize)]| {
        DMatrix::from_fn(s.len(), t.len(), |i, j| kern(s[i].0.abs_diff(t[j].0), s[i].1.abs_diff(t[j].1)))
    };
    let s_bb_inv = c(b, b).try_inverse().unwrap();
    let s_ab = c(&a, b);
    let xb = DVector::from_iterator(b.len(), b.iter().map(|&(y, x)| img[y * w + x] as f64 - mu));
    let m = DVector::from_element(a.len(), mu) + &s_ab * &s_bb_inv * xb;
    let cov = c(&a, &a) - &s_ab * &s_bb_inv * s_ab.transpose();
    (m.iter().copied().collect(), cov)
}

/// Test 1: conditional mean and covariance match the closed form, and 10,000
/// samples have those moments.
#[test]
fn conditional_gaussian_matches_closed_form_and_sample_moments() {
    let g = synthetic(6, 2, 0.3, 0.0);
    let (h, w) = (8, 8);
    let mut rng = StdRng::seed_from_u64(3);
    let img: Vec<f32> = (0..h * w).map(|_| rng.gen_range(0.0..1.0)).collect();
    let hi = HostImage::new(&img, 1, h, w).unwrap();
    let win = Window { y: 3, x: 2, h: 2, w: 2 };
    // The patch is rows 1..7, cols 0..6 (centred in y, clamped at the left border).
    let b: Vec<(usize, usize)> = (1..7)
        .flat_map(|y| (0..6).map(move |x| (y, x)))
        .filter(|&(y, x)| !((3..5).contains(&y) && (2..4).contains(&x)))
        .collect();
    let (m_ref, c_ref) = closed_form(&img, w, &win, &b, 0.3);
    let (m, covs) = g.conditional_moments(&hi, &win).unwrap();
    for i in 0..4 {
        assert!((m[i] - m_ref[i]).abs() < 1e-9, "mean {i}: {} vs {}", m[i], m_ref[i]);
        for j in 0..4 {
            assert!((covs[0][(i, j)] - c_ref[(i, j)]).abs() < 1e-9, "cov {i},{j}");
        }
    }
    // Empirical moments of 10,000 samples.
    let n = 10_000;
    let mut out = vec![];
    g.sample_windows(&hi, &[win], n, &mut StdRng::seed_from_u64(9), &mut out).unwrap();
    assert_eq!(out.len(), n * 4);
    let emp_mean: Vec<f64> = (0..4).map(|i| out.iter().skip(i).step_by(4).map(|v| *v as f64).sum::<f64>() / n as f64).collect();
    for i in 0..4 {
        let se = (c_ref[(i, i)] / n as f64).sqrt();
        assert!((emp_mean[i] - m_ref[i]).abs() < 5.0 * se, "sample mean {i}: {} vs {}", emp_mean[i], m_ref[i]);
    }
    for i in 0..4 {
        for j in 0..4 {
            let e = out
                .chunks(4)
                .map(|s| (s[i] as f64 - emp_mean[i]) * (s[j] as f64 - emp_mean[j]))
                .sum::<f64>()
                / (n as f64 - 1.0);
            let scale = (c_ref[(i, i)] * c_ref[(j, j)]).sqrt();
            assert!((e - c_ref[(i, j)]).abs() < 0.06 * scale, "sample cov {i},{j}: {e} vs {}", c_ref[(i, j)]);
        }
    }
}

/// Fitting recovers known moments, and a saved model loads back and samples alike.
#[test]
fn gaussian_fit_recovers_moments_and_round_trips() {
    // Each image is a constant-per-row pattern plus noise: pixel variance 0.01 +
    // 0.04 shared along each row, so horizontal neighbours covary by 0.04.
    let (n, h, w) = (400, 10, 10);
    let mut rng = StdRng::seed_from_u64(5);
    let mut data = vec![];
    for _ in 0..n {
        for _ in 0..h {
            let r: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.2;
            for _ in 0..w {
                data.push((0.5 + r + rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.1) as f32);
            }
        }
    }
    let train = Tensor::from_vec(data, (n, 1, h, w), &D).unwrap();
    let cfg = GaussianConfig { patch: 4, padding: 1, patches: 20_000, ..Default::default() };
    let g = ConditionalGaussian::fit(cfg.clone(), &train).unwrap();
    let img = vec![0.5f32; 100];
    let hi = HostImage::new(&img, 1, 10, 10).unwrap();
    // Window 1×1 and padding 0: the conditional is the marginal (0.05 + ridge).
    let g0 = ConditionalGaussian::fit(GaussianConfig { padding: 0, ..cfg.clone() }, &train).unwrap();
    let (m, c) = g0.conditional_moments(&hi, &Window::square(3, 3, 1)).unwrap();
    assert!((m[0] - 0.5).abs() < 0.01, "{}", m[0]);
    assert!((c[0][(0, 0)] - 0.051).abs() < 0.004, "{}", c[0][(0, 0)]);
    // With padding 1 on a constant-0.5 image the mean stays 0.5 and the variance
    // shrinks (row neighbours explain the shared part).
    let (m, c) = g.conditional_moments(&hi, &Window::square(3, 3, 1)).unwrap();
    assert!((m[0] - 0.5).abs() < 0.01 && c[0][(0, 0)] < 0.03, "{} {}", m[0], c[0][(0, 0)]);
    let p = std::env::temp_dir().join(format!("lumen-gauss-{}.safetensors", std::process::id()));
    g.save(&p).unwrap();
    let l = ConditionalGaussian::load(GaussianConfig { padding: 1, ..Default::default() }, &p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let wins = [Window::square(0, 0, 2), Window::square(4, 7, 2)];
    let (mut a, mut b) = (vec![], vec![]);
    g.sample_windows(&hi, &wins, 5, &mut StdRng::seed_from_u64(1), &mut a).unwrap();
    l.sample_windows(&hi, &wins, 5, &mut StdRng::seed_from_u64(1), &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(l.range(), g.range());
    // Samples are clipped to the data range.
    let (lo, hi_) = g.range();
    assert!(a.iter().all(|v| *v >= lo && *v <= hi_));
    // A window too large for the fitted patches is a clear error.
    let e = g.sample_windows(&hi, &[Window::square(0, 0, 3)], 1, &mut StdRng::seed_from_u64(1), &mut b);
    assert!(e.unwrap_err().to_string().contains("refit"));
}

/// Test 2: at corners, edges and inside, the patch is clamped into the image, the
/// window gets the right offset, and the conditional matches a reference that
/// picks the patch on its own.
#[test]
fn border_windows_use_the_right_offset() {
    // patch_span by hand: H = 10, k = 3, l = 2 (patch 7).
    let spans: Vec<(usize, usize)> = (0..=7).map(|y| patch_span(y, 3, 2, 10)).collect();
    assert_eq!(spans, vec![(0, 7), (0, 7), (0, 7), (1, 7), (2, 7), (3, 7), (3, 7), (3, 7)]);
    let offsets: Vec<usize> = (0..=7).map(|y| y - patch_span(y, 3, 2, 10).0).collect();
    assert_eq!(offsets, vec![0, 1, 2, 2, 2, 2, 3, 4]);
    // An image smaller than the patch: the patch is the whole axis.
    assert_eq!(patch_span(1, 3, 2, 4), (0, 4));

    let (h, w, k, l) = (7usize, 9usize, 3usize, 2usize);
    let g = synthetic(7, l, 0.2, 0.0);
    let mut rng = StdRng::seed_from_u64(11);
    let img: Vec<f32> = (0..h * w).map(|_| rng.gen_range(0.0..1.0)).collect();
    let hi = HostImage::new(&img, 1, h, w).unwrap();
    let wins = crate::windows::grid(h, w, (k, k), (1, 1)).unwrap();
    for win in &wins {
        // Reference patch: centred, then pushed back inside the image.
        let clamp = |p: usize, n: usize| {
            let mut s = p as i64 - l as i64;
            let len = (k + 2 * l) as i64;
            if s < 0 {
                s = 0;
            }
            if s + len > n as i64 {
                s = n as i64 - len;
            }
            s.max(0) as usize
        };
        let (py, px) = (clamp(win.y, h), clamp(win.x, w));
        let b: Vec<(usize, usize)> = (py..(py + k + 2 * l).min(h))
            .flat_map(|y| (px..(px + k + 2 * l).min(w)).map(move |x| (y, x)))
            .filter(|&(y, x)| !((win.y..win.y + k).contains(&y) && (win.x..win.x + k).contains(&x)))
            .collect();
        assert!(b.iter().all(|&(y, x)| y < h && x < w));
        let (m_ref, c_ref) = closed_form(&img, w, win, &b, 0.2);
        let (m, c) = g.conditional_moments(&hi, win).unwrap();
        for i in 0..k * k {
            assert!((m[i] - m_ref[i]).abs() < 1e-8, "{win:?} mean {i}: {} vs {}", m[i], m_ref[i]);
            assert!((c[0][(i, i)] - c_ref[(i, i)]).abs() < 1e-8, "{win:?} var {i}");
        }
    }
    // Offsets 0..=2l on each axis: 25 precomputed conditionals for 35 windows.
    assert_eq!(g.cached_offsets(), 25);
    // Sampling every window at once stays inside the image and fills every value.
    let mut out = vec![];
    g.sample_windows(&hi, &wins, 3, &mut StdRng::seed_from_u64(0), &mut out).unwrap();
    assert_eq!(out.len(), wins.len() * 3 * k * k);
    // A window that leaves the image is refused, not read out of bounds.
    let e = g.sample_windows(&hi, &[Window::square(5, 0, 3)], 1, &mut StdRng::seed_from_u64(0), &mut out);
    assert!(e.is_err());
}

/// A model with one linear layer from a `[1, h, w]` input to `weights.len()` classes.
fn linear_model(h: usize, w: usize, weights: Vec<Vec<f32>>, num_train: Option<usize>) -> NetworkModel {
    let k = weights.len();
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: h * w, out_features: k, bias: false }),
    ];
    let flat: Vec<f32> = weights.into_iter().flatten().collect();
    let m = HashMap::from([("fc.weight".to_string(), Tensor::from_vec(flat, (k, h * w), &D).unwrap())]);
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &D)).unwrap();
    let labels: Vec<String> = (0..k).map(|i| i.to_string()).collect();
    let card = num_train.map(|n| lumen_core::model::ModelCard {
        name: "toy".into(),
        input_shape: vec![1, h, w],
        labels: labels.clone(),
        num_train: n,
        layers: specs.clone(),
        ..Default::default()
    });
    let info = ModelInfo { name: "toy".into(), input_shape: vec![1, h, w], labels, input_range: (0.0, 1.0), card };
    NetworkModel::new(info, net, &D).unwrap()
}

/// Test 4: the output depends only on a 2×2 region; relevance is non-zero exactly
/// on the pixels whose windows touch it, positive for the class the region
/// supports and negative for the other. With k = 1 and a one-image marginal
/// sampler the weight of evidence equals the hand-computed value.
#[test]
fn weight_of_evidence_lights_up_only_the_region() {
    let (h, w) = (6, 6);
    let region = |y: usize, x: usize| (2..4).contains(&y) && (2..4).contains(&x);
    let w0: Vec<f32> = (0..h * w).map(|i| if region(i / w, i % w) { 3.0 } else { 0.0 }).collect();
    let model = linear_model(h, w, vec![w0, vec![0.0; h * w]], Some(100));
    let mut rng = StdRng::seed_from_u64(2);
    let img: Vec<f32> = (0..h * w).map(|i| if region(i / w, i % w) { 1.0 } else { rng.gen_range(0.0..1.0) }).collect();
    let x = Tensor::from_vec(img.clone(), (1, 1, h, w), &D).unwrap();
    let train: Vec<f32> = (0..50 * h * w).map(|_| rng.gen_range(0.0..0.3)).collect();
    let sampler = Arc::new(Marginal::fit(&Tensor::from_vec(train, (50, 1, h, w), &D).unwrap()).unwrap());
    let cfg = PdaConfig { window: 2, classes: ClassSet::All, ..Default::default() };
    let e = Pda::new(cfg, sampler).attribute(&model, &x, &Target::Class(0)).unwrap();
    let maps = e.tensor("class_maps").unwrap().get(0).unwrap().flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(e.tensor("class_ids").unwrap().to_vec2::<u32>().unwrap(), vec![vec![0, 1]]);
    let attr = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(attr, maps[0]);
    // Windows of side 2 touching the region start at rows/cols 1..=3: they cover 1..=4.
    let support = |y: usize, x: usize| (1..5).contains(&y) && (1..5).contains(&x);
    for y in 0..h {
        for x in 0..w {
            let (r0, r1) = (maps[0][y * w + x], maps[1][y * w + x]);
            if support(y, x) {
                assert!(r0 > 1e-3 && r1 < -1e-3, "({y},{x}): {r0} {r1}");
            } else {
                assert!(r0.abs() < 1e-5 && r1.abs() < 1e-5, "({y},{x}): {r0} {r1}");
            }
        }
    }
    // Hand-computed: k = 1, every sample is the one training image (all 0.1).
    let one = Arc::new(Marginal::fit(&Tensor::full(0.1f32, (1, 1, h, w), &D).unwrap()).unwrap());
    let cfg = PdaConfig { window: 1, samples: 3, ..Default::default() };
    let e = Pda::new(cfg, one).attribute(&model, &x, &Target::Class(0)).unwrap();
    let r = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    // z0 = 3·(1+1+1+1) = 12; with one region pixel at 0.1, z0 = 3·3.1 = 9.3; z1 = 0.
    let we = log2_odds_laplace(sig(12.0), 100.0, 2.0) - log2_odds_laplace(sig(9.3), 100.0, 2.0);
    assert!(we > 0.0);
    for (i, v) in r.iter().enumerate() {
        let expect = if region(i / w, i % w) { we } else { 0.0 };
        assert!((*v as f64 - expect).abs() < 1e-4, "pixel {i}: {v} vs {expect}");
    }
    // Without N in the card or the config, the Laplace correction cannot be made.
    let bare = linear_model(h, w, vec![vec![0.0; h * w], vec![0.0; h * w]], None);
    let s = Arc::new(Marginal::fit(&Tensor::zeros((1, 1, h, w), DType::F32, &D).unwrap()).unwrap());
    let err = Pda::new(PdaConfig::default(), s).attribute(&bare, &x, &Target::Class(0)).unwrap_err();
    assert!(err.to_string().contains("num_train"), "{err}");
}

/// The Laplace correction and log-odds by hand.
#[test]
fn laplace_corrected_log_odds() {
    // p = 1 with N = 4000, K = 10: q = 4001/4010, odds = 4001/9.
    assert!((log2_odds_laplace(1.0, 4000.0, 10.0) - (4001f64 / 9.0).log2()).abs() < 1e-12);
    // p = 0.5, N = 8, K = 2: q = 5/10, odds 1, log 0.
    assert!(log2_odds_laplace(0.5, 8.0, 2.0).abs() < 1e-12);
}

/// Test 5: the same seed gives the same map (up to float summation order across
/// batch sizes); another
/// seed gives another map. Logit mode gives the activation difference.
#[test]
fn same_seed_same_map() {
    let (h, w) = (8, 8);
    let mut rng = StdRng::seed_from_u64(4);
    let weights: Vec<Vec<f32>> = (0..3).map(|_| (0..h * w).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
    let model = linear_model(h, w, weights.clone(), Some(500));
    let train: Vec<f32> = (0..200 * h * w).map(|_| rng.gen_range(0.0..1.0)).collect();
    let train = Tensor::from_vec(train, (200, 1, h, w), &D).unwrap();
    let g: Arc<dyn Sampler> =
        Arc::new(ConditionalGaussian::fit(GaussianConfig { patch: 7, patches: 2000, ..Default::default() }, &train).unwrap());
    let x = train.narrow(0, 0, 2).unwrap();
    let run = |seed: u64, batch_size: usize, output: PdaOutput| {
        let cfg = PdaConfig { window: 3, seed, batch_size, output, ..Default::default() };
        let e = Pda::new(cfg, g.clone()).attribute(&model, &x, &Target::Predicted).unwrap();
        e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let a = run(7, 256, PdaOutput::Softmax);
    assert_eq!(a, run(7, 256, PdaOutput::Softmax));
    // Another batch size draws the same samples; only the matmul's summation order
    // (and so the last bits) may change.
    let close = |u: &[f32], v: &[f32]| u.iter().zip(v).all(|(p, q)| (p - q).abs() < 1e-4);
    assert!(close(&a, &run(7, 13, PdaOutput::Softmax)));
    assert_ne!(a, run(8, 256, PdaOutput::Softmax));
    assert!(a.iter().any(|v| v.abs() > 1e-4));
    // Logits: linear model, so AD of a window = Σ w·(x − mean sample) over it; the
    // map is deterministic too and differs from the softmax one.
    let l = run(7, 256, PdaOutput::Logits);
    assert!(close(&l, &run(7, 50, PdaOutput::Logits)));
    assert_ne!(l, a);
}

/// Occlusion on a linear model equals the hand-computed Σ w·(x − baseline) of each
/// window, averaged over the windows covering each pixel.
#[test]
fn occlusion_on_a_linear_model_is_the_window_dot_product() {
    let (h, w) = (5, 4);
    let mut rng = StdRng::seed_from_u64(8);
    let wt: Vec<f32> = (0..h * w).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let model = linear_model(h, w, vec![wt.clone(), vec![0.5; h * w]], None);
    let img: Vec<f32> = (0..h * w).map(|_| rng.gen_range(0.0..1.0)).collect();
    let x = Tensor::from_vec(img.clone(), (1, 1, h, w), &D).unwrap();
    // Windows 2×3, strides (1, 2): rows start 0,1,2,3; columns 0 and then 1 (the
    // last start, so the right column is covered).
    let starts = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)];
    for (base, tensor) in [(0.0f32, None), (0.25, None), (0.0, Some(0.7f32))] {
        let bt: Vec<f32> = match tensor {
            Some(v) => (0..h * w).map(|i| v - 0.01 * i as f32).collect(),
            None => vec![base; h * w],
        };
        let cfg = OcclusionConfig {
            window: (2, 3),
            strides: (1, 2),
            baseline: base,
            baseline_tensor: tensor.map(|_| Tensor::from_vec(bt.clone(), (1, h, w), &D).unwrap()),
            batch_size: 3,
        };
        let e = Occlusion::new(cfg).attribute(&model, &x, &Target::Class(0)).unwrap();
        let got = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let dot = |y0: usize, x0: usize| -> f64 {
            let mut s = 0.0;
            for y in y0..y0 + 2 {
                for x in x0..x0 + 3 {
                    s += wt[y * w + x] as f64 * (img[y * w + x] - bt[y * w + x]) as f64;
                }
            }
            s
        };
        for y in 0..h {
            for x in 0..w {
                let cover: Vec<f64> = starts
                    .iter()
                    .filter(|&&(y0, x0)| (y0..y0 + 2).contains(&y) && (x0..x0 + 3).contains(&x))
                    .map(|&(y0, x0)| dot(y0, x0))
                    .collect();
                let expect = cover.iter().sum::<f64>() / cover.len() as f64;
                assert!((got[y * w + x] as f64 - expect).abs() < 1e-5, "({y},{x}): {} vs {expect}", got[y * w + x]);
            }
        }
    }
}
