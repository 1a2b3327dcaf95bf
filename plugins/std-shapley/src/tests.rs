//! The family on models whose Shapley values have a closed form: an additive model
//! `f(x) = Σ_j u_j relu(w_j x_j + c_j)` (so `φ_i = Σ_{j∈i} g_j(x_j) − g_j(b_j)`) and
//! a linear one; a small nonlinear network for exact-versus-sampled checks.

use crate::*;
use lumen_core::baseline::Baseline;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use lumen_core::{Attributor, Classifier, Explanation, Method, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

const D: Device = Device::Cpu;
const H: usize = 6;
const W: usize = 6;

fn model(specs: Vec<LayerSpec>, weights: HashMap<String, Tensor>, k: usize) -> NetworkModel {
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(weights, DType::F32, &D)).unwrap();
    let labels: Vec<String> = (0..k).map(|i| i.to_string()).collect();
    let info = ModelInfo { name: "toy".into(), input_shape: vec![1, H, W], labels, input_range: (0.0, 1.0), card: None };
    NetworkModel::new(info, net, &D).unwrap()
}

fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &D).unwrap()
}

/// `f_k(x) = Σ_j u_kj relu(w_j x_j + c_j)`: a diagonal layer, relu, then a dense one.
struct Additive {
    w: Vec<f32>,
    c: Vec<f32>,
    u: Vec<Vec<f32>>,
}

impl Additive {
    fn new(seed: u64) -> Additive {
        let mut r = StdRng::seed_from_u64(seed);
        let n = H * W;
        Additive {
            w: (0..n).map(|_| r.gen_range(-2.0..2.0)).collect(),
            c: (0..n).map(|_| r.gen_range(-0.5..0.5)).collect(),
            u: (0..2).map(|_| (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()).collect(),
        }
    }
    fn model(&self) -> NetworkModel {
        let n = H * W;
        let mut diag = vec![0f32; n * n];
        (0..n).for_each(|j| diag[j * n + j] = self.w[j]);
        let specs = vec![
            LayerSpec::new("flatten", LayerKind::Flatten),
            LayerSpec::new("d", LayerKind::Linear { in_features: n, out_features: n, bias: true }),
            LayerSpec::new("r", LayerKind::Relu),
            LayerSpec::new("fc", LayerKind::Linear { in_features: n, out_features: 2, bias: false }),
        ];
        let m = HashMap::from([
            ("d.weight".to_string(), t(diag, &[n, n])),
            ("d.bias".to_string(), t(self.c.clone(), &[n])),
            ("fc.weight".to_string(), t(self.u.concat(), &[2, n])),
        ]);
        model(specs, m, 2)
    }
    fn g(&self, k: usize, j: usize, x: f32) -> f64 {
        self.u[k][j] as f64 * ((self.w[j] * x + self.c[j]) as f64).max(0.0)
    }
    /// Closed-form Shapley value of each feature of `mask` for class `k`.
    fn phi(&self, k: usize, x: &[f32], b: &[f32], mask: &FeatureMask) -> Vec<f64> {
        let mut phi = vec![0.0; mask.n];
        for (j, &id) in mask.ids.iter().enumerate() {
            phi[id as usize] += self.g(k, j, x[j]) - self.g(k, j, b[j]);
        }
        phi
    }
}

fn image(seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..H * W).map(|_| r.gen_range(0.0..1.0)).collect()
}

fn grid(cell: usize) -> Features {
    Features { mask: MaskSpec::Grid { cell }, ..Features::default() }
}

/// Per-feature values of an explanation (its "feature_values" diagnostic).
fn values(e: &Explanation) -> Vec<Vec<f64>> {
    serde_json::from_value(e.diagnostics["feature_values"].clone()).unwrap()
}

