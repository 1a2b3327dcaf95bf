//! Each op against candle's own op (forward) and against central finite differences
//! in f64 (backward, including the gradients' own backwards).

use super::*;
use candle_core::{Device, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const D0: Device = Device::Cpu;

fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &D0).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest |a − b| relative to the largest |b| (at least 1e-30).
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Central differences of `f` at `v`, coordinate by coordinate.
fn fd(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut w = v.to_vec();
    (0..v.len())
        .map(|i| {
            w[i] = v[i] + h;
            let up = f(&w);
            w[i] = v[i] - h;
            let down = f(&w);
            w[i] = v[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn dot(y: &Tensor, c: &Tensor) -> f64 {
    (y * c).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

struct ConvCase {
    x: Vec<usize>,
    w: Vec<usize>,
    p: ConvParams,
}

fn conv_cases() -> Vec<ConvCase> {
    let c = |x: [usize; 4], w: [usize; 4], s: (usize, usize), p: (usize, usize)| ConvCase {
        x: x.to_vec(),
        w: w.to_vec(),
        p: ConvParams { stride: s, padding: p },
    };
    vec![
        c([2, 3, 7, 6], [4, 3, 3, 3], (1, 1), (1, 1)),
        c([3, 2, 9, 8], [3, 2, 3, 3], (2, 2), (1, 1)),
        c([2, 2, 8, 9], [2, 2, 5, 5], (3, 3), (2, 2)),
        c([1, 3, 5, 5], [2, 3, 1, 1], (1, 1), (0, 0)), // pointwise: no im2col
        c([2, 2, 6, 7], [3, 2, 2, 3], (2, 1), (0, 1)), // rectangular, per-axis stride and padding
        c([3, 2, 1, 11], [2, 2, 1, 4], (1, 3), (0, 2)), // conv1d as height 1
    ]
}

#[test]
fn conv2d_forward_matches_candle() {
    let mut rng = StdRng::seed_from_u64(1);
    for case in conv_cases().iter().filter(|c| c.p.stride.0 == c.p.stride.1 && c.p.padding.0 == c.p.padding.1) {
        let x = rand_vec(&mut rng, case.x.iter().product());
        let w = rand_vec(&mut rng, case.w.iter().product());
        let b = rand_vec(&mut rng, case.w[0]);
        for dt in [DType::F32, DType::F64] {
            let (x, w, b) = (t64(&x, &case.x).to_dtype(dt).unwrap(), t64(&w, &case.w).to_dtype(dt).unwrap(), t64(&b, &[case.w[0]]).to_dtype(dt).unwrap());
            for bias in [None, Some(&b)] {
                let ours = conv2d(&x, &w, bias, case.p).unwrap();
                let theirs = with_candle_ops(|| conv2d(&x, &w, bias, case.p)).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                assert_eq!(ours.dtype(), dt);
                let tol = if dt == DType::F32 { 1e-5 } else { 1e-12 };
                let e = rel(&flat(&ours), &flat(&theirs));
                assert!(e < tol, "{:?} {:?} {dt:?}: {e}", case.x, case.p);
            }
        }
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    for case in conv_cases() {
        let xv = rand_vec(&mut rng, case.x.iter().product());
        let wv = rand_vec(&mut rng, case.w.iter().product());
        let bv = rand_vec(&mut rng, case.w[0]);
        let (x, w, b) = (Var::from_tensor(&t64(&xv, &case.x)).unwrap(), Var::from_tensor(&t64(&wv, &case.w)).unwrap(), Var::from_tensor(&t64(&bv, &[case.w[0]])).unwrap());
        let y = conv2d(&x, &w, Some(b.as_tensor()), case.p).unwrap();
        let c = t64(&rand_vec(&mut rng, y.elem_count()), y.dims());
        let g = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&conv2d(&t64(x, &case.x), &t64(w, &case.w), Some(&t64(b, &[case.w[0]])), case.p).unwrap(), &c);
        let tag = format!("{:?} {:?} {:?}", case.x, case.w, case.p);
        let e = rel(&flat(g.get(&x).unwrap()), &fd(&xv, |v| loss(v, &wv, &bv)));
        assert!(e < 1e-7, "input gradient {tag}: {e}");
        let e = rel(&flat(g.get(&w).unwrap()), &fd(&wv, |v| loss(&xv, v, &bv)));
        assert!(e < 1e-7, "weight gradient {tag}: {e}");
        let e = rel(&flat(g.get(&b).unwrap()), &fd(&bv, |v| loss(&xv, &wv, v)));
        assert!(e < 1e-7, "bias gradient {tag}: {e}");
    }
}

/// The gradient ops have backwards of their own (candle detaches gradients unless
/// `CANDLE_GRAD_DO_NOT_DETACH` is set, so they are called directly here).
#[test]
fn conv2d_gradient_ops_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    for case in [&conv_cases()[1], &conv_cases()[4]] {
        let (xv, wv) = (rand_vec(&mut rng, case.x.iter().product()), rand_vec(&mut rng, case.w.iter().product()));
        let ys = conv2d(&t64(&xv, &case.x), &t64(&wv, &case.w), None, case.p).unwrap().dims().to_vec();
        let gv = rand_vec(&mut rng, ys.iter().product());
        let hw = (case.x[2], case.x[3]);
        let k = (case.w[2], case.w[3]);
        let (r_x, r_w) = (t64(&rand_vec(&mut rng, xv.len()), &case.x), t64(&rand_vec(&mut rng, wv.len()), &case.w));
        let (x, w, gy) = (Var::from_tensor(&t64(&xv, &case.x)).unwrap(), Var::from_tensor(&t64(&wv, &case.w)).unwrap(), Var::from_tensor(&t64(&gv, &ys)).unwrap());
        // Σ dx(gy, w)·r_x + Σ dw(gy, x)·r_w
        let loss = |gy: &Tensor, w: &Tensor, x: &Tensor| {
            let dx = conv_input_grad(gy, w, hw, case.p).unwrap();
            let dw = conv_weight_grad(gy, x, k, case.p).unwrap();
            ((dx * &r_x).unwrap().sum_all().unwrap() + (dw * &r_w).unwrap().sum_all().unwrap()).unwrap()
        };
        let g = loss(&gy, &w, &x).backward().unwrap();
        let at = |gv: &[f64], wv: &[f64], xv: &[f64]| loss(&t64(gv, &ys), &t64(wv, &case.w), &t64(xv, &case.x)).to_scalar::<f64>().unwrap();
        let e = rel(&flat(g.get(&gy).unwrap()), &fd(&gv, |v| at(v, &wv, &xv)));
        assert!(e < 1e-7, "d/dgy {:?}: {e}", case.p);
        let e = rel(&flat(g.get(&w).unwrap()), &fd(&wv, |v| at(&gv, v, &xv)));
        assert!(e < 1e-7, "d/dw {:?}: {e}", case.p);
        let e = rel(&flat(g.get(&x).unwrap()), &fd(&xv, |v| at(&gv, &wv, v)));
        assert!(e < 1e-7, "d/dx {:?}: {e}", case.p);
    }
}

/// Constants get no gradient (candle's own conv computes the kernel's anyway);
/// weights that are `Var`s, or derived from one, do.
#[test]
fn only_tracked_arguments_get_gradients() {
    let mut rng = StdRng::seed_from_u64(4);
    let x = Var::from_tensor(&t64(&rand_vec(&mut rng, 2 * 2 * 5 * 5), &[2, 2, 5, 5])).unwrap();
    let w = t64(&rand_vec(&mut rng, 3 * 2 * 3 * 3), &[3, 2, 3, 3]);
    let b = t64(&rand_vec(&mut rng, 3), &[3]);
    let p = ConvParams { stride: (1, 1), padding: (1, 1) };
    let g = conv2d(&x, &w, Some(&b), p).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_some() && g.get(&w).is_none() && g.get(&b).is_none());
    let wv = Var::from_tensor(&w).unwrap();
    let w2 = (wv.as_tensor() * 2.0).unwrap(); // derived from a Var
    let g = conv2d(&x.detach(), &w2, Some(&b), p).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&wv).is_some() && g.get(&b).is_none() && g.get(&x).is_none());

    let xl = Var::from_tensor(&t64(&rand_vec(&mut rng, 6), &[2, 3])).unwrap();
    let (wl, bl) = (t64(&rand_vec(&mut rng, 12), &[4, 3]), t64(&rand_vec(&mut rng, 4), &[4]));
    let g = linear(&xl, &wl, Some(&bl)).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&xl).is_some() && g.get(&wl).is_none() && g.get(&bl).is_none());
}

