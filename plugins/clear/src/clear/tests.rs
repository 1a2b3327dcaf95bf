//! The tests 1–4: deconvolution vs a naive back-projection, Ĉ and D on a
//! constructed example, HSV→RGB on known pixels, and refusal of other models.

use super::*;
use crate::render::{self, ClearRenderOptions};
use lumen_core::candle::{Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::model::{LayerKind as K, LayerSpec, ModelInfo, Network, NetworkModel};
use std::collections::HashMap;

fn model(specs: Vec<LayerSpec>, weights: Vec<(&str, Tensor)>, input_shape: Vec<usize>, classes: usize) -> NetworkModel {
    let d = Device::Cpu;
    let m: HashMap<String, Tensor> = weights.into_iter().map(|(k, t)| (k.to_string(), t)).collect();
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "tiny".into(),
        input_shape,
        labels: (0..classes).map(|c| c.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

fn conv(name: &str, i: usize, o: usize, k: usize, p: usize) -> LayerSpec {
    LayerSpec::new(name, K::Conv2d { in_channels: i, out_channels: o, kernel: k, stride: 1, padding: p, bias: true })
}

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

// Tiny two-layer net: conv1 1→2 3×3 pad 1, ReLU, maxpool 2, conv2 2→2 1×1 (class kernels), GAP.
const W1: [[[f32; 3]; 3]; 2] = [
    [[0.5, -1.0, 0.25], [1.0, 0.75, -0.5], [-0.25, 0.5, 1.0]],
    [[-0.5, 0.25, 1.0], [0.5, -1.0, 0.75], [1.0, -0.25, 0.5]],
];
const B1: [f32; 2] = [0.1, -0.2];
const W2: [[f32; 2]; 2] = [[1.5, -0.5], [-1.0, 2.0]];
const B2: [f32; 2] = [-0.3, -0.1];

fn two_layer() -> NetworkModel {
    let w1: Vec<f32> = W1.iter().flatten().flatten().copied().collect();
    let w2: Vec<f32> = W2.iter().flatten().copied().collect();
    model(
        vec![
            conv("conv1", 1, 2, 3, 1),
            LayerSpec::new("relu1", K::Relu),
            LayerSpec::new("pool1", K::MaxPool2d { kernel: 2, stride: 2 }),
            conv("conv2", 2, 2, 1, 0),
            LayerSpec::new("gap", K::GlobalAvgPool),
        ],
        vec![
            ("conv1.weight", t(&w1, &[2, 1, 3, 3])),
            ("conv1.bias", t(&B1, &[2])),
            ("conv2.weight", t(&w2, &[2, 2, 1, 1])),
            ("conv2.bias", t(&B2, &[2])),
        ],
        vec![1, 4, 4],
        2,
    )
}

/// Zeiler's back-projection of class kernel `c`, written out with loops.
fn naive_back_projection(x: &[[f32; 4]; 4], c: usize, seed: Seed) -> [[f32; 4]; 4] {
    // forward: conv1 (zero padding 1), ReLU, 2×2 max-pool with switches (first max).
    let mut r1 = [[[0f32; 4]; 4]; 2];
    for k in 0..2 {
        for i in 0..4 {
            for j in 0..4 {
                let mut a = B1[k];
                for u in 0..3 {
                    for v in 0..3 {
                        let (y, xx) = (i as i32 + u as i32 - 1, j as i32 + v as i32 - 1);
                        if (0..4).contains(&y) && (0..4).contains(&xx) {
                            a += W1[k][u][v] * x[y as usize][xx as usize];
                        }
                    }
                }
                r1[k][i][j] = a.max(0.0);
            }
        }
    }
    let mut pooled = [[[0f32; 2]; 2]; 2];
    let mut switch = [[[(0usize, 0usize); 2]; 2]; 2];
    for k in 0..2 {
        for pi in 0..2 {
            for pj in 0..2 {
                let mut best = (2 * pi, 2 * pj);
                for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (i, j) = (2 * pi + di, 2 * pj + dj);
                    if r1[k][i][j] > r1[k][best.0][best.1] {
                        best = (i, j);
                    }
                }
                pooled[k][pi][pj] = r1[k][best.0][best.1];
                switch[k][pi][pj] = best;
            }
        }
    }
    // the class kernel's activation map is the seed (eq. 3)
    let mut z = [[0f32; 2]; 2];
    for pi in 0..2 {
        for pj in 0..2 {
            let v = B2[c] + (0..2).map(|k| W2[c][k] * pooled[k][pi][pj]).sum::<f32>();
            z[pi][pj] = if seed == Seed::Positive { v.max(0.0) } else { v };
        }
    }
    // backward: transposed 1×1 conv, unpool to the switches, ReLU of the signal,
    // transposed conv1 (bias ignored).
    let mut g1 = [[[0f32; 4]; 4]; 2];
    for k in 0..2 {
        for pi in 0..2 {
            for pj in 0..2 {
                let (i, j) = switch[k][pi][pj];
                g1[k][i][j] = (W2[c][k] * z[pi][pj]).max(0.0);
            }
        }
    }
    let mut r = [[0f32; 4]; 4];
    for y in 0..4i32 {
        for xx in 0..4i32 {
            let mut s = 0.0;
            for k in 0..2 {
                for u in 0..3i32 {
                    for v in 0..3i32 {
                        let (i, j) = (y - u + 1, xx - v + 1);
                        if (0..4).contains(&i) && (0..4).contains(&j) {
                            s += W1[k][u as usize][v as usize] * g1[k][i as usize][j as usize];
                        }
                    }
                }
            }
            r[y as usize][xx as usize] = s;
        }
    }
    r
}

/// Test 1: the deconvolution matches the naive back-projection for both class kernels,
/// on two examples with different class orders, whatever the batch size.
#[test]
fn deconvolution_matches_naive_back_projection() {
    let m = two_layer();
    // The third example is nearly blank: conv1's channel 1 (bias −0.2) is dead over
    // whole pool windows there, where only Deconvnet (not Guided Backprop) lets the
    // signal through, to the window's first position.
    let xs: [[[f32; 4]; 4]; 3] = [
        [[0.9, 0.1, 0.4, 0.0], [0.3, 0.8, 0.2, 0.6], [0.0, 0.5, 1.0, 0.7], [0.2, 0.0, 0.35, 0.15]],
        [[0.05, 0.6, 0.0, 0.95], [0.7, 0.2, 0.45, 0.1], [0.85, 0.0, 0.3, 0.55], [0.4, 0.65, 0.1, 0.0]],
        [[0.3, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
    ];
    let flat: Vec<f32> = xs.iter().flatten().flatten().copied().collect();
    let x = t(&flat, &[3, 1, 4, 4]);
    let classes = vec![vec![0, 1], vec![1, 0], vec![0, 1]];
    let mut nonzero = 0;
    let mut differ = false;
    for (bs, seed) in [(1, Seed::Signed), (3, Seed::Signed), (64, Seed::Signed), (1, Seed::Positive), (64, Seed::Positive)] {
        let r = attentive_responses(&m, &x, &classes, bs, seed).unwrap();
        assert_eq!(r.dims(), &[3, 2, 1, 4, 4]);
        let got = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (b, cs) in classes.iter().enumerate() {
            for (s, c) in cs.iter().enumerate() {
                let want = naive_back_projection(&xs[b], *c, seed);
                differ |= want != naive_back_projection(&xs[b], *c, Seed::Signed);
                for i in 0..4 {
                    for j in 0..4 {
                        let g = got[((b * 2 + s) * 4 + i) * 4 + j];
                        assert!((g - want[i][j]).abs() < 1e-5, "bs {bs} example {b} class {c} ({i},{j}): {g} vs {}", want[i][j]);
                        nonzero += (want[i][j].abs() > 1e-3) as usize;
                    }
                }
            }
        }
    }
    assert!(nonzero > 20, "the example must exercise non-trivial maps");
    assert!(differ, "the example must have negative class activations");
    // The method's per-class maps are the same back-projections.
    let signed = Clear::new(ClearConfig { seed: Seed::Signed, ..Default::default() });
    let e = signed.attribute(&m, &x, &Target::Classes(vec![1, 0, 0])).unwrap();
    let cm = e.tensor("class_maps").unwrap().flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
    let want = naive_back_projection(&xs[1], 1, Seed::Signed);
    for i in 0..4 {
        for j in 0..4 {
            assert!((cm[1][1][i * 4 + j] - want[i][j]).abs() < 1e-5);
        }
    }
    // example 1's target is class 0
    let want0 = naive_back_projection(&xs[1], 0, Seed::Signed);
    let a = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for p in 0..16 {
        assert!((a[16 + p] - want0[p / 4][p % 4]).abs() < 1e-5, "attribution is the target's map");
    }
}

/// Two input channels, class kernels reading one each, with biases ±0.5:
/// z0 = 2·x0 + 0.5, z1 = 3·x1 − 0.5 (through identity 1×1 class kernels).
fn two_regions() -> (NetworkModel, Tensor) {
    let m = model(
        vec![
            conv("conv1", 2, 2, 1, 0),
            LayerSpec::new("relu1", K::Relu),
            conv("conv2", 2, 2, 1, 0),
            LayerSpec::new("gap", K::GlobalAvgPool),
        ],
        vec![
            ("conv1.weight", t(&[2., 0., 0., 3.], &[2, 2, 1, 1])),
            ("conv1.bias", t(&[0., 0.], &[2])),
            ("conv2.weight", t(&[1., 0., 0., 1.], &[2, 2, 1, 1])),
            ("conv2.bias", t(&[0.5, -0.5], &[2])),
        ],
        vec![2, 4, 4],
        2,
    );
    // channel 0 lights region A (top-left 2×2), channel 1 region B (bottom-right 2×2)
    let mut v = vec![0f32; 32];
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        v[i * 4 + j] = 1.0;
        v[16 + (i + 2) * 4 + j + 2] = 1.0;
    }
    (m, t(&v, &[1, 2, 4, 4]))
}

fn in_a(p: usize) -> bool {
    p / 4 < 2 && p % 4 < 2
}
fn in_b(p: usize) -> bool {
    p / 4 >= 2 && p % 4 >= 2
}

/// Test 2: Ĉ and D where two class kernels respond in known, separate regions.
/// By hand: R(x|0) = 2·z0 = 5 on A, 1 elsewhere; R(x|1) = 3·relu(z1) = 7.5 on B, 0
/// elsewhere (the negative activation −0.5 is no seed, and would die at the ReLU
/// anyway). So Ĉ = 1 on B, 0 elsewhere;
/// D = 5 on A, 7.5 on B, 1 elsewhere.
#[test]
fn dominant_class_and_response_on_two_regions() {
    let (m, x) = two_regions();
    let e = Clear::default().attribute(&m, &x, &Target::Class(1)).unwrap();
    let maps = e.tensor("class_maps").unwrap().flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
    let cmap = e.tensor("class_map").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let level = e.tensor("level").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(e.tensor("class_map").unwrap().dims(), &[1, 4, 4]);
    for p in 0..16 {
        let (r0, r1, c, d) = if in_a(p) {
            (5.0, 0.0, 0.0, 5.0)
        } else if in_b(p) {
            (1.0, 7.5, 1.0, 7.5)
        } else {
            (1.0, 0.0, 0.0, 1.0)
        };
        assert!((maps[0][0][p] - r0).abs() < 1e-5 && (maps[0][1][p] - r1).abs() < 1e-5, "pixel {p}");
        assert_eq!(cmap[p], c, "Ĉ at pixel {p}");
        assert!((level[p] - d).abs() < 1e-5, "D at pixel {p}: {}", level[p]);
    }
    // attribution: class 1's back-projection per input channel (all on channel 1)
    let a = e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for p in 0..16 {
        assert_eq!(a[p], 0.0);
        assert!((a[16 + p] - if in_b(p) { 7.5 } else { 0.0 }).abs() < 1e-5);
    }
    // V = D / 7.5; hue of class 1 of 2 is 180° (cyan), of class 0 is 0° (red)
    let rgb = e.tensor("clear_rgb").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let px = |p: usize| [rgb[p], rgb[16 + p], rgb[32 + p]];
    let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(px(15), [0.0, 1.0, 1.0]), "{:?}", px(15));
    assert!(close(px(0), [5.0 / 7.5, 0.0, 0.0]), "{:?}", px(0));
    assert!(close(px(3), [1.0 / 7.5, 0.0, 0.0]), "{:?}", px(3));
    // red/blue for target 1: red on B, blue elsewhere; binary: B hot (white at the
    // maximum), A green at 5/7.5
    let rb = e.tensor("red_blue").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(close([rb[15], rb[31], rb[47]], [1.0, 0.0, 0.0]));
    assert!(close([rb[0], rb[16], rb[32]], [0.0, 0.0, 5.0 / 7.5]));
    let bi = e.tensor("binary_rgb").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(close([bi[15], bi[31], bi[47]], [1.0, 1.0, 1.0]));
    assert!(close([bi[0], bi[16], bi[32]], [0.0, 5.0 / 7.5, 0.0]));
    // top_k = 1 keeps only the larger logit's class (class 0: mean z0 = 0.75 vs
    // z1 = 0.25·3 − 0.5 = 0.25); the target 1 is still explained apart.
    let e1 = Clear::new(ClearConfig { top_k: 1, batch_size: 2, ..Default::default() }).attribute(&m, &x, &Target::Class(1)).unwrap();
    assert_eq!(e1.tensor("classes").unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.0]]);
    let a1 = e1.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a1, a);
    let c1 = e1.tensor("class_map").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(c1.iter().all(|c| *c == 0.0));
}