fn diag(e: &Explanation, key: &str) -> Vec<f64> {
    serde_json::from_value(e.diagnostics[key].clone()).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

fn methods(features: Features) -> Vec<Box<dyn Attributor>> {
    vec![
        Box::new(ShapleyExact { config: ShapleyExactConfig { features: features.clone() } }),
        Box::new(ShapleySampling {
            config: ShapleySamplingConfig { features: features.clone(), samples: 4, ..Default::default() },
        }),
        Box::new(KernelShap { config: KernelShapConfig { features: features.clone(), samples: 40, ..Default::default() } }),
        Box::new(PartitionShap { config: PartitionShapConfig { features: features.clone() } }),
        Box::new(FeatureAblation { config: FeatureAblationConfig { features } }),
    ]
}

/// On an additive game every member of the family is exact, whatever its sampling:
/// the marginal contribution of a feature does not depend on the coalition.
#[test]
fn additive_model_closed_form_for_the_whole_family() {
    let a = Additive::new(1);
    let m = a.model();
    let (x0, x1) = (image(2), image(3));
    let xs = t([x0.clone(), x1.clone()].concat(), &[2, 1, H, W]);
    for (bl, base) in [(Baseline::Zero, vec![0.0; H * W]), (Baseline::Constant(0.3), vec![0.3; H * W])] {
        let f = Features { baselines: vec![bl], ..grid(2) };
        let mask = &MaskSpec::Grid { cell: 2 }.build("t", &xs).unwrap()[0];
        assert_eq!(mask.n, 9);
        for meth in methods(f) {
            let e = meth.attribute(&m, &xs, &Target::Classes(vec![0, 1])).unwrap();
            let v = values(&e);
            assert!(close(&v[0], &a.phi(0, &x0, &base, mask), 1e-5), "{}: {:?}", meth.name(), v[0]);
            assert!(close(&v[1], &a.phi(1, &x1, &base, mask), 1e-5), "{}: {:?}", meth.name(), v[1]);
            // The map spreads each feature's value over its pixels.
            let map = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!((map[7] as f64 - v[0][mask.ids[7] as usize]).abs() < 1e-6);
        }
    }
}

/// Feature ablation on a linear model is `w·(x − baseline)` per feature, and LIME's
/// unpenalised surrogate recovers those coefficients exactly (the game is linear).
#[test]
fn linear_model_ablation_and_lime() {
    let mut r = StdRng::seed_from_u64(9);
    let wt: Vec<f32> = (0..H * W).map(|_| r.gen_range(-1.0..1.0)).collect();
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: H * W, out_features: 1, bias: false }),
    ];
    let m = model(specs, HashMap::from([("fc.weight".to_string(), t(wt.clone(), &[1, H * W]))]), 1);
    let x = image(4);
    let xs = t(x.clone(), &[1, 1, H, W]);
    let f = Features { baselines: vec![Baseline::Constant(0.5)], ..grid(3) };
    let mask = &f.mask.build("t", &xs).unwrap()[0];
    let mut want = vec![0.0; mask.n];
    for (j, &id) in mask.ids.iter().enumerate() {
        want[id as usize] += wt[j] as f64 * (x[j] as f64 - 0.5);
    }
    let fa = FeatureAblation { config: FeatureAblationConfig { features: f.clone() } };
    assert!(close(&values(&fa.attribute(&m, &xs, &Target::Class(0)).unwrap())[0], &want, 1e-5));
    let lime = Lime::new(LimeConfig { features: f, alpha: 0.0, samples: 200, ..Default::default() }).unwrap();
    let e = lime.attribute(&m, &xs, &Target::Class(0)).unwrap();
    assert!(close(&values(&e)[0], &want, 1e-4), "{:?} vs {want:?}", values(&e)[0]);
    assert!(diag(&e, "surrogate_r2")[0] > 0.999999);
}

