//! Every metric on a constructed case with a known answer.

use crate::*;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::metric::MetricInput;
use lumen_core::model::network::init_params;
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use lumen_core::{Attributor, Classifier, Metric, Result};
use lumen_std_gradients::{InputXGradient, IntegratedGradients, Saliency};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

fn info(name: &str, shape: Vec<usize>, k: usize) -> ModelInfo {
    ModelInfo {
        name: name.into(),
        input_shape: shape,
        labels: (0..k).map(|i| i.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    }
}

/// `[1, h, w]` images → flatten → linear with the given class weights and biases.
fn linear_model(h: usize, w: usize, weights: Vec<Vec<f32>>, bias: Vec<f32>) -> NetworkModel {
    let d = Device::Cpu;
    let k = weights.len();
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: h * w, out_features: k, bias: true }),
    ];
    let mut m = HashMap::new();
    m.insert("fc.weight".into(), Tensor::from_vec(weights.concat(), (k, h * w), &d).unwrap());
    m.insert("fc.bias".into(), Tensor::from_vec(bias, k, &d).unwrap());
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
    NetworkModel::new(info("linear", vec![1, h, w], k), net, &d).unwrap()
}

/// 8×8 images; class 0's logit is 0.5·Σ(top half) − 4, class 1's is 0.
fn top_half_model() -> (NetworkModel, Vec<f32>) {
    let w0: Vec<f32> = (0..64).map(|i| if i < 32 { 0.5 } else { 0.0 }).collect();
    (linear_model(8, 8, vec![w0.clone(), vec![0.0; 64]], vec![-4.0, 0.0]), w0)
}

fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn deletion_and_insertion_prefer_the_map_on_the_read_half() {
    let (model, w0) = top_half_model();
    let b = 6;
    let xs = uniform(b * 64, 0.2, 1.0, 1);
    let good: Vec<f32> = xs.iter().enumerate().map(|(i, x)| x * w0[i % 64]).collect();
    let random = uniform(b * 64, -1.0, 1.0, 2);
    let (x, good, random) = (t(xs, &[b, 1, 8, 8]), t(good, &[b, 1, 8, 8]), t(random, &[b, 1, 8, 8]));
    let targets = vec![0; b];
    let cfg = DeletionConfig { steps: 16, fill: Fill::Zero, batch_size: 32 };
    let del = Deletion::new(Direction::Deletion, cfg.clone());
    let ins = Deletion::new(Direction::Insertion, cfg);
    let run = |m: &Deletion, a: &Tensor| m.evaluate(&MetricInput::new(&model, &x, &targets, a)).unwrap();
    let (dg, dr) = (run(&del, &good), run(&del, &random));
    let (ig, ir) = (run(&ins, &good), run(&ins, &random));
    eprintln!("deletion AUC good {:.3} random {:.3}; insertion AUC good {:.3} random {:.3}", dg.mean(), dr.mean(), ig.mean(), ir.mean());
    assert!(dg.mean() + 0.2 < dr.mean(), "deletion AUC: good {} vs random {}", dg.mean(), dr.mean());
    assert!(ig.mean() > ir.mean() + 0.2, "insertion AUC: good {} vs random {}", ig.mean(), ir.mean());
    // Known end points: the image itself, then all zeros (σ(−4)).
    let c = &dg.curves.as_ref().unwrap()[0];
    assert_eq!(c.len(), 17);
    let p0 = lumen_core::candle_nn::ops::softmax(&model.forward(&x.narrow(0, 0, 1).unwrap()).unwrap(), 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()[0][0] as f64;
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    assert!((c[0] - p0).abs() < 1e-6 && (c[16] - sig(-4.0)).abs() < 1e-6, "{c:?}");
    // The good map removes the read half in the first half of the curve.
    assert!((c[8] - sig(-4.0)).abs() < 1e-6, "{c:?}");
    let ci = &ig.curves.as_ref().unwrap()[0];
    assert!((ci[0] - sig(-4.0)).abs() < 1e-6 && (ci[8] - p0).abs() < 1e-5, "{ci:?}");
    assert_eq!(dg.curve_x.as_ref().unwrap()[16], 1.0);
    // Parameters and direction.
    assert!(!del.higher_is_better() && ins.higher_is_better());
    assert_eq!(del.params()["fill"], "zero");
}

#[test]
fn fills_by_hand() {
    let l = util::Layout::of(&[1, 1, 2, 2]).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = [1.0f32, 2.0, 3.0, 6.0];
    assert_eq!(Fill::Mean.image(&x, &l, (0.0, 1.0), &mut rng), vec![3.0; 4]);
    assert_eq!(Fill::Zero.image(&x, &l, (0.0, 1.0), &mut rng), vec![0.0; 4]);
    let u = Fill::Uniform.image(&x, &l, (0.0, 0.5), &mut rng);
    assert!(u.iter().all(|v| (0.0..0.5).contains(v)) && u[0] != u[1]);
}

#[test]
fn pixel_flipping_aopc_by_hand() {
    // Logit of class 0 = x·(1, 2, 3, 4); x = 1: removing pixels 3, 2, 1, 0 in turn
    // gives 10, 6, 3, 1, 0, so AOPC = (0 + 4 + 7 + 9 + 10) / 5 = 6.
    let model = linear_model(2, 2, vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]], vec![0.0, 0.0]);
    let x = t(vec![1.0; 4], &[1, 1, 2, 2]);
    let a = t(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let pf = PixelFlipping::new(PixelFlippingConfig {
        region: 1,
        steps: 0,
        fill: Fill::Zero,
        score: Score::Logit,
        batch_size: 3,
    });
    let out = pf.evaluate(&MetricInput::new(&model, &x, &[0], &a)).unwrap();
    let c = &out.curves.as_ref().unwrap()[0];
    for (got, want) in c.iter().zip([10.0, 6.0, 3.0, 1.0, 0.0]) {
        assert!((got - want).abs() < 1e-5, "{c:?}");
    }
    assert!((out.per_example[0] - 6.0).abs() < 1e-5);
    // 2×2 regions of a 3×3 image: four regions of 4, 2, 2 and 1 pixels.
    let r = perturbation::regions(&[3, 3], 2);
    assert_eq!(r, vec![vec![0, 1, 3, 4], vec![2, 5], vec![6, 7], vec![8]]);
    assert_eq!(perturbation::regions(&[5], 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
}

/// A linear model on 4×4 inputs with seeded weights, and inputs away from 0.
fn linear_case() -> (NetworkModel, Vec<f32>, Tensor) {
    let w0 = uniform(16, -1.0, 1.0, 11);
    let w1 = uniform(16, -1.0, 1.0, 12);
    let model = linear_model(4, 4, vec![w0.clone(), w1], vec![0.3, -0.2]);
    (model, w0, t(uniform(3 * 16, 0.1, 1.0, 13), &[3, 1, 4, 4]))
}

#[test]
fn infidelity_of_exact_linear_attributions_is_zero() {
    let (model, w0, x) = linear_case();
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let targets = [0, 0, 0];
    let wx = t(xs.iter().enumerate().map(|(i, v)| v * w0[i % 16]).collect(), &[3, 1, 4, 4]);
    let grad = t((0..48).map(|i| w0[i % 16]).collect(), &[3, 1, 4, 4]);
    let wrong = t(uniform(48, -1.0, 1.0, 14), &[3, 1, 4, 4]);
    let run = |a: &Tensor, mbi: bool, normalize: bool, noise: Noise| {
        let m = Infidelity::new(InfidelityConfig {
            noise,
            n_perturb: 20,
            multiply_by_inputs: Some(mbi),
            normalize,
            score: Score::Logit,
            batch_size: 16,
        });
        m.evaluate(&MetricInput::new(&model, &x, &targets, a).with_seed(5)).unwrap()
    };
    let g = Noise::Gaussian { sigma: 0.1 };
    // w ⊙ x with the perturbation divided by x (Captum's multiply_by_inputs): exact.
    assert!(run(&wx, true, false, g).mean() < 1e-9, "{:?}", run(&wx, true, false, g));
    // The gradient w with the raw perturbation: exact too.
    assert!(run(&grad, false, false, g).mean() < 1e-9);
    // Square removal: x − I zeroes a square, Iᵀ(w ⊙ x)/x = wᵀI exactly.
    assert!(run(&wx, true, false, Noise::Square { side: 2 }).mean() < 1e-9);
    // A wrong map is clearly worse.
    let bad = run(&wrong, true, false, g).mean();
    eprintln!("infidelity of a random map: {bad}; exact: {}", run(&wx, true, false, g).mean());
    assert!(bad > 1e-3, "{bad}");
    // A scaled exact map: wrong without normalize, exact with it (β = 1/2).
    let twice = (&wx * 2.0).unwrap();
    assert!(run(&twice, true, false, g).mean() > 1e-3);
    let n = run(&twice, true, true, g);
    assert!(n.mean() < 1e-9 && (n.extra["beta"][0] - 0.5).abs() < 1e-5, "{n:?}");
    // By hand, one draw: I = (δ), f linear ⇒ Δf = wᵀI; φ = 0 ⇒ infidelity = (wᵀI)² ≥ 0.
    let zero = x.zeros_like().unwrap();
    assert!(run(&zero, false, false, g).mean() > 0.0);
    // Auto asks the method: input × gradient multiplies by the input.
    let m = Infidelity::default();
    let ixg = InputXGradient::default();
    let out = m.evaluate(&MetricInput::new(&model, &x, &targets, &wx).with_method(&ixg)).unwrap();
    assert!(out.mean() < 1e-9 && out.notes.iter().any(|s| s.contains("true")), "{out:?}");
}

#[test]
fn max_sensitivity_of_constant_gradient_is_zero() {
    let (model, w0, x) = linear_case();
    let targets = [0, 1, 0];
    let sal = Saliency::default();
    let phi = sal.attribute(&model, &x, &lumen_core::Target::Classes(targets.to_vec())).unwrap().attribution().clone();
    let m = MaxSensitivity::new(MaxSensitivityConfig { radius: 0.05, n_perturb: 8, batch_size: 5 });
    let out = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi).with_method(&sal)).unwrap();
    assert!(out.per_example.iter().all(|v| v.abs() < 1e-12), "{out:?}");
    // Input × gradient moves with the input: 0 < ‖w ⊙ δ‖/‖w ⊙ x‖ ≤ r‖w‖/‖w ⊙ x‖.
    let ixg = InputXGradient::default();
    let tg = lumen_core::Target::Classes(vec![0; 3]);
    let phi = ixg.attribute(&model, &x, &tg).unwrap().attribution().clone();
    let out = m.evaluate(&MetricInput::new(&model, &x, &[0, 0, 0], &phi).with_method(&ixg)).unwrap();
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let wn: f64 = w0.iter().map(|w| (*w as f64).powi(2)).sum::<f64>().sqrt();
    for (i, s) in out.per_example.iter().enumerate() {
        let wx: f64 = (0..16).map(|j| (w0[j] as f64 * xs[i * 16 + j] as f64).powi(2)).sum::<f64>().sqrt();
        assert!(*s > 0.0 && *s <= 0.05 * wn / wx + 1e-9, "{s}");
    }
    // Without a method it is a clear error.
    let e = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi)).unwrap_err().to_string();
    assert!(e.contains("needs the method"), "{e}");
}

