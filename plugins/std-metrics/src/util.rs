//! Host-side helpers shared by the metrics: layouts, pixel relevance, batched
//! scoring, areas under curves, blurring, rank correlation and SSIM.

use lumen_core::candle::{DType, Tensor, D};
use lumen_core::{Classifier, Error, Result};

/// How a batch is laid out: `[B, C, spatial...]`, or `[B, D]` read as one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub b: usize,
    pub c: usize,
    pub spatial: Vec<usize>,
}

impl Layout {
    pub fn of(dims: &[usize]) -> Result<Layout> {
        match dims.len() {
            0 | 1 => Err(Error::shape("[batch, ...]", format!("{dims:?}"))),
            2 => Ok(Layout { b: dims[0], c: 1, spatial: vec![dims[1]] }),
            _ => Ok(Layout { b: dims[0], c: dims[1], spatial: dims[2..].to_vec() }),
        }
    }
    /// Positions per channel (pixels, or sequence positions).
    pub fn p(&self) -> usize {
        self.spatial.iter().product()
    }
    /// Values per example.
    pub fn n(&self) -> usize {
        self.c * self.p()
    }
}

/// The tensor's values as f32, row-major.
pub fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Relevance per position: the map summed over channels, per example.
pub fn pixel_relevance(attr: &[f32], l: &Layout) -> Vec<Vec<f64>> {
    let (n, p) = (l.n(), l.p());
    (0..l.b)
        .map(|i| {
            let a = &attr[i * n..(i + 1) * n];
            (0..p).map(|j| (0..l.c).map(|c| a[c * p + j] as f64).sum()).collect()
        })
        .collect()
}

/// Indices sorted by decreasing value (ties: lower index first, NaN last).
pub fn order_desc(v: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (v[a], v[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)),
        }
    });
    idx
}

/// Which model output a metric follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// Softmax probability of the target class.
    Prob,
    /// The target logit.
    Logit,
}

impl Score {
    pub const CHOICES: &'static [&'static str] = &["prob", "logit"];
    pub fn parse(s: &str) -> Result<Score> {
        match s {
            "prob" => Ok(Score::Prob),
            "logit" => Ok(Score::Logit),
            _ => Err(Error::msg(format!("unknown score '{s}' (known: prob, logit)"))),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Score::Prob => "prob",
            Score::Logit => "logit",
        }
    }
}

/// The target score of each image in `images` (`targets.len()` images of `shape`
/// without batch dimension, row-major), forwarded `batch_size` at a time.
pub fn scores(
    model: &dyn Classifier,
    images: &[f32],
    shape: &[usize],
    targets: &[usize],
    score: Score,
    batch_size: usize,
) -> Result<Vec<f64>> {
    let n: usize = shape.iter().product();
    if images.len() != n * targets.len() {
        return Err(Error::msg(format!("internal: {} values for {} images of {n}", images.len(), targets.len())));
    }
    let dev = model.device();
    let mut out = Vec::with_capacity(targets.len());
    for r in lumen_core::method::chunks(targets.len(), batch_size) {
        let mut s = vec![r.len()];
        s.extend_from_slice(shape);
        let xs = Tensor::from_vec(images[r.start * n..r.end * n].to_vec(), s, dev)?;
        let logits = model.forward(&xs)?;
        let out_k = match score {
            Score::Prob => lumen_core::candle_nn::ops::softmax(&logits, D::Minus1)?,
            Score::Logit => logits,
        };
        let idx = Tensor::from_vec(targets[r.clone()].iter().map(|c| *c as u32).collect::<Vec<_>>(), (r.len(), 1), dev)?;
        let v = out_k.gather(&idx, 1)?.squeeze(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        out.extend(v);
    }
    Ok(out)
}

/// Trapezoid area under `y` over `x`.
pub fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2).zip(y.windows(2)).map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0).sum()
}

/// Gaussian blur of every channel (1-D or 2-D spatial), edges clamped.
pub fn blur(x: &[f32], c: usize, spatial: &[usize], sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return x.to_vec();
    }
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let ks: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / ks).collect();
    // One pass along an axis of a [rows, len, stride] view.
    let pass = |src: &[f32], len: usize, stride: usize| -> Vec<f32> {
        let mut dst = vec![0f32; src.len()];
        let block = len * stride;
        for (bi, blk) in src.chunks(block).enumerate() {
            for i in 0..len {
                for s in 0..stride {
                    let mut acc = 0.0;
                    for (t, w) in k.iter().enumerate() {
                        let j = (i as i64 + t as i64 - r).clamp(0, len as i64 - 1) as usize;
                        acc += w * blk[j * stride + s] as f64;
                    }
                    dst[bi * block + i * stride + s] = acc as f32;
                }
            }
        }
        dst
    };
    let _ = c;
    let mut cur = x.to_vec();
    for (a, &len) in spatial.iter().enumerate() {
        let stride: usize = spatial[a + 1..].iter().product();
        cur = pass(&cur, len, stride);
    }
    cur
}