/// A small nonlinear network: f = fc2(relu(fc1(x))).
fn mlp() -> NetworkModel {
    let mut r = StdRng::seed_from_u64(5);
    let n = H * W;
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc1", LayerKind::Linear { in_features: n, out_features: 16, bias: true }),
        LayerSpec::new("r", LayerKind::Relu),
        LayerSpec::new("fc2", LayerKind::Linear { in_features: 16, out_features: 3, bias: true }),
    ];
    let mut rnd = |k: usize| -> Vec<f32> { (0..k).map(|_| r.gen_range(-1.0..1.0)).collect() };
    let m = HashMap::from([
        ("fc1.weight".to_string(), t(rnd(16 * n), &[16, n])),
        ("fc1.bias".to_string(), t(rnd(16), &[16])),
        ("fc2.weight".to_string(), t(rnd(48), &[3, 16])),
        ("fc2.bias".to_string(), t(rnd(3), &[3])),
    ]);
    model(specs, m, 3)
}

/// On an interacting game: efficiency holds for the exact, sampled, kernel and Owen
/// values; KernelSHAP with every coalition equals exact Shapley; sampling lies
/// within a few standard errors of exact.
#[test]
fn nonlinear_model_exact_against_sampled() {
    let m = mlp();
    let xs = t([image(6), image(7)].concat(), &[2, 1, H, W]);
    let f = grid(2); // 9 features
    let tg = Target::Class(2);
    let exact = ShapleyExact::new(ShapleyExactConfig { features: f.clone() }).unwrap().attribute(&m, &xs, &tg).unwrap();
    let ex = values(&exact);
    assert!(diag(&exact, "efficiency_gap").iter().all(|g| g.abs() < 1e-5));
    let full = KernelShap::new(KernelShapConfig { features: f.clone(), samples: 510, ..Default::default() }).unwrap();
    let ks = full.attribute(&m, &xs, &tg).unwrap();
    assert!(close(&values(&ks)[0], &ex[0], 1e-6) && close(&values(&ks)[1], &ex[1], 1e-6));
    let samp = ShapleySampling::new(ShapleySamplingConfig { features: f.clone(), samples: 2000, ..Default::default() }).unwrap();
    let s = samp.attribute(&m, &xs, &tg).unwrap();
    let se: Vec<Vec<f64>> = serde_json::from_value(s.diagnostics["std_err"].clone()).unwrap();
    let sv = values(&s);
    let mut inside = 0;
    for e in 0..2 {
        for i in 0..9 {
            inside += ((sv[e][i] - ex[e][i]).abs() <= 3.0 * se[e][i] + 1e-9) as usize;
        }
    }
    assert!(inside >= 17, "{inside}/18 within 3 standard errors");
    assert!(diag(&s, "efficiency_gap").iter().all(|g| g.abs() < 1e-4));
    let p = PartitionShap::new(PartitionShapConfig { features: f }).unwrap().attribute(&m, &xs, &tg).unwrap();
    assert!(diag(&p, "efficiency_gap").iter().all(|g| g.abs() < 1e-4));
}

/// Same seed, same map; an example explained alone equals it inside a batch.
#[test]
fn seeded_and_batch_independent() {
    let m = mlp();
    let (a, b) = (image(10), image(11));
    let both = t([a.clone(), b.clone()].concat(), &[2, 1, H, W]);
    let alone = t(b, &[1, 1, H, W]);
    let f = grid(2);
    let stochastic: Vec<Box<dyn Attributor>> = vec![
        Box::new(ShapleySampling::new(ShapleySamplingConfig { features: f.clone(), samples: 6, seed: 3, ..Default::default() }).unwrap()),
        Box::new(KernelShap::new(KernelShapConfig { features: f.clone(), samples: 60, seed: 3, ..Default::default() }).unwrap()),
        Box::new(Lime::new(LimeConfig { features: f.clone(), samples: 50, seed: 3, ..Default::default() }).unwrap()),
        Box::new(Rise::new(RiseConfig { samples: 64, cells: 3, seed: 3, ..Default::default() }).unwrap()),
    ];
    let tg = Target::Class(1);
    for meth in stochastic {
        let m1 = meth.attribute(&m, &both, &tg).unwrap().attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let m2 = meth.attribute(&m, &both, &tg).unwrap().attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(m1, m2, "{}", meth.name());
        let one = meth.attribute(&m, &alone, &tg).unwrap().attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(one.iter().zip(&m1[H * W..]).all(|(x, y)| (x - y).abs() < 1e-5), "{}", meth.name());
    }
    // Another seed gives another map.
    let other = ShapleySampling::new(ShapleySamplingConfig { features: f, samples: 6, seed: 4, ..Default::default() }).unwrap();
    let s3 = ShapleySampling::new(ShapleySamplingConfig { features: grid(2), samples: 6, seed: 3, ..Default::default() }).unwrap();
    let x = |e: Explanation| e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(x(other.attribute(&m, &both, &tg).unwrap()), x(s3.attribute(&m, &both, &tg).unwrap()));
}

