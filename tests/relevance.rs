//! DeepLIFT and LRP (issue 4): the checks the issue lists, each against hand-computed
//! values or a naive re-implementation, plus the genomics reproduction.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::network::init_params;
use lumen_core::model::{LayerKind as K, LayerSpec as L, ModelInfo, Network, NetworkModel};
use lumen_core::rules::RuleCtx;
use lumen_std_relevance::rules::lrp::{lrp_composite, Conventions, LrpRule, LrpSettings, DEFAULT_STABILIZER};
use lumen_core::{Attributor, Classifier, Explanation, Target};
use lumen_std_relevance::deeplift::{DeepLift, DeepLiftConfig, DeepLiftRule, DeepLiftRules, Reference};
use lumen_std_relevance::lrp::{Lrp, LrpConfig};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

fn model(specs: Vec<L>, params: HashMap<String, Tensor>, input_shape: &[usize], classes: usize) -> NetworkModel {
    let d = Device::Cpu;
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(params, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "test".into(),
        input_shape: input_shape.to_vec(),
        labels: (0..classes).map(|c| c.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

fn t1(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}
fn t2(v: &[&[f32]]) -> Tensor {
    let rows: Vec<Tensor> = v.iter().map(|r| t1(r)).collect();
    Tensor::stack(&rows, 0).unwrap()
}
fn fc(name: &str, i: usize, o: usize) -> L {
    L::new(name, K::Linear { in_features: i, out_features: o, bias: true })
}
fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}
fn deeplift(rule: DeepLiftRule, reference: Reference, refs: Option<Tensor>) -> DeepLift {
    DeepLift::new(DeepLiftConfig { reference, reference_tensor: refs, rules: DeepLiftRules { rule, ..Default::default() }, ..Default::default() })
}
fn diag(e: &Explanation, key: &str) -> Vec<f64> {
    e.diagnostics[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}
fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
    }
}

/// 1. A network with the properties of the 2016 paper's Figure 1: y = 0.1 + 0.2·ReLU(x1 + 2·x2 + 2).
/// At x = (−1, −1) the output is 0.1 and the gradient is zero; at the zero reference it
/// is 0.5. DeepLIFT splits Δy = −0.4 by the weights: 1/3 and 2/3.
#[test]
fn deeplift_figure1_saturated_relu() {
    let mut p = HashMap::new();
    p.insert("fc1.weight".into(), t2(&[&[1., 2.]]));
    p.insert("fc1.bias".into(), t1(&[2.]));
    p.insert("fc2.weight".into(), t2(&[&[0.2]]));
    p.insert("fc2.bias".into(), t1(&[0.1]));
    let m = model(vec![fc("fc1", 2, 1), L::new("relu", K::Relu), fc("fc2", 1, 1)], p, &[2], 1);
    let x = t2(&[&[-1., -1.]]);
    assert!((flat(&m.forward(&x).unwrap())[0] - 0.1).abs() < 1e-6);
    let g = lumen_core::method::gradient(&m, &x, &Target::Classes(vec![0]), Default::default()).unwrap();
    assert_eq!(flat(&g.grad), vec![0.0, 0.0], "saturated: zero gradient");
    let e = deeplift(DeepLiftRule::Rescale, Reference::Zero, None).attribute(&m, &x, &Target::Class(0)).unwrap();
    close(&flat(e.attribution()), &[(0.1 - 0.5) / 3.0, (0.1 - 0.5) * 2.0 / 3.0], 1e-6);
    assert!(diag(&e, "summation_to_delta")[0].abs() < 1e-6);
    assert!((diag(&e, "delta")[0] - (-0.4)).abs() < 1e-6);
}

fn shipped_or_random(name: &str, specs: Vec<L>) -> NetworkModel {
    let d = Device::Cpu;
    match lumen_models::card_path(name) {
        Ok(card) => NetworkModel::load(card, &d).unwrap(),
        // Summation-to-delta does not depend on training.
        Err(_) => model(specs, init_params(&lumen_models::arch::by_name(name).unwrap(), 3, &d).unwrap(), &[1, 28, 28], 10),
    }
}

fn check_summation(m: &dyn Classifier, x: &Tensor, dl: &DeepLift, what: &str) {
    let e = dl.attribute(m, x, &Target::Predicted).unwrap();
    let (delta, err) = (diag(&e, "delta"), diag(&e, "summation_to_delta"));
    for (d, r) in delta.iter().zip(&err) {
        assert!(r.abs() <= 1e-4 * d.abs().max(1e-3), "{what}: Σ C − Δ = {r} for Δ = {d}");
    }
    // Σ C is the attribution's sum.
    let sums = e.attribution().flatten_from(1).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    close(&sums, &diag(&e, "sum_contributions").iter().map(|v| *v as f32).collect::<Vec<_>>(), 1e-5);
}

/// 2. Summation-to-delta on both MNIST nets (zero, blurred, random references), on a
/// sigmoid/tanh network, and for RevealCancel and a distribution of references.
#[test]
fn deeplift_summation_to_delta() {
    let d = Device::Cpu;
    let data = lumen_core::data::Mnist::load().unwrap();
    let (x, _) = data.batch(lumen_core::data::Split::Test, &[0, 1, 2], &d).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let random = Tensor::from_vec((0..3 * 784).map(|_| rng.gen::<f32>()).collect::<Vec<_>>(), (3, 1, 28, 28), &d).unwrap();
    for (name, specs) in [("mnist-cnn", lumen_models::arch::mnist_cnn()), ("mnist-allcnn", lumen_models::arch::mnist_allcnn())] {
        let m = shipped_or_random(name, specs);
        for (label, dl) in [
            ("zero", deeplift(DeepLiftRule::Rescale, Reference::Zero, None)),
            ("blur", deeplift(DeepLiftRule::Rescale, Reference::Blur(3.0), None)),
            ("random", deeplift(DeepLiftRule::Rescale, Reference::Tensor, Some(random.clone()))),
            ("revealcancel", deeplift(DeepLiftRule::RevealCancel, Reference::Blur(3.0), None)),
        ] {
            check_summation(&m, &x, &dl, &format!("{name}/{label}"));
        }
    }
    // Sigmoid and tanh network, with a distribution of references.
    let specs = vec![
        fc("fc1", 12, 16),
        L::new("sig", K::Sigmoid),
        fc("fc2", 16, 8),
        L::new("tanh", K::Tanh),
        fc("fc3", 8, 3),
    ];
    let m = model(specs.clone(), init_params(&specs, 9, &d).unwrap(), &[12], 3);
    let x = Tensor::from_vec((0..4 * 12).map(|_| rng.gen_range(-3f32..3.)).collect::<Vec<_>>(), (4, 12), &d).unwrap();
    let pool = Tensor::from_vec((0..20 * 12).map(|_| rng.gen_range(-1f32..1.)).collect::<Vec<_>>(), (20, 12), &d).unwrap();
    check_summation(&m, &x, &deeplift(DeepLiftRule::Rescale, Reference::Zero, None), "sigmoid/zero");
    check_summation(&m, &x, &deeplift(DeepLiftRule::RevealCancel, Reference::Constant(0.5), None), "sigmoid/revealcancel");
    let shap = deeplift(DeepLiftRule::Rescale, Reference::Distribution(6), Some(pool));
    check_summation(&m, &x, &shap, "sigmoid/distribution");
    let a = flat(shap.attribute(&m, &x, &Target::Class(1)).unwrap().attribution());
    let b = flat(shap.attribute(&m, &x, &Target::Class(1)).unwrap().attribution());
    assert_eq!(a, b, "seeded");
}

/// 3. Max pooling where the reference's max sits elsewhere (eq. 11): Δy goes to the
/// input's argmax, so each window's contributions sum to its Δy.
#[test]
fn deeplift_maxpool_routes_delta_to_input_argmax() {
    let specs = vec![
        L::new("pool", K::MaxPool1d { kernel: 2, stride: 2 }),
        L::new("flatten", K::Flatten),
        fc("fc", 2, 1),
    ];
    let mut p = HashMap::new();
    p.insert("fc.weight".into(), t2(&[&[2., -1.]]));
    p.insert("fc.bias".into(), t1(&[0.]));
    let m = model(specs, p, &[1, 4], 1);
    // Window 1: x = (3, 1), ref = (0, 2): Δy = 3 − 2 = 1, all to position 0 → C = 2·1.
    // Window 2: x = (0, −1), ref = (0, 5): Δy = 0 − 5 = −5; the input's argmax has
    // δx = 0, so Δy goes to the other position (δx = −6) → C = −1·(−5) = 5.
    let x = Tensor::new(&[[[3f32, 1., 0., -1.]]], &Device::Cpu).unwrap();
    let r = Tensor::new(&[[0f32, 2., 0., 5.]], &Device::Cpu).unwrap();
    let e = deeplift(DeepLiftRule::Rescale, Reference::Tensor, Some(r)).attribute(&m, &x, &Target::Class(0)).unwrap();
    close(&flat(e.attribution()), &[2.0, 0.0, 0.0, 5.0], 1e-6);
    // f(x) = 2·3 − 0 = 6, f(ref) = 2·2 − 5 = −1.
    assert!((diag(&e, "delta")[0] - 7.0).abs() < 1e-6);
    assert!(diag(&e, "summation_to_delta")[0].abs() < 1e-6);
    // The gradient would have given 2·3 = 6 to position 0.
}

/// 5. RevealCancel on min(i1, i2) = ReLU(i1) − ReLU(i1 − i2) with i = (3, 1) and a zero
/// reference (2017 paper, §3.5.3): Rescale (like the gradient) gives everything to i2;
/// RevealCancel gives each input half of min = 1.
#[test]
fn revealcancel_fixes_the_min_example() {
    let mut p = HashMap::new();
    p.insert("fc1.weight".into(), t2(&[&[1., -1.], &[1., 0.]]));
    p.insert("fc1.bias".into(), t1(&[0., 0.]));
    p.insert("fc2.weight".into(), t2(&[&[-1., 1.]]));
    p.insert("fc2.bias".into(), t1(&[0.]));
    let m = model(vec![fc("fc1", 2, 2), L::new("relu", K::Relu), fc("fc2", 2, 1)], p, &[2], 1);
    let x = t2(&[&[3., 1.]]);
    assert_eq!(flat(&m.forward(&x).unwrap()), vec![1.0]);
    let rescale = deeplift(DeepLiftRule::Rescale, Reference::Zero, None).attribute(&m, &x, &Target::Class(0)).unwrap();
    close(&flat(rescale.attribution()), &[0.0, 1.0], 1e-6);
    // h1: x⁰ = 0, Δ⁺ = 3 (from i1), Δ⁻ = −1 (from i2).
    // Δy⁺ = ½(relu(3) − 0) + ½(relu(2) − relu(−1)) = 2.5 → m⁺ = 5/6
    // Δy⁻ = ½(relu(−1) − 0) + ½(relu(2) − relu(3)) = −0.5 → m⁻ = 1/2
    // C_i1 = 3·(1 − 5/6) = 0.5 ; C_i2 = 1·(−1)·(−1)·(1/2) = 0.5
    let rc = deeplift(DeepLiftRule::RevealCancel, Reference::Zero, None).attribute(&m, &x, &Target::Class(0)).unwrap();
    close(&flat(rc.attribution()), &[0.5, 0.5], 1e-6);
}

// ---- LRP --------------------------------------------------------------------------

/// A naive dense layer: `z_j = Σ_i w[j][i] a_i + b_j`; `conn` marks real connections
/// (a conv's receptive field), which the flat rule counts.
struct Dense {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
    conn: Vec<Vec<bool>>,
}

fn dense_from_linear(w: &Tensor, b: &Tensor) -> Dense {
    let w: Vec<Vec<f64>> = w.to_vec2::<f32>().unwrap().iter().map(|r| r.iter().map(|v| *v as f64).collect()).collect();
    let conn = w.iter().map(|r| vec![true; r.len()]).collect();
    Dense { w, b: flat(b).iter().map(|v| *v as f64).collect(), conn }
}

/// conv1d (stride 1, zero padding `pad`) as a dense matrix over flattened [C, L].
fn dense_from_conv1d(w: &Tensor, b: &Tensor, len: usize, pad: usize) -> Dense {
    let wv = w.to_vec3::<f32>().unwrap(); // [O, I, K]
    let (o, i, k) = (wv.len(), wv[0].len(), wv[0][0].len());
    let lout = len + 2 * pad - k + 1;
    let bv = flat(b);
    let mut d = Dense { w: vec![vec![0.0; i * len]; o * lout], b: vec![0.0; o * lout], conn: vec![vec![false; i * len]; o * lout] };
    for oc in 0..o {
        for p in 0..lout {
            let row = oc * lout + p;
            d.b[row] = bv[oc] as f64;
            for ic in 0..i {
                for t in 0..k {
                    let src = p as isize + t as isize - pad as isize;
                    if src >= 0 && (src as usize) < len {
                        d.w[row][ic * len + src as usize] = wv[oc][ic][t] as f64;
                        d.conn[row][ic * len + src as usize] = true;
                    }
                }
            }
        }
    }
    d
}

/// The rule's `q_ij` contributions for output j (and whether the bias enters z_j),
/// in Zennit's or the classic convention `c`; every rule but ε and LRP-0 adds
/// lumen's stabiliser with the sign of z.
#[allow(clippy::too_many_arguments)]
fn naive_lrp_layer(l: &Dense, a: &[f64], r_out: &[f64], rule: LrpRule, eps: f64, gamma: f64, lo: f64, hi: f64, c: Conventions) -> Vec<f64> {
    let st = DEFAULT_STABILIZER;
    let mut r_in = vec![0.0; a.len()];
    let pos = |v: f64| v.max(0.0);
    let neg = |v: f64| v.min(0.0);
    let sgn = |z: f64| if z >= 0.0 { 1.0 } else { -1.0 };
    for j in 0..l.w.len() {
        // (q_ij for each i, the denominator) per group, with the group's coefficient.
        let mut groups: Vec<(f64, Vec<f64>, f64)> = vec![];
        let n = a.len();
        let q = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        match rule {
            LrpRule::Zero | LrpRule::Epsilon => {
                let qs = q(&|i| a[i] * l.w[j][i]);
                let z: f64 = qs.iter().sum::<f64>() + l.b[j];
                let e = if rule == LrpRule::Epsilon { eps } else { 0.0 };
                groups.push((1.0, qs, z + e * sgn(z)));
            }
            LrpRule::Gamma if !c.gamma_sign_aware => {
                let qs = q(&|i| a[i] * (l.w[j][i] + gamma * pos(l.w[j][i])));
                let z = qs.iter().sum::<f64>() + l.b[j] + gamma * pos(l.b[j]);
                groups.push((1.0, qs, z + st * sgn(z)));
            }
            LrpRule::Gamma => {
                // Zennit's generalised γ: the output's sign picks which part of w grows.
                let out: f64 = (0..n).map(|i| a[i] * l.w[j][i]).sum::<f64>() + l.b[j];
                let (up, down): (fn(f64) -> f64, fn(f64) -> f64) = (|v| v.max(0.0), |v| v.min(0.0));
                let (fp, fn_) = if out > 0.0 { (up, down) } else { (down, up) };
                if out != 0.0 {
                    let qs = q(&|i| pos(a[i]) * (l.w[j][i] + gamma * fp(l.w[j][i])) + neg(a[i]) * (l.w[j][i] + gamma * fn_(l.w[j][i])));
                    let z = qs.iter().sum::<f64>() + l.b[j] + gamma * fp(l.b[j]);
                    groups.push((1.0, qs, z + st * sgn(z)));
                }
            }
            LrpRule::ZPlus => {
                let qs = q(&|i| pos(a[i]) * pos(l.w[j][i]) + neg(a[i]) * neg(l.w[j][i]));
                let b = if c.zplus_bias { pos(l.b[j]) } else { 0.0 };
                let z = qs.iter().sum::<f64>() + b;
                groups.push((1.0, qs, z + st * sgn(z)));
            }
            LrpRule::AlphaBeta { alpha, beta } => {
                let qp = q(&|i| pos(a[i]) * pos(l.w[j][i]) + neg(a[i]) * neg(l.w[j][i]));
                let zp = qp.iter().sum::<f64>() + pos(l.b[j]);
                let qn = q(&|i| pos(a[i]) * neg(l.w[j][i]) + neg(a[i]) * pos(l.w[j][i]));
                let zn = qn.iter().sum::<f64>() + neg(l.b[j]);
                groups.push((alpha, qp, zp + st * sgn(zp)));
                groups.push((-beta, qn, zn + st * sgn(zn)));
            }
            LrpRule::Flat => {
                let qs = q(&|i| if l.conn[j][i] { 1.0 } else { 0.0 });
                let z: f64 = qs.iter().sum();
                groups.push((1.0, qs, z + st));
            }
            LrpRule::WSquare => {
                let qs = q(&|i| l.w[j][i] * l.w[j][i]);
                let b = if c.wsquare_bias { l.b[j] * l.b[j] } else { 0.0 };
                let z = qs.iter().sum::<f64>() + b;
                groups.push((1.0, qs, z + st));
            }
            LrpRule::ZBox => {
                let qs = q(&|i| a[i] * l.w[j][i] - lo * pos(l.w[j][i]) - hi * neg(l.w[j][i]));
                let z: f64 = qs.iter().sum();
                groups.push((1.0, qs, z + st * sgn(z)));
            }
        }
        for (coef, qs, z) in groups {
            if z == 0.0 {
                continue;
            }
            for i in 0..n {
                r_in[i] += coef * qs[i] * r_out[j] / z;
            }
        }
    }
    r_in
}

fn relu(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.max(0.0)).collect()
}
fn affine(l: &Dense, a: &[f64]) -> Vec<f64> {
    l.w.iter().zip(&l.b).map(|(r, b)| r.iter().zip(a).map(|(w, x)| w * x).sum::<f64>() + b).collect()
}