/// Ranks (1-based) with ties given their average rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].partial_cmp(&v[b]).unwrap_or(std::cmp::Ordering::Equal));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for t in i..=j {
            r[idx[t]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman rank correlation (Pearson of the tie-averaged ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Mean SSIM of two 2-D images `[h, w]` (Wang et al. 2004) with a uniform `win`×`win`
/// window (clipped to the image), sample covariances, and `K1 = 0.01`, `K2 = 0.03`,
/// like scikit-image's default. A 1-D signal is an image of height 1.
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize, win: usize, data_range: f64) -> f64 {
    let (wh, ww) = (win.min(h).max(1), win.min(w).max(1));
    let np = (wh * ww) as f64;
    let cov_norm = if np > 1.0 { np / (np - 1.0) } else { 1.0 };
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let mut total = 0.0;
    let mut count = 0usize;
    for i in 0..=h - wh {
        for j in 0..=w - ww {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in i..i + wh {
                for x in j..j + ww {
                    let (p, q) = (a[y * w + x], b[y * w + x]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / np, sb / np);
            let va = cov_norm * (saa / np - ma * ma);
            let vb = cov_norm * (sbb / np - mb * mb);
            let vab = cov_norm * (sab / np - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * vab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count as f64
}

/// Per-example `Σ_c |map|` over positions, as `[h, w]` (1-D: `h = 1`).
pub fn abs_pixel_maps(attr: &[f32], l: &Layout) -> Vec<Vec<f64>> {
    let (n, p) = (l.n(), l.p());
    (0..l.b)
        .map(|i| {
            let a = &attr[i * n..(i + 1) * n];
            (0..p).map(|j| (0..l.c).map(|c| (a[c * p + j] as f64).abs()).sum()).collect()
        })
        .collect()
}

/// `(h, w)` of the spatial dims for SSIM: 2-D as is, 1-D as one row, more: last two.
pub fn hw(spatial: &[usize]) -> (usize, usize) {
    match spatial.len() {
        1 => (1, spatial[0]),
        n => (spatial[..n - 1].iter().product(), spatial[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_spearman_by_hand() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
        // Monotone but nonlinear: Spearman 1, reversed: −1.
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&a, &[1.0, 4.0, 9.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // ranks a = (1,2,3,4), b = (2,1,4,3): Σd² = 4, ρ = 1 − 6·4/(4·15) = 0.6
        assert!((spearman(&a, &[2.0, 1.0, 4.0, 3.0]) - 0.6).abs() < 1e-12);
        assert!(spearman(&a, &[1.0; 4]).is_nan());
    }

    #[test]
    fn ssim_by_hand() {
        let a = [0.0, 1.0, 0.0, 1.0];
        assert!((ssim(&a, &a, 2, 2, 7, 1.0) - 1.0).abs() < 1e-12);
        // One 2×2 window. a: μ=0.5, var=(4·0.25)/3=1/3; b=(0,0,0,1): μ=0.25,
        // var = (3·0.0625+0.5625)/3 = 0.25, cov = (0.125+0.125−0.125+0.375)/3 = 1/6.
        let b = [0.0, 0.0, 0.0, 1.0];
        let (c1, c2) = (1e-4, 9e-4);
        let want = ((2.0 * 0.5 * 0.25 + c1) * (2.0 / 6.0 + c2)) / ((0.25 + 0.0625 + c1) * (1.0 / 3.0 + 0.25 + c2));
        assert!((ssim(&a, &b, 2, 2, 7, 1.0) - want).abs() < 1e-12, "{want}");
        // Sliding: a 1×3 signal with window 2 averages two windows.
        let s = ssim(&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0], 1, 3, 2, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn order_trapezoid_blur() {
        assert_eq!(order_desc(&[0.1, 0.5, f64::NAN, 0.5, -1.0]), vec![1, 3, 0, 4, 2]);
        assert!((trapezoid(&[0.0, 0.5, 1.0], &[1.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        // A constant image stays constant; blur spreads a spike symmetrically and keeps its mass.
        let c = blur(&[2.0; 25], 1, &[5, 5], 1.0);
        assert!(c.iter().all(|v| (v - 2.0).abs() < 1e-5));
        let mut s = vec![0f32; 81];
        s[40] = 1.0;
        let b = blur(&s, 1, &[9, 9], 0.8);
        assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!((b[39] - b[41]).abs() < 1e-7 && (b[31] - b[49]).abs() < 1e-7 && b[40] > b[39]);
        let l = Layout::of(&[2, 2, 1, 2]).unwrap();
        let r = pixel_relevance(&[1.0, 2.0, 3.0, -4.0, 0.0, 1.0, 1.0, 1.0], &l);
        assert_eq!(r, vec![vec![4.0, -2.0], vec![1.0, 2.0]]);
        assert_eq!(abs_pixel_maps(&[1.0, 2.0, 3.0, -4.0, 0.0, 1.0, 1.0, 1.0], &l)[0], vec![4.0, 6.0]);
    }
}