/// Test 3: HSV→RGB and the rendered picture on known pixels.
#[test]
fn hsv_to_rgb_on_known_pixels() {
    let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6);
    let cases: [((f32, f32, f32), [f32; 3]); 10] = [
        ((0.0, 1.0, 1.0), [1.0, 0.0, 0.0]),
        ((120.0, 1.0, 1.0), [0.0, 1.0, 0.0]),
        ((240.0, 1.0, 1.0), [0.0, 0.0, 1.0]),
        ((60.0, 1.0, 0.5), [0.5, 0.5, 0.0]),
        ((180.0, 1.0, 1.0), [0.0, 1.0, 1.0]),
        ((300.0, 1.0, 1.0), [1.0, 0.0, 1.0]),
        ((30.0, 1.0, 1.0), [1.0, 0.5, 0.0]),
        ((360.0, 1.0, 0.25), [0.25, 0.0, 0.0]),
        ((200.0, 0.0, 0.6), [0.6, 0.6, 0.6]),
        ((108.0, 1.0, 1.0), [0.2, 1.0, 0.0]), // class 3 of 10
    ];
    for ((h, s, v), want) in cases {
        let got = render::hsv_to_rgb(h, s, v);
        assert!(close(got, want), "hsv({h}, {s}, {v}) = {got:?}, want {want:?}");
    }
    assert_eq!(render::hue(3, 10), 108.0);
    // Ĉ = (class 0, class 5 of 10) with D = (2, 4): V = (0.5, 1); class 5 is 180°.
    let px = render::clear_pixels(&[0, 5], &render::normalise(&[2.0, 4.0]), 10);
    assert!(close(px[0], [0.5, 0.0, 0.0]) && close(px[1], [0.0, 1.0, 1.0]), "{px:?}");
    assert_eq!(render::normalise(&[-1.0, 0.0]), vec![0.0, 0.0]);
    // The picture: a 1×2 map, scale 2, exact bytes.
    let rgb = t(&[0.5, 0.0, 0.0, 1.0, 0.0, 1.0], &[3, 1, 2]);
    let img = render::picture(&rgb, None, &ClearRenderOptions { scale: 2, ..Default::default() }).unwrap();
    assert_eq!(img.dimensions(), (4, 2));
    assert_eq!(img.get_pixel(0, 1).0, [128, 0, 0]);
    assert_eq!(img.get_pixel(3, 0).0, [0, 255, 255]);
    // overlay: where V = 0 only the lightened input shows; V = 1 with opacity 1 is the colour
    let input = t(&[0.0, 1.0, 1.0], &[1, 1, 3]);
    let rgb = t(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &[3, 1, 3]);
    let opts = ClearRenderOptions { scale: 1, overlay: true, overlay_alpha: 1.0, ..Default::default() };
    let img = render::picture(&rgb, Some(&input), &opts).unwrap();
    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255], "no ink, no response: white");
    assert_eq!(img.get_pixel(1, 0).0, [115; 3], "ink lightened by 0.45: 255·0.45 ≈ 115");
    assert_eq!(img.get_pixel(2, 0).0, [255, 0, 0]);
    // hot scale endpoints for the binary heatmap
    assert_eq!(render::hot(0.0), [0.0, 0.0, 0.0]);
    assert_eq!(render::hot(1.0), [1.0, 1.0, 1.0]);
}