/// 4. Every LRP rule against a naive loop implementation of its formula, on a
/// conv1d → ReLU → linear → ReLU → linear network (inputs of both signs), in
/// Zennit's conventions (the default) and the classic ones.
#[test]
fn lrp_rules_match_naive_formulas() {
    let d = Device::Cpu;
    let specs = vec![
        L::new("conv", K::Conv1d { in_channels: 2, out_channels: 3, kernel: 3, stride: 1, padding: 1, bias: true }),
        L::new("relu1", K::Relu),
        L::new("flatten", K::Flatten),
        fc("fc1", 15, 6),
        L::new("relu2", K::Relu),
        fc("fc2", 6, 3),
    ];
    let params = init_params(&specs, 11, &d).unwrap();
    let m = model(specs, params.clone(), &[2, 5], 3);
    let layers = [
        dense_from_conv1d(&params["conv.weight"], &params["conv.bias"], 5, 1),
        dense_from_linear(&params["fc1.weight"], &params["fc1.bias"]),
        dense_from_linear(&params["fc2.weight"], &params["fc2.bias"]),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let xv: Vec<f32> = (0..10).map(|_| rng.gen_range(-1f32..1.)).collect();
    let x = Tensor::from_vec(xv.clone(), (1, 2, 5), &d).unwrap();
    let (eps, gamma, lo, hi) = (0.05, 0.3, -1.0, 1.0);
    let rules = [
        LrpRule::Zero,
        LrpRule::Epsilon,
        LrpRule::Gamma,
        LrpRule::ZPlus,
        LrpRule::AlphaBeta { alpha: 1.0, beta: 0.0 },
        LrpRule::AlphaBeta { alpha: 2.0, beta: 1.0 },
        LrpRule::Flat,
        LrpRule::WSquare,
        LrpRule::ZBox,
    ];
    for (rule, c) in rules.into_iter().flat_map(|r| [(r, Conventions::ZENNIT), (r, Conventions::CLASSIC)]) {
        // z^B is a first-layer rule: ε above it.
        let (first, rest) = if rule == LrpRule::ZBox { (rule, LrpRule::Epsilon) } else { (rule, rule) };
        // naive forward + backward, class 1
        let a0: Vec<f64> = xv.iter().map(|v| *v as f64).collect();
        let a1 = relu(&affine(&layers[0], &a0));
        let a2 = relu(&affine(&layers[1], &a1));
        let z = affine(&layers[2], &a2);
        let mut r = vec![0.0; 3];
        r[1] = z[1];
        let r2 = naive_lrp_layer(&layers[2], &a2, &r, rest, eps, gamma, lo, hi, c);
        let r1 = naive_lrp_layer(&layers[1], &a1, &r2, rest, eps, gamma, lo, hi, c);
        let r0 = naive_lrp_layer(&layers[0], &a0, &r1, first, eps, gamma, lo, hi, c);
        let want: Vec<f32> = r0.iter().map(|v| *v as f32).collect();
        let map = lrp_composite("t", Some(first), rest, rest, &LrpSettings::new(eps, gamma, lo, hi).with_conventions(c));
        let ctx = RuleCtx::default();
        let got = lumen_std_relevance::lrp::relevance(&m, &x, &Target::Class(1), &map, ctx).unwrap();
        let got = flat(&got);
        let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * scale.max(1e-3), "{rule:?} {c:?} at {i}: {g} vs {w}\n{got:?}\n{want:?}");
        }
    }
    // The registered method reads its rule options from parameters.
    let e = Lrp::new(LrpConfig { composite: "lrp_epsilon".into(), epsilon: eps, ..Default::default() })
        .attribute(&m, &x, &Target::Class(1))
        .unwrap();
    assert_eq!(e.attribution().dims(), &[1, 2, 5]);
}