/// conv(1→4, 3×3) → relu → flatten → linear(4·8·8 → 3), seeded PyTorch init.
fn small_net(seed: u64) -> NetworkModel {
    let d = Device::Cpu;
    let specs = vec![
        LayerSpec::new(
            "conv",
            LayerKind::Conv2d { in_channels: 1, out_channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
        ),
        LayerSpec::new("relu", LayerKind::Relu),
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: 256, out_features: 3, bias: true }),
    ];
    let p = init_params(&specs, seed, &d).unwrap();
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(p, DType::F32, &d)).unwrap();
    NetworkModel::new(info("small", vec![1, 8, 8], 3), net, &d).unwrap()
}

#[test]
fn sanity_randomization_decorrelates_saliency() {
    let model = small_net(3);
    let x = t(uniform(4 * 64, 0.0, 1.0, 21), &[4, 1, 8, 8]);
    let targets = [0, 1, 2, 0];
    let sal = Saliency::default();
    let phi = sal.attribute(&model, &x, &lumen_core::Target::Classes(targets.to_vec())).unwrap().attribution().clone();
    let m = SanityRandomization::default();
    let out = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi).with_method(&sal).with_seed(9)).unwrap();
    let layers = out.layers.as_ref().unwrap();
    assert_eq!(layers.iter().map(|l| l.layer.as_str()).collect::<Vec<_>>(), vec!["none", "fc", "conv"]);
    assert!(layers[0].spearman.iter().all(|r| (r - 1.0).abs() < 1e-12), "{:?}", layers[0]);
    assert!(layers[0].ssim.iter().all(|s| (s - 1.0).abs() < 1e-9), "{:?}", layers[0]);
    let last = out.mean();
    eprintln!("sanity: spearman per step {:?}", layers.iter().map(|l| lumen_core::metric::nan_mean(&l.spearman)).collect::<Vec<_>>());
    assert!(last < 0.6, "Spearman after randomizing every layer: {last} ({out:?})");
    assert_eq!(out.extra["ssim_final"].len(), 4);
    // max_layers = 1 stops after the top layer.
    let one = SanityRandomization::new(SanityConfig { max_layers: 1, ssim_window: 7 });
    let o1 = one.evaluate(&MetricInput::new(&model, &x, &targets, &phi).with_method(&sal)).unwrap();
    assert_eq!(o1.layers.as_ref().unwrap().len(), 2);
    // A model without a network is refused clearly.
    struct Black(NetworkModel);
    impl Classifier for Black {
        fn info(&self) -> &ModelInfo {
            self.0.info()
        }
        fn device(&self) -> &Device {
            self.0.device()
        }
        fn forward(&self, xs: &Tensor) -> Result<Tensor> {
            self.0.forward(xs)
        }
    }
    let black = Black(small_net(3));
    let e = m.evaluate(&MetricInput::new(&black, &x, &targets, &phi).with_method(&sal)).unwrap_err().to_string();
    assert!(e.contains("explainable layer vocabulary"), "{e}");
}