#[test]
fn linear_matches_candle_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(5);
    let (b, f, o) = (3, 7, 5);
    let (xv, wv, bv) = (rand_vec(&mut rng, b * f), rand_vec(&mut rng, o * f), rand_vec(&mut rng, o));
    for dt in [DType::F32, DType::F64] {
        let (x, w, bt) = (t64(&xv, &[b, f]).to_dtype(dt).unwrap(), t64(&wv, &[o, f]).to_dtype(dt).unwrap(), t64(&bv, &[o]).to_dtype(dt).unwrap());
        for bias in [None, Some(&bt)] {
            let ours = linear(&x, &w, bias).unwrap();
            let theirs = with_candle_ops(|| linear(&x, &w, bias)).unwrap();
            let e = rel(&flat(&ours), &flat(&theirs));
            assert!(e < if dt == DType::F32 { 1e-6 } else { 1e-13 }, "{dt:?}: {e}");
        }
    }
    let (x, w, bt) = (Var::new(xv.as_slice(), &D0).unwrap(), Var::new(wv.as_slice(), &D0).unwrap(), Var::new(bv.as_slice(), &D0).unwrap());
    let (xr, wr) = (x.reshape((b, f)).unwrap(), w.reshape((o, f)).unwrap());
    let c = t64(&rand_vec(&mut rng, b * o), &[b, o]);
    let g = (linear(&xr, &wr, Some(bt.as_tensor())).unwrap() * &c).unwrap().sum_all().unwrap().backward().unwrap();
    let loss = |x: &[f64], w: &[f64], bb: &[f64]| dot(&linear(&t64(x, &[b, f]), &t64(w, &[o, f]), Some(&t64(bb, &[o]))).unwrap(), &c);
    assert!(rel(&flat(g.get(&x).unwrap()), &fd(&xv, |v| loss(v, &wv, &bv))) < 1e-7);
    assert!(rel(&flat(g.get(&w).unwrap()), &fd(&wv, |v| loss(&xv, v, &bv))) < 1e-7);
    assert!(rel(&flat(g.get(&bt).unwrap()), &fd(&bv, |v| loss(&xv, &wv, v))) < 1e-7);
}