/// The seed's equivalence: on ReLU networks with biases, LRP-0 is gradient × input.
#[test]
fn lrp_zero_equals_gradient_times_input() {
    let d = Device::Cpu;
    let data = lumen_core::data::Mnist::load().unwrap();
    let (x, _) = data.batch(lumen_core::data::Split::Test, &[3, 4], &d).unwrap();
    for (name, specs) in [("mnist-cnn", lumen_models::arch::mnist_cnn()), ("mnist-allcnn", lumen_models::arch::mnist_allcnn())] {
        let m = model(specs.clone(), init_params(&specs, 21, &d).unwrap(), &[1, 28, 28], 10);
        let t = Target::Classes(vec![2, 7]);
        let lrp = Lrp::new(LrpConfig { composite: "lrp_zero".into(), ..Default::default() }).attribute(&m, &x, &t).unwrap();
        let g = lumen_core::method::gradient(&m, &x, &t, Default::default()).unwrap();
        let gx = flat(&(g.grad * &x).unwrap());
        let l = flat(lrp.attribution());
        let scale = gx.iter().fold(0f32, |s, v| s.max(v.abs()));
        for (a, b) in l.iter().zip(&gx) {
            assert!((a - b).abs() <= 1e-4 * scale, "{name}: {a} vs {b}");
        }
    }
    // A hand-built net: y = w2·relu(W1 x + b1) + b2.
    let mut p = HashMap::new();
    p.insert("fc1.weight".into(), t2(&[&[1., -2., 0.5], &[-1., 1., 1.]]));
    p.insert("fc1.bias".into(), t1(&[0.1, -0.2]));
    p.insert("fc2.weight".into(), t2(&[&[2., -1.]]));
    p.insert("fc2.bias".into(), t1(&[0.3]));
    let m = model(vec![fc("fc1", 3, 2), L::new("relu", K::Relu), fc("fc2", 2, 1)], p, &[3], 1);
    // h = (0.9, −0.6) → only unit 0 active: grad = 2·(1, −2, 0.5) ⇒ grad × x = (2, −0.8, 0.4)
    let x = t2(&[&[1., 0.2, 0.4]]);
    let e = Lrp::new(LrpConfig { composite: "lrp_zero".into(), ..Default::default() }).attribute(&m, &x, &Target::Class(0)).unwrap();
    close(&flat(e.attribution()), &[2.0, -0.8, 0.4], 1e-5);
}