/// Test 4: models without per-class kernels feeding global average pooling are refused.
#[test]
fn models_without_class_kernels_are_refused() {
    // conv → relu → flatten → linear (like mnist-cnn)
    let dense = model(
        vec![
            conv("conv1", 1, 2, 3, 1),
            LayerSpec::new("relu1", K::Relu),
            LayerSpec::new("flat", K::Flatten),
            LayerSpec::new("fc", K::Linear { in_features: 32, out_features: 2, bias: true }),
        ],
        vec![
            ("conv1.weight", t(&[0.1; 18], &[2, 1, 3, 3])),
            ("conv1.bias", t(&[0., 0.], &[2])),
            ("fc.weight", t(&[0.01; 64], &[2, 32])),
            ("fc.bias", t(&[0., 0.], &[2])),
        ],
        vec![1, 4, 4],
        2,
    );
    let x = t(&[0.5; 16], &[1, 1, 4, 4]);
    let e = Clear::default().attribute(&dense, &x, &Target::Predicted).unwrap_err();
    assert!(matches!(e, Error::UnsupportedModel { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("one kernel per class") && msg.contains("global average pooling"), "{msg}");
    assert!(msg.contains("no global average pooling"), "{msg}");
    // GAP present, but 3 kernels for 2 classes (and a linear head after it)
    let wrong = model(
        vec![conv("conv1", 1, 3, 1, 0), LayerSpec::new("gap", K::GlobalAvgPool)],
        vec![("conv1.weight", t(&[1., 2., 3.], &[3, 1, 1, 1])), ("conv1.bias", t(&[0.; 3], &[3]))],
        vec![1, 4, 4],
        2,
    );
    let msg = class_layer(&wrong).unwrap_err().to_string();
    assert!(msg.contains("3 kernels") && msg.contains("2 classes"), "{msg}");
    // hidden-unit targets make no sense here
    let (m, x) = two_regions();
    let e = Clear::default()
        .attribute(&m, &x, &Target::Hidden { layer: "conv2".into(), channel: 0, position: None })
        .unwrap_err();
    assert!(e.to_string().contains("hidden"), "{e}");
}
