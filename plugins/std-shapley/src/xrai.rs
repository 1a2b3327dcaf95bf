//! XRAI (Kapishnikov et al., ICCV 2019, "XRAI: Better Attributions Through
//! Regions"): a pixel attribution map, by default integrated gradients, is turned
//! into a ranking of image regions.
//!
//! 1. The inner method explains the batch for the target; each example's map is
//!    summed over the channels, giving one value `a[p]` per pixel.
//! 2. Each image is over-segmented by SLIC ([`crate::slic`]) once per entry of
//!    `segments` (superpixel counts, coarse to fine), and every segment is dilated by
//!    a disk of `dilation` pixels (the pixels within Euclidean distance `dilation`;
//!    radius 1 adds the 4-neighbours), so that regions of different scales overlap
//!    and the greedy step can grow across superpixel borders. The candidates are all
//!    segments of all scales, numbered scale by scale, label by label.
//! 3. Greedy growing from an empty mask `M`: the next region is the candidate `s`
//!    with the largest gain density `Σ_{p ∈ s∖M} a[p] / |s∖M|` (ties: the lowest
//!    candidate number); a candidate adding fewer than `min_new_pixels` new pixels is
//!    dropped for good (the mask only grows). The region's new pixels get its gain as
//!    their value. Growing stops once `M` covers the fraction `area` of the image, or
//!    when no candidate is left.
//!
//! The map holds, on every channel of a pixel, the gain of the region that first
//! covered it (what the paper's reference implementation returns), so high values
//! mark the regions that carry the most attribution per pixel. The gains mostly fall
//! along the selection but need not: a region can take the low pixels away from an
//! overlapping candidate, whose remainder then scores above the region picked just
//! before. The selection order itself is the `region_rank` tensor `[B, H, W]`: `k`
//! for the pixels of the k-th region (from 1), 0 for uncovered ones; sort by it (not
//! by value) for the exact greedy ranking, or where two regions tie. Pixels left
//! uncovered (`area < 1`, or `min_new_pixels > 1`) take the lowest gain selected (0
//! if none was): never above a selected region. Diagnostics: `regions` (regions
//! selected per example), `region_gains` (their gains, in selection order),
//! `candidates` and `inner_method`.
//!
//! The inner method is named with `inner=NAME`, its parameters with `inner.`:
//!
//! ```text
//! lumen explain --method xrai --param inner=integrated_gradients --param inner.steps=32
//! lumen explain --method xrai --param inner=saliency --param segments=16,32 --param area=0.3
//! ```
//!
//! XRAI draws nothing itself (it is stochastic only if the inner method is), and its
//! map has no completeness. Each example is segmented and grown on its own, so a
//! batch gives the maps of its examples explained one at a time.

use crate::slic::slic;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::method::prepare;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Nested, Result, Target};

/// Configuration of [`Xrai`].
#[derive(Debug, Clone, Config)]
pub struct XraiConfig {
    /// the pixel attribution grouped into regions; its parameters go as inner.NAME=VALUE
    pub inner: Nested,
    /// SLIC superpixel counts, one segmentation each; the candidates are all their segments
    #[param(with = counts)]
    pub segments: Vec<usize>,
    /// SLIC weight of distance against colour (in the input's value units)
    pub compactness: f64,
    /// radius in pixels of the disk each segment is dilated by (0: none)
    #[param(max = 64)]
    pub dilation: usize,
    /// a candidate adding fewer new pixels than this is dropped
    #[param(positive, max = 1 << 20)]
    pub min_new_pixels: usize,
    /// fraction of the image, in (0, 1], covered before growing stops
    pub area: f64,
}

impl Default for XraiConfig {
    fn default() -> Self {
        // The paper's pipeline on IG; segment counts, compactness (mask.rs's for [0, 1]
        // data) and a one-pixel dilation suit small images such as 28×28 digits, where
        // any region adding a pixel is worth ranking.
        XraiConfig {
            inner: Nested::named("integrated_gradients"),
            segments: vec![8, 16, 32, 64],
            compactness: 0.3,
            dilation: 1,
            min_new_pixels: 1,
            area: 1.0,
        }
    }
}

/// The most SLIC scales, and superpixels per scale.
const MAX_SCALES: usize = 16;
const MAX_SEGMENTS: usize = crate::mask::MAX_FEATURES;