#[test]
fn localization_by_hand() {
    let model = linear_model(2, 3, vec![vec![0.0; 6], vec![0.0; 6]], vec![0.0, 0.0]);
    let x = t(vec![0.5; 6], &[1, 1, 2, 3]);
    let a = t(vec![1.0, -2.0, 3.0, 0.5, 0.0, 4.0], &[1, 1, 2, 3]);
    let mask = t(vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0], &[1, 2, 3]);
    let m = Localization::default();
    let out = m.evaluate(&MetricInput::new(&model, &x, &[0], &a).with_masks(&mask)).unwrap();
    // Positive mass 1 + 3 + 0.5 + 4 = 8.5, inside 1 + 3; top-2 = {4 (outside), 3 (inside)}.
    assert!((out.per_example[0] - 4.0 / 8.5).abs() < 1e-12);
    assert!((out.extra["rank_accuracy"][0] - 0.5).abs() < 1e-12);
    let abs = Localization::new(LocalizationConfig { mass: Mass::Absolute });
    let out = abs.evaluate(&MetricInput::new(&model, &x, &[0], &a).with_masks(&mask)).unwrap();
    assert!((out.per_example[0] - 4.0 / 10.5).abs() < 1e-12);
    // A mask with the channel dim works too; an empty mask gives NaN; a wrong shape errors.
    let m4 = mask.reshape((1, 1, 2, 3)).unwrap();
    assert!(m.evaluate(&MetricInput::new(&model, &x, &[0], &a).with_masks(&m4)).unwrap().per_example[0] > 0.0);
    let empty = mask.zeros_like().unwrap();
    assert!(m.evaluate(&MetricInput::new(&model, &x, &[0], &a).with_masks(&empty)).unwrap().per_example[0].is_nan());
    let bad = t(vec![0.0; 4], &[1, 2, 2]);
    assert!(m.evaluate(&MetricInput::new(&model, &x, &[0], &a).with_masks(&bad)).is_err());
    assert!(m.evaluate(&MetricInput::new(&model, &x, &[0], &a)).is_err());
}

#[test]
fn masks_of_the_synthetic_sets() {
    use lumen_core::data::biased::BiasSquare;
    use lumen_core::data::genomics::{Genomics, GenomicsConfig};
    let d = Device::Cpu;
    let m = biased_square_masks(&BiasSquare::default(), 2, 28, 28, &d).unwrap();
    assert_eq!(m.dims(), &[2, 28, 28]);
    let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v.iter().sum::<f32>(), 72.0);
    assert_eq!((v[28 + 1], v[6 * 28 + 6], v[0], v[7 * 28 + 7]), (1.0, 1.0, 0.0, 0.0));
    let g = Genomics::simulate(&GenomicsConfig { n: 5, seed: 3, ..Default::default() }).unwrap();
    let mm = motif_masks(&g, &[0, 4], &d).unwrap();
    let v = mm.to_vec2::<f32>().unwrap();
    for (row, i) in v.iter().zip([0, 4]) {
        let want: usize = g.seqs[i].motifs.iter().map(|m| m.len()).sum();
        assert_eq!(row.iter().sum::<f32>() as usize, want);
        for mo in &g.seqs[i].motifs {
            assert!(row[mo.range()].iter().all(|x| *x == 1.0));
        }
    }
    // A perfect motif map localizes perfectly on one-hot input [B, 4, L].
    let x = g.onehot(&[0, 4], &d).unwrap();
    let len = g.config.length;
    let a = x.broadcast_mul(&mm.reshape((2, 1, len)).unwrap()).unwrap();
    let seq_model = {
        let specs = vec![
            LayerSpec::new("flatten", LayerKind::Flatten),
            LayerSpec::new("fc", LayerKind::Linear { in_features: 4 * len, out_features: 2, bias: true }),
        ];
        let p = init_params(&specs, 0, &d).unwrap();
        let net = Network::from_spec(&specs, VarBuilder::from_tensors(p, DType::F32, &d)).unwrap();
        NetworkModel::new(info("seq", vec![4, len], 2), net, &d).unwrap()
    };
    let out = Localization::default().evaluate(&MetricInput::new(&seq_model, &x, &[0, 1], &a).with_masks(&mm)).unwrap();
    assert_eq!(out.per_example, vec![1.0, 1.0]);
    assert_eq!(out.extra["rank_accuracy"], vec![1.0, 1.0]);
}