/// `tolerance=` stops sampling early; the sample counts say when.
#[test]
fn tolerance_stops_sampling() {
    let m = mlp();
    let xs = t(image(12), &[1, 1, H, W]);
    let cfg = |tol| ShapleySamplingConfig { features: grid(2), samples: 4000, tolerance: tol, ..Default::default() };
    let e = ShapleySampling::new(cfg(Some(0.05))).unwrap().attribute(&m, &xs, &Target::Class(0)).unwrap();
    let n = diag(&e, "samples")[0];
    assert!(n < 4000.0, "stopped at {n}");
    assert!(diag(&e, "max_std_err")[0] < 0.05);
    let r = Rise::new(RiseConfig { samples: 20_000, cells: 3, tolerance: Some(0.05), ..Default::default() }).unwrap();
    let e = r.attribute(&m, &xs, &Target::Class(0)).unwrap();
    assert!(diag(&e, "samples")[0] < 20_000.0 && diag(&e, "max_std_err")[0] < 0.05);
}

/// RISE with every cell kept sees the input itself: every pixel gets f(x).
#[test]
fn rise_with_full_masks_is_the_output() {
    let m = mlp();
    let xs = t(image(13), &[1, 1, H, W]);
    let fx = m.forward(&xs).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[2];
    let e = Rise::new(RiseConfig { samples: 16, p_keep: 1.0, ..Default::default() }).unwrap().attribute(&m, &xs, &Target::Class(2)).unwrap();
    let map = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(map.iter().all(|v| (v - fx).abs() < 1e-5), "{map:?} vs {fx}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let m = mlp();
    let xs = t(image(14), &[1, 1, H, W]);
    let tg = Target::Class(0);
    // More than 16 features for exact enumeration: names the alternatives.
    let e = ShapleyExact::new(ShapleyExactConfig { features: grid(1) }).unwrap().attribute(&m, &xs, &tg).unwrap_err();
    assert!(e.to_string().contains("shapley_sampling or kernel_shap"), "{e}");
    // A mask of the wrong shape.
    let wrong = Features { mask: MaskSpec::File(Arc::new(Tensor::zeros((5, 5), DType::I64, &D).unwrap())), ..Features::default() };
    let e = FeatureAblation::new(FeatureAblationConfig { features: wrong }).unwrap().attribute(&m, &xs, &tg).unwrap_err();
    assert!(e.to_string().contains("feature mask"), "{e}");
    // tolerance ≤ 0.
    for tol in [0.0, -1.0, f64::NAN] {
        assert!(ShapleySampling::new(ShapleySamplingConfig { tolerance: Some(tol), ..Default::default() }).is_err());
        assert!(Rise::new(RiseConfig { tolerance: Some(tol), ..Default::default() }).is_err());
    }
    // A baseline tensor of the wrong shape.
    let bad = Features { baselines: vec![Baseline::Tensor(Tensor::zeros((1, 5, 5), DType::F32, &D).unwrap())], ..grid(2) };
    let e = KernelShap::new(KernelShapConfig { features: bad, ..Default::default() }).unwrap().attribute(&m, &xs, &tg).unwrap_err();
    assert!(e.to_string().contains("baseline"), "{e}");
    // Permutation needs a batch.
    let e = FeaturePermutation::new(Default::default()).unwrap().attribute(&m, &xs, &tg).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
    // Parameters through the schema: an unknown mask word, a bad compactness.
    let p = lumen_core::Params::parse_pairs(&["mask=hexagons"]).unwrap();
    assert!(<FeatureAblation as Method>::from_params(&p, &lumen_core::config::NoMethods).is_err());
    let p = lumen_core::Params::parse_pairs(&["mask=slic", "compactness=-1"]).unwrap();
    let e = <KernelShap as Method>::from_params(&p, &lumen_core::config::NoMethods).err().unwrap();
    assert!(e.to_string().contains("compactness"), "{e}");
}

/// Feature permutation: with two examples, the permuted feature comes from the other
/// one, so its attribution is `f(x_b) − f(x_b with feature i from x_{1−b})` or zero.
#[test]
fn permutation_swaps_features_between_examples() {
    let m = mlp();
    let (a, b) = (image(15), image(16));
    let xs = t([a.clone(), b.clone()].concat(), &[2, 1, H, W]);
    let f = grid(3);
    let e = FeaturePermutation::new(FeaturePermutationConfig { features: f.clone(), seed: 1 }).unwrap();
    let v = values(&e.attribute(&m, &xs, &Target::Class(0)).unwrap());
    let mask = &f.mask.build("t", &xs).unwrap()[0];
    let fwd = |x: &[f32]| m.forward(&t(x.to_vec(), &[1, 1, H, W])).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    for i in 0..mask.n {
        let mut swapped = a.clone();
        for (j, &id) in mask.ids.iter().enumerate() {
            if id as usize == i {
                swapped[j] = b[j];
            }
        }
        let moved = fwd(&a) - fwd(&swapped);
        assert!((v[0][i] - moved).abs() < 1e-5 || v[0][i].abs() < 1e-12, "feature {i}: {} vs {moved}", v[0][i]);
    }
}

// ---- XRAI ----

/// The greedy step by hand: a = [3, 1, −1, 2], candidates {0,1}, {1,2}, {3}.
/// Densities 2, 0, 2: {0,1} wins the tie (lowest index); then {3} (2) beats {1,2},
/// which now adds only pixel 2 (−1); then {1,2} (−1).
#[test]
fn xrai_greedy_by_hand() {
    let a = [3.0, 1.0, -1.0, 2.0];
    let cands = vec![vec![0, 1], vec![1, 2], vec![3]];
    let r = xrai::greedy(&a, &cands, 1, 1.0);
    assert_eq!((r.order.clone(), r.gains.clone()), (vec![0, 2, 1], vec![2.0, 2.0, -1.0]));
    assert_eq!(r.values, vec![2.0, 2.0, -1.0, 2.0]);
    assert_eq!(r.rank, vec![1, 1, 3, 2]);
    // area = 0.5: two pixels suffice; the uncovered get the lowest gain selected.
    let r = xrai::greedy(&a, &cands, 1, 0.5);
    assert_eq!((r.order.clone(), r.values.clone(), r.rank.clone()), (vec![0], vec![2.0; 4], vec![1, 1, 0, 0]));
    // min_new = 2: {3} is dropped at once, {1,2} once {0,1} took pixel 1.
    let r = xrai::greedy(&a, &cands, 2, 1.0);
    assert_eq!((r.order.clone(), r.rank.clone()), (vec![0], vec![1, 1, 0, 0]));
    // Negative gains: the uncovered pixel sits at the lowest one, not at 0.
    let r = xrai::greedy(&[-1.0, -3.0, 5.0], &[vec![0], vec![1]], 1, 1.0);
    assert_eq!((r.values, r.rank), (vec![-1.0, -3.0, -3.0], vec![1, 2, 0]));
    // Gains need not fall: {1,2} (3) takes the −4 away from {2,3}, whose rest {3}
    // then scores 4; the rank, not the value, is the selection order.
    let r = xrai::greedy(&[0.0, 10.0, -4.0, 4.0], &[vec![1, 2], vec![2, 3], vec![0]], 1, 1.0);
    assert_eq!((r.gains, r.values, r.rank), (vec![3.0, 4.0, 0.0], vec![0.0, 3.0, 3.0, 4.0], vec![3, 1, 1, 2]));
    // No candidate: nothing covered, all 0.
    let r = xrai::greedy(&a, &[], 1, 1.0);
    assert_eq!((r.values, r.order.len()), (vec![0.0; 4], 0));
}

/// Brute force over sets, written independently: every step recomputes `s ∖ M` of
/// every candidate from scratch; returns (order, gains, value map) with the same
/// conventions (ties to the lowest index, uncovered = lowest gain).
fn xrai_brute(a: &[f64], cands: &[Vec<usize>], min_new: usize, area: f64) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    use std::collections::BTreeSet;
    let n = a.len();
    let mut m: BTreeSet<usize> = BTreeSet::new();
    let mut value: Vec<Option<f64>> = vec![None; n];
    let (mut order, mut gains) = (vec![], vec![]);
    while (m.len() as f64) < area * n as f64 - 1e-9 {
        let mut best: Option<(usize, f64, Vec<usize>)> = None;
        for (i, s) in cands.iter().enumerate() {
            let new: Vec<usize> = s.iter().copied().filter(|p| !m.contains(p)).collect();
            if new.is_empty() || new.len() < min_new {
                continue;
            }
            let g = new.iter().map(|&p| a[p]).sum::<f64>() / new.len() as f64;
            if best.as_ref().map(|b| g > b.1).unwrap_or(true) {
                best = Some((i, g, new));
            }
        }
        let Some((i, g, new)) = best else { break };
        for p in new {
            m.insert(p);
            value[p] = Some(g);
        }
        order.push(i);
        gains.push(g);
    }
    let low = gains.iter().cloned().fold(f64::INFINITY, f64::min);
    let low = if gains.is_empty() { 0.0 } else { low };
    (order, gains, value.into_iter().map(|v| v.unwrap_or(low)).collect())
}