/// `segments`: a comma-separated list of positive integers.
mod counts {
    use lumen_core::config::{leak, Builder};
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::{Error, Result};
    use std::collections::BTreeMap;

    fn text(v: &[usize]) -> String {
        v.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
    }
    pub fn specs(name: &'static str, doc: &'static str, d: &[usize]) -> Vec<ParamSpec> {
        vec![ParamSpec::new(name, ParamKind::FloatList, leak(Some(text(d))), doc)]
    }
    pub fn read(a: &Args, name: &'static str, _: &dyn Builder) -> Result<Vec<usize>> {
        let v = a.list(name)?;
        if v.is_empty() || v.iter().any(|x| !(*x >= 1.0 && x.fract() == 0.0 && *x <= u32::MAX as f64)) {
            return Err(Error::bad_param(a.method(), name, format!("expected positive integers, got {v:?}")));
        }
        Ok(v.into_iter().map(|x| x as usize).collect())
    }
    pub fn write(v: &[usize], name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), text(v));
    }
}

/// The result of [`greedy`] on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    /// Per pixel: the gain of the region that first covered it; uncovered pixels get
    /// the lowest gain selected (0 if none was).
    pub values: Vec<f64>,
    /// Per pixel: the position of that region in the selection, from 1; 0: uncovered.
    pub rank: Vec<u32>,
    /// The candidates selected, in order, and their gains.
    pub order: Vec<usize>,
    pub gains: Vec<f64>,
}

/// XRAI's greedy region growing over pixel values `a` (one per pixel) and candidate
/// regions given as pixel indices into `a` (see the module docs).
pub fn greedy(a: &[f64], candidates: &[Vec<usize>], min_new: usize, area: f64) -> Regions {
    let n = a.len();
    // The pixel count that is "the fraction area", robust to 0.7·10 = 7.000…01.
    let goal = ((area * n as f64 - 1e-9).ceil().max(0.0) as usize).min(n);
    let min_new = min_new.max(1); // a region with no new pixel has no density
    let (mut covered, mut count) = (vec![false; n], 0);
    let mut r = Regions { values: vec![0.0; n], rank: vec![0; n], order: vec![], gains: vec![] };
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    while count < goal {
        let mut best: Option<(usize, f64)> = None;
        // New-pixel counts only shrink, so a candidate below min_new stays below.
        alive.retain(|&i| {
            let (mut sum, mut k) = (0.0, 0usize);
            for &p in &candidates[i] {
                if !covered[p] {
                    sum += a[p];
                    k += 1;
                }
            }
            if k < min_new {
                return false;
            }
            let g = sum / k as f64;
            // Strictly greater: in index order, ties keep the lowest candidate.
            if best.is_none_or(|(_, bg)| g > bg) {
                best = Some((i, g));
            }
            true
        });
        let Some((i, g)) = best else { break };
        r.order.push(i);
        r.gains.push(g);
        for &p in &candidates[i] {
            if !covered[p] {
                covered[p] = true;
                count += 1;
                r.values[p] = g;
                r.rank[p] = r.order.len() as u32;
            }
        }
    }
    let floor = r.gains.iter().copied().reduce(f64::min).unwrap_or(0.0);
    for (v, &c) in r.values.iter_mut().zip(&covered) {
        if !c {
            *v = floor;
        }
    }
    r
}

/// The candidate regions of one image `[c, h, w]`: every SLIC segment of every scale,
/// dilated by a disk of radius `dilation`, as sorted pixel indices.
pub fn candidates(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    config: &XraiConfig,
) -> std::result::Result<Vec<Vec<usize>>, String> {
    let r = config.dilation as isize;
    let disk: Vec<(isize, isize)> =
        (-r..=r).flat_map(|dy| (-r..=r).map(move |dx| (dy, dx))).filter(|(dy, dx)| dy * dy + dx * dx <= r * r).collect();
    let mut out = vec![];
    let mut mark = vec![false; h * w];
    for &n_seg in &config.segments {
        let s = slic(img, c, h, w, n_seg, config.compactness, 10)?;
        let mut members = vec![vec![]; s.count];
        for (p, &l) in s.labels.iter().enumerate() {
            members[l as usize].push(p);
        }
        for seg in members {
            for &p in &seg {
                let (y, x) = ((p / w) as isize, (p % w) as isize);
                for &(dy, dx) in &disk {
                    let (yy, xx) = (y + dy, x + dx);
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        mark[yy as usize * w + xx as usize] = true;
                    }
                }
            }
            let region: Vec<usize> = (0..h * w).filter(|&p| mark[p]).collect();
            region.iter().for_each(|&p| mark[p] = false);
            out.push(region);
        }
    }
    Ok(out)
}

