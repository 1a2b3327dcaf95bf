//! Guided Backprop and Deconvnet against a naive re-implementation that writes the
//! modified backward of a Conv–ReLU–Pool–Linear net by hand, loop by loop.

use super::*;
use lumen_core::candle::{DType, Device};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const C_OUT: usize = 2;
const H: usize = 6;
const K: usize = 3;
const P: usize = H / 2;
const F: usize = C_OUT * P * P;
const CLASSES: usize = 3;

struct Weights {
    conv_w: Vec<f32>, // [C_OUT, 1, K, K]
    conv_b: Vec<f32>,
    fc_w: Vec<f32>, // [CLASSES, F]
    fc_b: Vec<f32>,
}

fn weights(seed: u64) -> Weights {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = |n: usize| (0..n).map(|_| rng.gen_range(-1f32..1.)).collect::<Vec<_>>();
    Weights { conv_w: v(C_OUT * K * K), conv_b: v(C_OUT), fc_w: v(CLASSES * F), fc_b: v(CLASSES) }
}

fn model(w: &Weights) -> NetworkModel {
    let d = Device::Cpu;
    let specs = vec![
        LayerSpec::new(
            "conv",
            LayerKind::Conv2d { in_channels: 1, out_channels: C_OUT, kernel: K, stride: 1, padding: 1, bias: true },
        ),
        LayerSpec::new("relu", LayerKind::Relu),
        LayerSpec::new("pool", LayerKind::MaxPool2d { kernel: 2, stride: 2 }),
        LayerSpec::new("flat", LayerKind::Flatten),
        LayerSpec::new("fc", LayerKind::Linear { in_features: F, out_features: CLASSES, bias: true }),
    ];
    let mut m = HashMap::new();
    m.insert("conv.weight".into(), Tensor::from_vec(w.conv_w.clone(), (C_OUT, 1, K, K), &d).unwrap());
    m.insert("conv.bias".into(), Tensor::from_vec(w.conv_b.clone(), C_OUT, &d).unwrap());
    m.insert("fc.weight".into(), Tensor::from_vec(w.fc_w.clone(), (CLASSES, F), &d).unwrap());
    m.insert("fc.bias".into(), Tensor::from_vec(w.fc_b.clone(), CLASSES, &d).unwrap());
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "crpl".into(),
        input_shape: vec![1, H, H],
        labels: (0..CLASSES).map(|c| c.to_string()).collect(),
        input_range: (-1.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

#[derive(Clone, Copy)]
enum Relu {
    Plain,
    Guided,
    Deconv,
}

/// Forward and modified backward of one example, written out by hand.
fn naive(w: &Weights, x: &[f32], class: usize, rule: Relu) -> Vec<f32> {
    // conv, pad 1
    let mut z = vec![0f32; C_OUT * H * H];
    for o in 0..C_OUT {
        for i in 0..H {
            for j in 0..H {
                let mut s = w.conv_b[o];
                for u in 0..K {
                    for v in 0..K {
                        let (ii, jj) = (i as isize + u as isize - 1, j as isize + v as isize - 1);
                        if ii >= 0 && jj >= 0 && (ii as usize) < H && (jj as usize) < H {
                            s += w.conv_w[(o * K + u) * K + v] * x[ii as usize * H + jj as usize];
                        }
                    }
                }
                z[(o * H + i) * H + j] = s;
            }
        }
    }
    let r: Vec<f32> = z.iter().map(|v| v.max(0.0)).collect();
    // max-pool 2×2 with switches (first maximum in row-major window order)
    let mut switch = vec![0usize; F];
    for o in 0..C_OUT {
        for pi in 0..P {
            for pj in 0..P {
                let mut best = (2 * pi, 2 * pj);
                for (u, v) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (i, j) = (2 * pi + u, 2 * pj + v);
                    if r[(o * H + i) * H + j] > r[(o * H + best.0) * H + best.1] {
                        best = (i, j);
                    }
                }
                switch[(o * P + pi) * P + pj] = (o * H + best.0) * H + best.1;
            }
        }
    }
    // backward: d y_class / d pooled = fc row; unpool through the switches
    let mut gr = vec![0f32; C_OUT * H * H];
    for f in 0..F {
        gr[switch[f]] += w.fc_w[class * F + f];
    }
    let gz: Vec<f32> = gr
        .iter()
        .zip(&z)
        .map(|(&g, &zv)| match rule {
            Relu::Plain => if zv > 0.0 { g } else { 0.0 },
            Relu::Guided => if zv > 0.0 { g.max(0.0) } else { 0.0 },
            Relu::Deconv => g.max(0.0),
        })
        .collect();
    // transposed convolution
    let mut gx = vec![0f32; H * H];
    for o in 0..C_OUT {
        for i in 0..H {
            for j in 0..H {
                for u in 0..K {
                    for v in 0..K {
                        let (ii, jj) = (i as isize + u as isize - 1, j as isize + v as isize - 1);
                        if ii >= 0 && jj >= 0 && (ii as usize) < H && (jj as usize) < H {
                            gx[ii as usize * H + jj as usize] += w.conv_w[(o * K + u) * K + v] * gz[(o * H + i) * H + j];
                        }
                    }
                }
            }
        }
    }
    gx
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

#[test]
fn guided_and_deconv_match_naive_backward() {
    let d = Device::Cpu;
    for seed in 0..4u64 {
        let w = weights(seed);
        let m = model(&w);
        let mut rng = rand::rngs::StdRng::seed_from_u64(100 + seed);
        let b = 3;
        let xs: Vec<f32> = (0..b * H * H).map(|_| rng.gen_range(-1f32..1.)).collect();
        let x = Tensor::from_vec(xs.clone(), (b, 1, H, H), &d).unwrap();
        let classes = vec![0, 2, 1];
        let target = Target::Classes(classes.clone());
        let cfg = ModifiedGradientConfig { batch_size: 2 }; // two chunks
        let cases: [(Box<dyn Attributor>, Relu); 3] = [
            (Box::new(ModifiedGradient::guided_backprop(cfg.clone())), Relu::Guided),
            (Box::new(ModifiedGradient::deconvnet(cfg.clone())), Relu::Deconv),
            (Box::new(ModifiedGradient::new("plain", "none", cfg.clone())), Relu::Plain),
        ];
        for (method, rule) in cases.iter().take(2) {
            let got = method.attribute(&m, &x, &target).unwrap();
            let got = got.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for e in 0..b {
                let want = naive(&w, &xs[e * H * H..(e + 1) * H * H], classes[e], *rule);
                let g = &got[e * H * H..(e + 1) * H * H];
                assert!(close(g, &want), "seed {seed} {} example {e}:\n{g:?}\n{want:?}", method.name());
            }
        }
        // The plain gradient (no rules) agrees with the naive plain backward too, and
        // differs from both modified ones: the rules do change something here.
        let plain = lumen_core::method::gradient(&m, &x, &target, ForwardOptions::default()).unwrap().grad;
        let plain = plain.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut guided_all = vec![];
        for e in 0..b {
            let xe = &xs[e * H * H..(e + 1) * H * H];
            assert!(close(&plain[e * H * H..(e + 1) * H * H], &naive(&w, xe, classes[e], Relu::Plain)));
            guided_all.extend(naive(&w, xe, classes[e], Relu::Guided));
        }
        assert!(!close(&plain, &guided_all), "seed {seed}: guided equals plain");
        // An unknown preset is a clear error.
        let e = cases[2].0.attribute(&m, &x, &target).unwrap_err().to_string();
        assert!(e.contains("composite") && e.contains("guided_backprop"), "{e}");
    }
}

/// A classifier that is not built from the layer vocabulary.
struct BlackBox(NetworkModel);

impl Classifier for BlackBox {
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

#[test]
fn black_box_models_are_refused_clearly() {
    let m = BlackBox(model(&weights(0)));
    let x = Tensor::zeros((1, 1, H, H), DType::F32, &Device::Cpu).unwrap();
    let e = ModifiedGradient::guided_backprop(Default::default()).attribute(&m, &x, &Target::Class(0)).unwrap_err();
    assert!(matches!(e, Error::UnsupportedModel { .. }), "{e}");
    assert!(e.to_string().contains("guided_backprop"), "{e}");
}

fn tiny(specs: Vec<LayerSpec>, params: Vec<(&str, Tensor)>, input_shape: Vec<usize>) -> NetworkModel {
    let d = Device::Cpu;
    let m: HashMap<String, Tensor> = params.into_iter().map(|(k, t)| (k.to_string(), t)).collect();
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "tiny".into(),
        input_shape,
        labels: vec!["0".into(), "1".into()],
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

fn run(m: &NetworkModel, x: &Tensor, classes: Vec<usize>) -> (Vec<f32>, Vec<f32>) {
    let t = Target::Classes(classes);
    let g = ModifiedGradient::guided_backprop(Default::default()).attribute(m, x, &t).unwrap();
    let d = ModifiedGradient::deconvnet(Default::default()).attribute(m, x, &t).unwrap();
    let f = |e: &Explanation| e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (f(&g), f(&d))
}

/// The three tiny nets of the test plan, by hand.
#[test]
fn tiny_nets_by_hand() {
    let d = Device::Cpu;
    // y0 = 1 − relu(1 − x1 − x2), y1 = relu(1 − x1 − x2)
    let relu2 = tiny(
        vec![
            LayerSpec::new("fc1", LayerKind::Linear { in_features: 2, out_features: 1, bias: true }),
            LayerSpec::new("relu", LayerKind::Relu),
            LayerSpec::new("fc2", LayerKind::Linear { in_features: 1, out_features: 2, bias: true }),
        ],
        vec![
            ("fc1.weight", Tensor::new(&[[-1f32, -1.]], &d).unwrap()),
            ("fc1.bias", Tensor::new(&[1f32], &d).unwrap()),
            ("fc2.weight", Tensor::new(&[[-1f32], [1.]], &d).unwrap()),
            ("fc2.bias", Tensor::new(&[1f32, 0.], &d).unwrap()),
        ],
        vec![2],
    );
    // Unit off at (0.5, 1.5): the plain gradient is 0 although y changed from the zero
    // input. Signal into the ReLU: −1 for y0, +1 for y1. Guided keeps the off mask: 0.
    // Deconv ignores it: relu(−1) = 0 for y0; relu(+1) = 1 → ∂/∂x = (−1, −1) for y1.
    let x = Tensor::new(&[[0.5f32, 1.5], [0.5, 1.5]], &d).unwrap();
    let (g, dc) = run(&relu2, &x, vec![0, 1]);
    assert_eq!(g, vec![0.0; 4]);
    assert_eq!(dc, vec![0.0, 0.0, -1.0, -1.0]);
    // Unit on at (0.1, 0.2): y0's signal −1 is cut by both; y1's passes: (−1, −1).
    let x = Tensor::new(&[[0.1f32, 0.2], [0.1, 0.2]], &d).unwrap();
    let (g, dc) = run(&relu2, &x, vec![0, 1]);
    assert_eq!(g, vec![0.0, 0.0, -1.0, -1.0]);
    assert_eq!(dc, vec![0.0, 0.0, -1.0, -1.0]);

    // A linear model has no ReLU: both are the weights.
    let lin = tiny(
        vec![LayerSpec::new("fc", LayerKind::Linear { in_features: 3, out_features: 2, bias: true })],
        vec![
            ("fc.weight", Tensor::new(&[[1f32, -2., 0.5], [-1., 1., 1.]], &d).unwrap()),
            ("fc.bias", Tensor::new(&[0.1f32, -0.2], &d).unwrap()),
        ],
        vec![3],
    );
    let x = Tensor::new(&[[1f32, 0.2, 0.4], [1., 0.2, 0.4]], &d).unwrap();
    let (g, dc) = run(&lin, &x, vec![1, 0]);
    assert_eq!(g, vec![-1.0, 1.0, 1.0, 1.0, -2.0, 0.5]);
    assert_eq!(dc, g);

    // Max-pool net: the signal goes to each window's maximum (the switches).
    let mp = tiny(
        vec![
            LayerSpec::new("pool", LayerKind::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("flat", LayerKind::Flatten),
            LayerSpec::new("fc", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
        ],
        vec![("fc.weight", Tensor::new(&[[2f32, -1.], [0.5, 3.]], &d).unwrap())],
        vec![1, 2, 4],
    );
    let x = Tensor::new(&[1f32, 3., -2., 0.5, 2., -1., -4., 0.2], &d).unwrap().reshape((1, 1, 2, 4)).unwrap();
    let (g, dc) = run(&mp, &x, vec![0]);
    assert_eq!(g, vec![0., 2., 0., -1., 0., 0., 0., 0.]);
    assert_eq!(dc, g);
}