fn xrai_cfg(inner: Arc<dyn Attributor>) -> XraiConfig {
    XraiConfig { inner: lumen_core::Nested::built(inner), segments: vec![2, 4, 9], ..Default::default() }
}

/// The candidates are the SLIC segments of every scale, dilated by a disk; the
/// greedy step matches the brute force on them (integer values: many exact ties).
#[test]
fn xrai_candidates_and_greedy_match_brute_force() {
    let img: Vec<f32> = image(20);
    let base = xrai_cfg(Arc::new(lumen_std_gradients::Saliency::default()));
    let plain = xrai::candidates(&img, 1, H, W, &XraiConfig { dilation: 0, ..base.clone() }).unwrap();
    // Undilated: each scale partitions the image.
    let mut at = 0;
    for &k in &base.segments {
        let s = crate::slic::slic(&img, 1, H, W, k, base.compactness, 10).unwrap();
        let mut seen = vec![0; H * W];
        for c in &plain[at..at + s.count] {
            c.iter().for_each(|&p| seen[p] += 1);
        }
        assert!(seen.iter().all(|&v| v == 1), "scale {k}: {seen:?}");
        at += s.count;
    }
    assert_eq!(at, plain.len());
    // Radius 1: the segment and its 4-neighbours inside the image.
    let dil = xrai::candidates(&img, 1, H, W, &base).unwrap();
    for (p0, d) in plain.iter().zip(&dil) {
        let mut want: Vec<usize> = (0..H * W)
            .filter(|&q| {
                let (y, x) = ((q / W) as i64, (q % W) as i64);
                p0.iter().any(|&p| ((p / W) as i64 - y).abs() + ((p % W) as i64 - x).abs() <= 1)
            })
            .collect();
        want.sort();
        assert_eq!(d, &want);
    }
    let mut r = StdRng::seed_from_u64(21);
    for trial in 0..20 {
        let a: Vec<f64> = (0..H * W).map(|_| r.gen_range(-4..=4) as f64).collect();
        let (min_new, area) = [(1, 1.0), (2, 1.0), (1, 0.4), (3, 0.75)][trial % 4];
        let g = xrai::greedy(&a, &dil, min_new, area);
        let (order, gains, values) = xrai_brute(&a, &dil, min_new, area);
        assert_eq!((&g.order, &g.gains, &g.values), (&order, &gains, &values), "trial {trial}");
        assert!(g.order.iter().zip(1..).all(|(&i, k)| dil[i].iter().any(|&p| g.rank[p] == k)));
    }
}