#[test]
fn completeness_of_ig_and_not_of_saliency() {
    let (model, _, x) = linear_case();
    let targets = [0, 1, 0];
    let tg = lumen_core::Target::Classes(targets.to_vec());
    let ig = IntegratedGradients::default();
    let phi = ig.attribute(&model, &x, &tg).unwrap().attribution().clone();
    let m = Completeness::default();
    let out = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi).with_method(&ig)).unwrap();
    assert!(out.per_example.iter().all(|r| *r < 1e-4), "{out:?}");
    // The method's constant baseline is found (auto); a wrong baseline shows as an error.
    let ig5 = IntegratedGradients::new(lumen_std_gradients::IntegratedGradientsConfig {
        baselines: vec![lumen_std_gradients::Baseline::Constant(0.5)],
        ..Default::default()
    });
    let phi5 = ig5.attribute(&model, &x, &tg).unwrap().attribution().clone();
    let auto = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi5).with_method(&ig5)).unwrap();
    assert!(auto.per_example.iter().all(|r| *r < 1e-4), "{auto:?}");
    let zero = Completeness::new(CompletenessConfig { baseline: Some(0.0), batch_size: 8 });
    let wrong = zero.evaluate(&MetricInput::new(&model, &x, &targets, &phi5).with_method(&ig5)).unwrap();
    assert!(wrong.per_example.iter().all(|r| *r > 1e-2), "{wrong:?}");
    // Δ by hand for example 0: wᵀx (the bias cancels).
    let net = small_net(5);
    let xn = t(uniform(2 * 64, 0.0, 1.0, 30), &[2, 1, 8, 8]);
    let phi = ig.attribute(&net, &xn, &lumen_core::Target::Classes(vec![0, 2])).unwrap().attribution().clone();
    let out = m.evaluate(&MetricInput::new(&net, &xn, &[0, 2], &phi).with_method(&ig)).unwrap();
    assert!(out.per_example.iter().all(|r| *r < 0.05), "{out:?}");
    let zero_logit = net.forward(&xn.zeros_like().unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let logit = net.forward(&xn).unwrap().to_vec2::<f32>().unwrap();
    assert!((out.extra["delta"][1] - (logit[1][2] - zero_logit[1][2]) as f64).abs() < 1e-5);
    // Saliency does not claim completeness: NaN with a note.
    let sal = Saliency::default();
    let out = m.evaluate(&MetricInput::new(&model, &x, &targets, &phi_of(&sal, &model, &x, &tg)).with_method(&sal)).unwrap();
    assert!(out.per_example.iter().all(|v| v.is_nan()));
    assert!(out.notes[0].contains("does not claim completeness"), "{:?}", out.notes);
}

fn phi_of(m: &dyn Attributor, model: &dyn Classifier, x: &Tensor, t: &lumen_core::Target) -> Tensor {
    m.attribute(model, x, t).unwrap().attribution().clone()
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (model, _) = top_half_model();
    let x = t(vec![0.5; 64], &[1, 1, 8, 8]);
    let a = t(vec![0.5; 32], &[1, 1, 4, 8]);
    let d = Deletion::new(Direction::Deletion, DeletionConfig::default());
    let e = d.evaluate(&MetricInput::new(&model, &x, &[0], &a)).unwrap_err().to_string();
    assert!(e.contains("attributions"), "{e}");
    let e = d.evaluate(&MetricInput::new(&model, &x, &[0, 1], &x)).unwrap_err().to_string();
    assert!(e.contains("2 targets"), "{e}");
    let e = d.evaluate(&MetricInput::new(&model, &x, &[7], &x)).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}