/// Naive pooling reference, PyTorch's definition: max over the window within the
/// input, or the window sum over the divisor (window clipped to the padded input).
fn pool_ref(x: &[f64], dims: &[usize], p: PoolParams, max: bool) -> Vec<f64> {
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let g = p.geom(dims).unwrap();
    let mut out = vec![];
    for plane in 0..b * c {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let (ys, xs) = ((oy * g.sh) as isize - g.ph as isize, (ox * g.sw) as isize - g.pw as isize);
                let (ye, xe) = ((ys + g.kh as isize).min((h + g.ph) as isize), (xs + g.kw as isize).min((w + g.pw) as isize));
                let div = ((ye - ys) * (xe - xs)) as f64;
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for yy in ys.max(0)..ye.min(h as isize) {
                    for xx in xs.max(0)..xe.min(w as isize) {
                        let v = x[plane * h * w + yy as usize * w + xx as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out.push(if max { acc } else { acc / div });
            }
        }
    }
    out
}

fn pool_cases() -> Vec<(Vec<usize>, PoolParams)> {
    let p = |k: (usize, usize), s: (usize, usize), pad: (usize, usize), ceil: bool| PoolParams { kernel: k, stride: s, padding: pad, ceil_mode: ceil };
    vec![
        (vec![2, 3, 8, 8], p((2, 2), (2, 2), (0, 0), false)),
        (vec![2, 2, 7, 9], p((2, 2), (2, 2), (0, 0), false)), // cropped tail
        (vec![2, 2, 9, 9], p((3, 3), (2, 2), (1, 1), false)), // torchvision ResNet stem
        (vec![1, 2, 8, 10], p((3, 3), (2, 2), (1, 1), true)),
        (vec![2, 1, 7, 7], p((2, 2), (2, 2), (0, 0), true)), // partial last window
        (vec![2, 2, 6, 9], p((3, 2), (1, 2), (1, 0), false)), // overlapping, rectangular
        (vec![3, 2, 1, 12], p((1, 4), (1, 3), (0, 2), true)), // 1-D
    ]
}

#[test]
fn pools_forward_match_candle_and_reference() {
    let mut rng = StdRng::seed_from_u64(6);
    for (dims, p) in pool_cases() {
        let xv = rand_vec(&mut rng, dims.iter().product());
        for dt in [DType::F32, DType::F64] {
            let x = t64(&xv, &dims).to_dtype(dt).unwrap();
            for max in [true, false] {
                let ours = if max { max_pool2d(&x, p) } else { avg_pool2d(&x, p) }.unwrap();
                let e = rel(&flat(&ours), &pool_ref(&flat(&x), &dims, p, max));
                assert!(e < 1e-6, "{dims:?} {p:?} max={max} {dt:?}: {e}");
                if p.padding == (0, 0) && !p.ceil_mode && (max || p.kernel == p.stride) {
                    let theirs = with_candle_ops(|| if max { max_pool2d(&x, p) } else { avg_pool2d(&x, p) }).unwrap();
                    assert_eq!(ours.dims(), theirs.dims());
                    assert!(rel(&flat(&ours), &flat(&theirs)) < 1e-6, "{dims:?} {p:?} max={max} vs candle");
                }
            }
        }
    }
}

#[test]
fn pool_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(7);
    for (dims, p) in pool_cases() {
        let xv = rand_vec(&mut rng, dims.iter().product());
        for max in [true, false] {
            let pool = |x: &Tensor| if max { max_pool2d(x, p) } else { avg_pool2d(x, p) }.unwrap();
            let x = Var::from_tensor(&t64(&xv, &dims)).unwrap();
            let y = pool(&x);
            let cv = rand_vec(&mut rng, y.elem_count());
            let c = Var::from_tensor(&t64(&cv, y.dims())).unwrap();
            let g = (&y * c.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(&x).unwrap();
            let e = rel(&flat(gx), &fd(&xv, |v| dot(&pool(&t64(v, &dims)), &c)));
            assert!(e < 1e-7, "{dims:?} {p:?} max={max}: {e}");
            // The gradient op itself, differentiated in its gradient argument.
            let r = t64(&rand_vec(&mut rng, xv.len()), &dims);
            let adjoint = |g: &Tensor| -> Tensor {
                if max {
                    max_scatter(&t64(&xv, &dims), g, p).unwrap()
                } else {
                    g.apply_op1(AvgAdjoint { p, hw: (dims[2], dims[3]) }).unwrap()
                }
            };
            assert!(rel(&flat(&adjoint(&c)), &flat(gx)) < 1e-12);
            let g2 = (adjoint(&c) * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let e = rel(&flat(g2.get(&c).unwrap()), &fd(&cv, |v| dot(&adjoint(&t64(v, y.dims())), &r)));
            assert!(e < 1e-7, "second order {dims:?} {p:?} max={max}: {e}");
        }
    }
}

#[test]
fn max_pool_gradient_goes_whole_to_the_first_maximum() {
    // Windows 3×3/2 with padding 1 over a plane with ties: each window's gradient
    // lands on its first maximum in row-major order.
    let x = Var::new(&[[[[1f32, 5., 5., 0.], [5., 2., 0., 0.], [0., 0., 7., 7.], [0., 0., 7., 1.]]]], &D0).unwrap();
    let p = PoolParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1), ceil_mode: false };
    let y = max_pool2d(&x, p).unwrap();
    assert_eq!(flat(&y), vec![5.0, 5.0, 5.0, 7.0]);
    let g = (y * Tensor::new(&[[[[1f32, 10.], [100., 1000.]]]], &D0).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = flat(g.get(&x).unwrap());
    // window (0,0) rows −1..1, cols −1..1 → first 5 at (0,1); (0,1) cols 1..3 → (0,1);
    // (1,0) rows 1..3, cols −1..1 → (1,0); (1,1) → first 7 at (2,2).
    let mut want = vec![0.0; 16];
    want[1] = 11.0;
    want[4] = 100.0;
    want[10] = 1000.0;
    assert_eq!(gx, want);
}

#[test]
fn bad_pool_and_conv_arguments_are_errors() {
    let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &D0).unwrap();
    let p = |k, s, pad| PoolParams { kernel: (k, k), stride: (s, s), padding: (pad, pad), ceil_mode: false };
    assert!(max_pool2d(&x, p(2, 0, 0)).is_err());
    assert!(max_pool2d(&x, p(3, 1, 2)).is_err(), "padding over half the kernel");
    assert!(avg_pool2d(&x, p(5, 1, 0)).is_err());
    let w = Tensor::zeros((2, 3, 3, 3), DType::F32, &D0).unwrap();
    let e = conv2d(&x, &w, None, ConvParams { stride: (1, 1), padding: (0, 0) }).unwrap_err().to_string();
    assert!(e.contains("channels"), "{e}");
}