pub struct Xrai {
    pub config: XraiConfig,
}

impl Method for Xrai {
    const NAME: &'static str = "xrai";
    const SUMMARY: &'static str =
        "XRAI: regions of multi-scale SLIC superpixels ranked greedily by the inner map's gain density (inner=NAME)";
    type Config = XraiConfig;
    fn props_of(c: &XraiConfig) -> MethodProps {
        let i = c.inner.props();
        MethodProps { stochastic: i.stochastic, needs_rules: i.needs_rules, wrapper: true, ..MethodProps::NONE }
    }
    fn new(config: XraiConfig) -> Result<Self> {
        let bad = |p: &str, m: String| Error::bad_param(Self::NAME, p, m);
        let s = &config.segments;
        if s.is_empty() || s.len() > MAX_SCALES || s.iter().any(|&k| k == 0 || k > MAX_SEGMENTS) {
            return Err(bad("segments", format!("must be 1 to {MAX_SCALES} counts, each in 1..={MAX_SEGMENTS}, got {s:?}")));
        }
        let (a, m) = (config.area, config.compactness);
        if !(a > 0.0 && a <= 1.0) {
            return Err(bad("area", format!("must be in (0, 1], got {a}")));
        }
        if !(m.is_finite() && m > 0.0) {
            return Err(bad("compactness", format!("must be a positive number, got {m}")));
        }
        if config.min_new_pixels == 0 {
            return Err(bad("min_new_pixels", "must be ≥ 1".into()));
        }
        config.inner.get()?;
        Ok(Xrai { config })
    }
    fn config(&self) -> &XraiConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        // Before prepare: the model's own shape check would not say why.
        let (b, c, h, w) = inputs.dims4().map_err(|_| {
            Error::unsupported(Self::NAME, format!("XRAI needs image inputs [B, C, H, W], got {:?}", inputs.dims()))
        })?;
        let target = prepare(model, inputs, target)?;
        let cfg = &self.config;
        let inner = cfg.inner.get()?;
        let ex = inner.attribute(model, inputs, &target)?;
        let attr = ex.attribution().detach();
        if attr.dims() != inputs.dims() {
            return Err(Error::shape(
                format!("{} to return a map of shape {:?}", inner.name(), inputs.dims()),
                format!("{:?}", attr.dims()),
            ));
        }
        let maps = attr.to_dtype(DType::F64)?.sum(1)?.flatten_from(1)?.to_vec2::<f64>()?;
        if maps.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::msg(format!("xrai: the inner method {} gave non-finite attributions", inner.name())));
        }
        let imgs = inputs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let (mut values, mut ranks) = (Vec::with_capacity(b * c * h * w), Vec::with_capacity(b * h * w));
        let (mut regions, mut gains, mut n_cand) = (vec![], vec![], vec![]);
        for (img, a) in imgs.iter().zip(&maps) {
            let cands = candidates(img, c, h, w, cfg).map_err(|e| Error::bad_param(Self::NAME, "segments", e))?;
            let r = greedy(a, &cands, cfg.min_new_pixels, cfg.area);
            for _ in 0..c {
                values.extend(r.values.iter().map(|v| *v as f32));
            }
            ranks.extend(r.rank.iter().map(|k| *k as f32));
            regions.push(r.order.len());
            gains.push(r.gains);
            n_cand.push(cands.len());
        }
        let dev = inputs.device();
        let map = Tensor::from_vec(values, inputs.shape(), &Device::Cpu)?.to_dtype(inputs.dtype())?.to_device(dev)?;
        let rank = Tensor::from_vec(ranks, (b, h, w), &Device::Cpu)?;
        let mut e = Explanation::new(Self::NAME, map, target)
            .with_params(self.params())
            .with_tensor("region_rank", rank)
            .with_diag("regions", regions)
            .with_diag("region_gains", gains)
            .with_diag("candidates", n_cand)
            .with_diag("inner_method", inner.name().to_string());
        e.seed = ex.seed;
        Ok(e)
    }
}