/// A linear model on 2-channel 6×6 images, f = Σ w ⊙ x: input × gradient is w ⊙ x,
/// so XRAI's map is the greedy map of Σ_c w_c x_c over the image's candidates, the
/// same on both channels.
#[test]
fn xrai_on_a_linear_model_is_the_greedy_map_of_w_times_x() {
    let n = 2 * H * W;
    let mut r = StdRng::seed_from_u64(22);
    let wt: Vec<f32> = (0..n).map(|_| r.gen_range(-1.0..1.0)).collect();
    let specs = vec![
        LayerSpec::new("flatten", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: n, out_features: 1, bias: false }),
    ];
    let vb = VarBuilder::from_tensors(HashMap::from([("fc.weight".to_string(), t(wt.clone(), &[1, n]))]), DType::F32, &D);
    let net = Network::from_spec(&specs, vb).unwrap();
    let labels = vec!["0".into()];
    let info = ModelInfo { name: "lin2".into(), input_shape: vec![2, H, W], labels, input_range: (0.0, 1.0), card: None };
    let m = NetworkModel::new(info, net, &D).unwrap();
    let x: Vec<f32> = [image(23), image(24)].concat();
    let xs = t(x.clone(), &[1, 2, H, W]);
    let cfg = xrai_cfg(Arc::new(lumen_std_gradients::InputXGradient::default()));
    let e = Xrai::new(cfg.clone()).unwrap().attribute(&m, &xs, &Target::Class(0)).unwrap();
    let a: Vec<f64> = (0..H * W).map(|p| (wt[p] * x[p]) as f64 + (wt[H * W + p] * x[H * W + p]) as f64).collect();
    let (order, gains, values) = xrai_brute(&a, &xrai::candidates(&x, 2, H, W, &cfg).unwrap(), 1, 1.0);
    let map = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for c in 0..2 {
        for p in 0..H * W {
            assert!((map[c * H * W + p] as f64 - values[p]).abs() < 1e-5, "channel {c} pixel {p}");
        }
    }
    assert_eq!(diag(&e, "regions"), vec![order.len() as f64]);
    let g: Vec<Vec<f64>> = serde_json::from_value(e.diagnostics["region_gains"].clone()).unwrap();
    assert!(close(&g[0], &gains, 1e-5));
    // Full area: every pixel ranked, and its value is the gain of its region.
    let rank = e.tensor("region_rank").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(rank.iter().all(|&k| k >= 1.0));
    assert!((0..H * W).all(|p| (map[p] as f64 - gains[rank[p] as usize - 1]).abs() < 1e-5));
    assert!(!Xrai::new(cfg).unwrap().props().completeness);
}