#[test]
fn candle_path_is_per_thread_and_restored() {
    assert!(native(&[&Tensor::zeros(1, DType::F32, &D0).unwrap()]));
    with_candle_ops(|| {
        assert!(!native(&[&Tensor::zeros(1, DType::F32, &D0).unwrap()]));
        let other = std::thread::spawn(|| native(&[&Tensor::zeros(1, DType::F32, &D0).unwrap()])).join().unwrap();
        assert!(other, "another thread keeps lumen's kernels");
    });
    assert!(native(&[&Tensor::zeros(1, DType::F32, &D0).unwrap()]));
    assert!(!native(&[&Tensor::zeros(1, DType::F16, &D0).unwrap()]), "f16 takes candle's ops");
}

/// conv1d (a conv2d of height 1) against candle's path, batch > 1, stride and
/// padding, values and all three gradients.
#[test]
fn conv1d_matches_candle_path() {
    let mut rng = StdRng::seed_from_u64(8);
    for (len, k, stride, padding) in [(12, 5, 2, 1), (10, 3, 1, 0), (11, 4, 3, 2)] {
        let (xv, wv, bv) = (rand_vec(&mut rng, 3 * 4 * len), rand_vec(&mut rng, 2 * 4 * k), rand_vec(&mut rng, 2));
        let run = || {
            let (x, w, b) = (Var::from_tensor(&t64(&xv, &[3, 4, len])).unwrap(), Var::from_tensor(&t64(&wv, &[2, 4, k])).unwrap(), Var::from_tensor(&t64(&bv, &[2])).unwrap());
            let y = conv1d(&x, &w, Some(b.as_tensor()), stride, padding).unwrap();
            let c = Tensor::ones(y.dims(), DType::F64, &D0).unwrap();
            let c = (c.cumsum(2).unwrap() * 0.1).unwrap();
            let g = (&y * c).unwrap().sum_all().unwrap().backward().unwrap();
            [y.clone(), g.get(&x).unwrap().clone(), g.get(&w).unwrap().clone(), g.get(&b).unwrap().clone()]
        };
        let (ours, theirs) = (run(), with_candle_ops(run));
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a.dims(), b.dims());
            let e = rel(&flat(a), &flat(b));
            assert!(e < 1e-12, "len {len} k {k} stride {stride} padding {padding}, output {i}: {e}");
        }
    }
}