#[test]
fn methods_are_registered_and_reject_black_boxes() {
    let out = lumen(&["list"]);
    let s = String::from_utf8_lossy(&out.stdout);
    for name in ["deeplift", "lrp", "genomics-cnn", "revealcancel", "composite"] {
        assert!(s.contains(name), "{name} missing from lumen list:\n{s}");
    }
    lumen_std_relevance::link();
    let reg = lumen_core::Registry::from_inventory().unwrap();
    let names: Vec<&str> = reg.composites().map(|(e, _)| e.name).collect();
    for n in ["deeplift_rescale", "deeplift_revealcancel", "lrp_epsilon", "lrp_composite_epsilon_gamma_box", "lrp_alpha2beta1"] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
}

/// The genomics experiment end to end on the shipped weights (quick: 300 test
/// sequences): the table and JSON are written, fractions are shares, and DeepLIFT's
/// contributions sum to Δ.
#[test]
fn reproduce_genomics_quick() {
    let dir = tmpdir("genomics");
    let out = lumen(&["reproduce", "genomics", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(table.contains("GATA") && table.contains("gradient × input") && table.contains("auROC"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let auroc = json["auroc"].as_f64().unwrap();
    assert!(auroc > GENOMICS_AUROC_BAR - 0.05, "auROC {auroc} on the quick test set");
    let n = json["n_explained"].as_u64().unwrap();
    assert!(n > 50 && n <= 300, "{n} explained positives");
    let err = json["max_summation_error"].as_f64().unwrap();
    assert!(err < 1e-3, "relative summation-to-delta error {err}");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        for key in ["fraction_gata", "fraction_cagatg", "hit_rate_gata", "hit_rate_cagatg"] {
            let v = row[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v} in {row}");
        }
        // A fraction of top-k positions cannot exceed the share of sequences with a hit.
        assert!(row["fraction_gata"].as_f64().unwrap() <= row["hit_rate_gata"].as_f64().unwrap());
    }
    // Motifs cover about 3% of each sequence per motif; a trained model's DeepLIFT
    // map concentrates on them far above that.
    let dl = &rows[0];
    let found = dl["fraction_gata"].as_f64().unwrap() + dl["fraction_cagatg"].as_f64().unwrap();
    assert!(found > GENOMICS_MOTIF_BAR, "DeepLIFT top-10 in motifs: {found}");
}

/// Bars for the shipped genomics-cnn, a little under what it measured (card metrics).
const GENOMICS_AUROC_BAR: f64 = 0.88; // measured 0.900 on the 2,000 test sequences
const GENOMICS_MOTIF_BAR: f64 = 0.6; // measured 0.91 (GATA + CAGATG shares)

/// The shipped genomics-cnn is trained: auROC on the 2,000 held-out sequences.
#[test]
fn genomics_cnn_shipped_auroc() {
    use lumen_std_relevance::genomics as g;
    let d = Device::Cpu;
    let m = g::load(&d).unwrap();
    let test = lumen_core::data::genomics::Genomics::simulate(&g::ExperimentConfig::default().test).unwrap();
    let p = g::predict(m.as_ref(), &test, &d).unwrap();
    let auroc = g::auroc(&p, &test.labels());
    assert!(auroc > GENOMICS_AUROC_BAR, "auROC {auroc}");
    let card = m.info().card.clone().unwrap();
    assert!((card.metrics["test_auroc"] - auroc).abs() < 1e-3, "card says {}, measured {auroc}", card.metrics["test_auroc"]);
}