/// area < 1 stops early: uncovered pixels have rank 0 and the lowest gain selected.
#[test]
fn xrai_partial_area_leaves_pixels_uncovered() {
    let m = mlp();
    let xs = t(image(25), &[1, 1, H, W]);
    let cfg = XraiConfig { area: 0.3, ..xrai_cfg(Arc::new(lumen_std_gradients::Saliency::default())) };
    let e = Xrai::new(cfg).unwrap().attribute(&m, &xs, &Target::Class(1)).unwrap();
    let map = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rank = e.tensor("region_rank").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let covered = rank.iter().filter(|&&k| k > 0.0).count();
    assert!(covered as f64 >= 0.3 * (H * W) as f64 && covered < H * W, "{covered}");
    let gains: Vec<Vec<f64>> = serde_json::from_value(e.diagnostics["region_gains"].clone()).unwrap();
    let low = gains[0].iter().cloned().fold(f64::INFINITY, f64::min) as f32;
    assert!(rank.iter().zip(&map).filter(|(k, _)| **k == 0.0).all(|(_, v)| (*v - low).abs() < 1e-6));
    assert!(map.iter().all(|v| *v >= low - 1e-6));
}

/// A batch gives its examples' maps; XRAI is reachable by name with inner=saliency;
/// bad parameters and non-image inputs are clear errors.
#[test]
fn xrai_batch_registry_and_errors() {
    lumen_std_gradients::link();
    let reg = lumen_core::registry::Registry::from_inventory().unwrap();
    let build = |pairs: &[&str]| reg.build_method("xrai", &lumen_core::Params::parse_pairs(pairs).unwrap());
    let meth = build(&["inner=saliency", "segments=3,6", "dilation=1"]).unwrap();
    assert_eq!(meth.name(), "xrai");
    let p = meth.params();
    assert_eq!((p["inner"].as_str(), p["segments"].as_str(), p["area"].as_str()), ("saliency", "3,6", "1"));
    let m = mlp();
    let (a, b) = (image(26), image(27));
    let both = t([a.clone(), b.clone()].concat(), &[2, 1, H, W]);
    let tg = Target::Classes(vec![0, 2]);
    let e = meth.attribute(&m, &both, &tg).unwrap();
    let batch = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(e.diagnostics["inner_method"], "saliency");
    for (i, (x, k)) in [(a, 0), (b, 2)].into_iter().enumerate() {
        let one = meth.attribute(&m, &t(x, &[1, 1, H, W]), &Target::Class(k)).unwrap();
        let one = one.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(one.iter().zip(&batch[i * H * W..]).all(|(x, y)| (x - y).abs() < 1e-6), "example {i}");
    }
    // The default inner method is integrated gradients.
    let d = build(&["inner.steps=4"]).unwrap();
    assert_eq!(d.params()["inner"], "integrated_gradients");
    assert!(d.attribute(&m, &both, &tg).is_ok());
    for (pair, name) in [
        ("segments=0", "segments"),
        ("segments=2.5", "segments"),
        ("segments=", "segments"),
        ("area=0", "area"),
        ("area=1.5", "area"),
        ("compactness=-1", "compactness"),
        ("min_new_pixels=0", "min_new_pixels"),
    ] {
        let e = build(&["inner=saliency", pair]).err().unwrap().to_string();
        assert!(e.contains(name), "{pair}: {e}");
    }
    // A flat model: [B, 36] fits it, but XRAI needs images.
    let specs = vec![LayerSpec::new("fc", LayerKind::Linear { in_features: H * W, out_features: 1, bias: false })];
    let w = HashMap::from([("fc.weight".to_string(), t(vec![0.5; H * W], &[1, H * W]))]);
    let vb = VarBuilder::from_tensors(w, DType::F32, &D);
    let labels = vec!["0".into()];
    let info = ModelInfo { name: "flat".into(), input_shape: vec![H * W], labels, input_range: (0.0, 1.0), card: None };
    let flat = NetworkModel::new(info, Network::from_spec(&specs, vb).unwrap(), &D).unwrap();
    let e = meth.attribute(&flat, &t(image(28), &[1, H * W]), &Target::Class(0)).unwrap_err().to_string();
    assert!(e.contains("[B, C, H, W]"), "{e}");
}