/// relu and its one-pass backward against candle's relu, bit for bit, in f32 and
/// f64, with zeros, NaN and a size that splits into parallel chunks.
#[test]
fn relu_matches_candle_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(9);
    let n = 40_000;
    let mut v = rand_vec(&mut rng, n);
    v[3] = 0.0;
    v[4] = -0.0;
    v[5] = f64::NAN;
    let c = rand_vec(&mut rng, n);
    for dt in [DType::F32, DType::F64] {
        let run = || {
            let x = Var::from_tensor(&t64(&v, &[4, 10_000]).to_dtype(dt).unwrap()).unwrap();
            let cv = Var::from_tensor(&t64(&c, &[4, 10_000]).to_dtype(dt).unwrap()).unwrap();
            let y = relu(&x).unwrap();
            let g = (&y * cv.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            [y.clone(), g.get(&x).unwrap().clone(), g.get(&cv).unwrap().clone()]
        };
        let (ours, theirs) = (run(), with_candle_ops(run));
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let (a, b) = (flat(a), flat(b));
            for (j, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(p == q || (p.is_nan() && q.is_nan()), "{dt:?} output {i} at {j}: {p} vs {q}");
            }
        }
    }
}

/// The 2×2/2 straight-line path keeps the general rule: the first maximum in
/// row-major order, a NaN winning over everything after it.
#[test]
fn max_pool_2x2_fast_path_ties_and_nan() {
    let x = Var::new(&[[[[1f32, f32::NAN, 3., 3.], [f32::NAN, 0., 3., 5.], [2., 2., 7., 1.], [2., 2., 7., 7.]]]], &D0).unwrap();
    let y = max_pool2d(&x, PoolParams::square(2, 2)).unwrap();
    let yv = flat(&y);
    assert!(yv[0].is_nan() && yv[1..] == [5.0, 2.0, 7.0], "{yv:?}");
    let c = Tensor::new(&[[[[1f32, 10.], [100., 1000.]]]], &D0).unwrap();
    let g = (y * c).unwrap().sum_all().unwrap().backward().unwrap();
    let mut want = vec![0.0; 16];
    want[1] = 1.0; // the first NaN, not the one below it
    want[7] = 10.0;
    want[8] = 100.0; // tie of four 2s: the first
    want[10] = 1000.0; // tie of three 7s: the first
    assert_eq!(flat(g.get(&x).unwrap()), want);
}

/// The fused conv → ReLU → max-pool forward gives bit for bit the values of the three
/// ops in turn, for every conv geometry (padded patch rows included) and every pool
/// that fits its output, on batches above and below the thread count.
#[test]
fn fused_conv_relu_pool_equals_the_ops_in_turn() {
    let mut rng = StdRng::seed_from_u64(9);
    let pools = [None, Some(PoolParams::square(2, 2)), Some(PoolParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1), ceil_mode: true })];
    for case in conv_cases() {
        for batch in [1, case.x[0] + 2] {
            let mut dims = case.x.clone();
            dims[0] = batch;
            let x = t64(&rand_vec(&mut rng, dims.iter().product()), &dims);
            let w = t64(&rand_vec(&mut rng, case.w.iter().product()), &case.w);
            let b = t64(&rand_vec(&mut rng, case.w[0]), &[case.w[0]]);
            for dt in [DType::F32, DType::F64] {
                let (x, w, b) = (x.to_dtype(dt).unwrap(), w.to_dtype(dt).unwrap(), b.to_dtype(dt).unwrap());
                for bias in [None, Some(&b)] {
                    let y = relu(&conv2d(&x, &w, bias, case.p).unwrap()).unwrap();
                    for pool in pools {
                        let Ok(want) = pool.map_or(Ok(y.clone()), |p| max_pool2d(&y, p)) else { continue };
                        let got = conv2d_relu_pool(&x, &w, bias, case.p, pool).unwrap().expect("native");
                        assert_eq!(got.dims(), want.dims(), "{:?} {pool:?}", case.x);
                        let (g, wv) = (flat(&got), flat(&want));
                        assert!(g.iter().zip(&wv).all(|(a, b)| a.to_bits() == b.to_bits()), "{:?} {:?} {pool:?} {dt:?}", case.x, case.p);
                    }
                }
            }
        }
    }
    // Declined where a gradient is tracked or candle's ops are asked for.
    let x = Var::new(&[[[[1f32, -2.], [3., 4.]]]], &D0).unwrap();
    let w = Tensor::new(&[[[[1f32]]]], &D0).unwrap();
    let p = ConvParams { stride: (1, 1), padding: (0, 0) };
    assert!(conv2d_relu_pool(&x, &w, None, p, None).unwrap().is_none());
    let x = x.as_tensor().detach();
    assert!(with_candle_ops(|| conv2d_relu_pool(&x, &w, None, p, None)).unwrap().is_none());
    assert!(conv2d_relu_pool(&x, &w, None, p, None).unwrap().is_some());
}

/// The one-pass pool-over-ReLU backward gives bit for bit the two backwards in turn.
#[test]
fn max_pool_relu_grad_equals_the_two_backwards() {
    let mut rng = StdRng::seed_from_u64(10);
    for (dims, p) in pool_cases() {
        let pre = t64(&rand_vec(&mut rng, dims.iter().product()), &dims);
        for dt in [DType::F32, DType::F64] {
            let pre = pre.to_dtype(dt).unwrap();
            let x = relu(&pre).unwrap();
            let y = max_pool2d(&x, p).unwrap();
            let gy = t64(&rand_vec(&mut rng, y.elem_count()), y.dims()).to_dtype(dt).unwrap();
            let want = relu_grad(&pre, &max_pool2d_grad(&x, &gy, p).unwrap()).unwrap();
            let got = max_pool2d_relu_grad(&pre, &x, &gy, p).unwrap();
            let (g, w) = (flat(&got), flat(&want));
            assert!(g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "{dims:?} {p:?} {dt:?}");
        }
    }
}
