//! ROAD (Rong et al. 2022, "RemOve And Debias") and the CAM confidence metrics, with
//! pytorch-grad-cam's definitions:
//!
//! - `road_morf` / `road_lerf`: the positions above the `p`-th percentile of the map
//!   (most relevant first) or below the `(100 − p)`-th (least relevant first) are
//!   replaced by noisy linear imputation, and the score is the target's score after
//!   minus before, averaged over the percentiles (default 10, 20, …, 90). Lower is
//!   better for MoRF (removing the evidence hurts), higher for LeRF.
//! - `road`: `(LeRF − MoRF) / 2`, higher is better.
//! - `confidence_drop`: `max(0, f(x) − f(x ⊙ m))` with the map `m` scaled to [0, 1] per
//!   example (lower is better); `confidence_increase`: 1 where `f(x ⊙ m) > f(x)`.
//!
//! Noisy linear imputation: each removed position takes the weighted mean of its 8
//! neighbours (weight 1/6 for the 4 direct ones, 1/12 for the diagonals; neighbours
//! outside the image drop out), solved jointly for all removed positions of a
//! channel (a sparse symmetric positive definite system, by conjugate gradients),
//! plus `noise · N(0, 1)` from the metric's seed. The map is reduced to one value
//! per position by summing over channels; every channel is imputed under the same mask.

use crate::util::{host, pixel_relevance, scores, Layout, Score};
use lumen_core::metric::{MetricInput, MetricNeeds, MetricOutput};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Error, Metric, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;

/// Which ROAD score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Most relevant first.
    Morf,
    /// Least relevant first.
    Lerf,
    /// `(LeRF − MoRF) / 2`.
    Combined,
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Morf => "road_morf",
            Order::Lerf => "road_lerf",
            Order::Combined => "road",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoadConfig {
    pub order: Order,
    /// Percentiles in (0, 100).
    pub percentiles: Vec<f64>,
    /// σ of the imputation noise (absolute, in input units).
    pub noise: f64,
    pub score: Score,
    pub batch_size: usize,
}

pub static ROAD_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("percentiles", ParamKind::FloatList, "10,20,30,40,50,60,70,80,90", "percentiles of the map that split removed from kept positions"),
    ParamSpec::new("noise", ParamKind::Float, "0.01", "σ of the noise added to imputed values (0: none)"),
    ParamSpec::new("score", ParamKind::Choice(Score::CHOICES), "logit", "model output followed: target logit or probability"),
    ParamSpec::new("batch_size", ParamKind::Int, "256", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

#[derive(Debug, Clone)]
pub struct Road {
    pub config: RoadConfig,
}

impl Road {
    pub fn from_args(order: Order, a: &Args) -> Result<Self> {
        let percentiles = a.list("percentiles")?;
        if percentiles.is_empty() || percentiles.iter().any(|p| !(*p > 0.0 && *p < 100.0)) {
            return Err(Error::bad_param(order.name(), "percentiles", format!("must be one or more values in (0, 100), got {percentiles:?}")));
        }
        let noise = a.f64("noise")?;
        if !(noise >= 0.0 && noise.is_finite()) {
            return Err(Error::bad_param(order.name(), "noise", format!("must be finite and ≥ 0, got {noise}")));
        }
        let config = RoadConfig { order, percentiles, noise, score: Score::parse(&a.string("score")?)?, batch_size: a.positive("batch_size")? };
        Ok(Road { config })
    }
}

/// numpy's default (linear) percentile of `v`, `p` in [0, 100].
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let pos = p / 100.0 * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The 8 neighbours and their weights.
const NEIGHBOURS: [((i64, i64), f64); 8] = [
    ((1, 1), 1.0 / 12.0),
    ((0, 1), 1.0 / 6.0),
    ((-1, 1), 1.0 / 12.0),
    ((1, -1), 1.0 / 12.0),
    ((0, -1), 1.0 / 6.0),
    ((-1, -1), 1.0 / 12.0),
    ((1, 0), 1.0 / 6.0),
    ((-1, 0), 1.0 / 6.0),
];

/// Linear imputation of one `h × w` channel: the positions where `keep` is false
/// become the weighted mean of their neighbours (jointly). Returns the channel.
pub fn impute_channel(img: &[f64], keep: &[bool], h: usize, w: usize) -> Vec<f64> {
    let unknown: Vec<usize> = (0..h * w).filter(|&i| !keep[i]).collect();
    let mut index = vec![usize::MAX; h * w];
    for (k, &i) in unknown.iter().enumerate() {
        index[i] = k;
    }
    // Per unknown: its in-bounds neighbours (position, weight).
    let nbrs: Vec<Vec<(usize, f64)>> = unknown
        .iter()
        .map(|&i| {
            let (y, x) = ((i / w) as i64, (i % w) as i64);
            NEIGHBOURS
                .iter()
                .filter_map(|&((dy, dx), wt)| {
                    let (ny, nx) = (y + dy, x + dx);
                    (ny >= 0 && nx >= 0 && ny < h as i64 && nx < w as i64).then(|| ((ny as usize) * w + nx as usize, wt))
                })
                .collect()
        })
        .collect();
    // M v = b with M = diag(Σ w) − W_unknown, b = Σ over known neighbours of w·x.
    let diag: Vec<f64> = nbrs.iter().map(|n| n.iter().map(|(_, wt)| wt).sum()).collect();
    let b: Vec<f64> = nbrs.iter().map(|n| n.iter().filter(|(j, _)| keep[*j]).map(|(j, wt)| wt * img[*j]).sum()).collect();
    let apply = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|k| diag[k] * v[k] - nbrs[k].iter().filter(|(j, _)| !keep[*j]).map(|(j, wt)| wt * v[index[*j]]).sum::<f64>())
            .collect()
    };
    let v = conjugate_gradients(apply, &b, 10 * unknown.len() + 10);
    let mut out = img.to_vec();
    for (k, &i) in unknown.iter().enumerate() {
        out[i] = v[k];
    }
    out
}

/// Solves `A v = b` for a symmetric positive (semi)definite `A` given as a product.
fn conjugate_gradients(apply: impl Fn(&[f64]) -> Vec<f64>, b: &[f64], max_iter: usize) -> Vec<f64> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut v = vec![0.0; b.len()];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    let tol = 1e-26 * dot(b, b).max(1e-300);
    for _ in 0..max_iter {
        if rr <= tol {
            break;
        }
        let ap = apply(&p);
        let pap = dot(&p, &ap);
        if pap <= 0.0 {
            break;
        }
        let alpha = rr / pap;
        for k in 0..v.len() {
            v[k] += alpha * p[k];
            r[k] -= alpha * ap[k];
        }
        let rr_new = dot(&r, &r);
        let beta = rr_new / rr;
        rr = rr_new;
        for k in 0..p.len() {
            p[k] = r[k] + beta * p[k];
        }
    }
    v
}

impl Road {
    /// ROAD's score differences `[B][percentile]` for one order.
    fn diffs(&self, input: &MetricInput, most_first: bool, rng: &mut rand::rngs::StdRng) -> Result<Vec<Vec<f64>>> {
        let l = Layout::of(input.inputs.dims())?;
        let (h, w) = crate::util::hw(&l.spatial);
        let (n, p) = (l.n(), l.p());
        let shape = &input.inputs.dims()[1..];
        let xs = host(input.inputs)?;
        let rel = pixel_relevance(&host(input.attributions)?, &l);
        let before = scores(input.model, &xs, shape, input.targets, self.config.score, self.config.batch_size)?;
        let mut out = vec![vec![]; l.b];
        for &q in &self.config.percentiles {
            let mut imputed = Vec::with_capacity(xs.len());
            for (i, r) in rel.iter().enumerate() {
                let keep: Vec<bool> = if most_first {
                    let t = percentile(r, q);
                    r.iter().map(|v| *v < t).collect()
                } else {
                    let neg: Vec<f64> = r.iter().map(|v| -v).collect();
                    let t = percentile(&neg, q);
                    neg.iter().map(|v| *v < t).collect()
                };
                for c in 0..l.c {
                    let ch: Vec<f64> = xs[i * n + c * p..i * n + (c + 1) * p].iter().map(|v| *v as f64).collect();
                    let filled = impute_channel(&ch, &keep, h, w);
                    imputed.extend(filled.iter().zip(&keep).map(|(v, k)| {
                        let e: f64 = if *k || self.config.noise == 0.0 { 0.0 } else { let z: f64 = StandardNormal.sample(rng); self.config.noise * z };
                        (v + e) as f32
                    }));
                }
            }
            let after = scores(input.model, &imputed, shape, input.targets, self.config.score, self.config.batch_size)?;
            for i in 0..l.b {
                out[i].push(after[i] - before[i]);
            }
        }
        Ok(out)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

impl Metric for Road {
    fn name(&self) -> &str {
        self.config.order.name()
    }
    fn params(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let list = c.percentiles.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        [("percentiles", list), ("noise", c.noise.to_string()), ("score", c.score.as_str().into()), ("batch_size", c.batch_size.to_string())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
    fn higher_is_better(&self) -> bool {
        self.config.order != Order::Morf
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        let name = self.name().to_string();
        input.check(&name)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        let curve_x: Vec<f64> = self.config.percentiles.iter().map(|p| p / 100.0).collect();
        let one = |most_first, rng: &mut rand::rngs::StdRng| -> Result<MetricOutput> {
            let d = self.diffs(input, most_first, rng)?;
            let mut out = MetricOutput::new(name.clone(), d.iter().map(|v| mean(v)).collect());
            out.curves = Some(d);
            out.curve_x = Some(curve_x.clone());
            Ok(out)
        };
        match self.config.order {
            Order::Morf => one(true, &mut rng),
            Order::Lerf => one(false, &mut rng),
            Order::Combined => {
                let morf = one(true, &mut rng)?.per_example;
                let lerf = one(false, &mut rng)?.per_example;
                let mut out = MetricOutput::new(name, lerf.iter().zip(&morf).map(|(l, m)| (l - m) / 2.0).collect());
                out.extra.insert("morf".into(), morf);
                out.extra.insert("lerf".into(), lerf);
                Ok(out)
            }
        }
    }
}

/// `confidence_drop` or `confidence_increase`.
#[derive(Debug, Clone)]
pub struct Confidence {
    /// true: the increase indicator; false: the drop.
    pub increase: bool,
    pub score: Score,
    pub batch_size: usize,
}

pub static CONFIDENCE_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("score", ParamKind::Choice(Score::CHOICES), "logit", "model output followed: target logit or probability"),
    ParamSpec::new("batch_size", ParamKind::Int, "256", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

impl Confidence {
    pub fn from_args(increase: bool, a: &Args) -> Result<Self> {
        Ok(Confidence { increase, score: Score::parse(&a.string("score")?)?, batch_size: a.positive("batch_size")? })
    }
}

impl Metric for Confidence {
    fn name(&self) -> &str {
        if self.increase { "confidence_increase" } else { "confidence_drop" }
    }
    fn params(&self) -> BTreeMap<String, String> {
        [("score".to_string(), self.score.as_str().to_string()), ("batch_size".to_string(), self.batch_size.to_string())].into()
    }
    fn higher_is_better(&self) -> bool {
        self.increase
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        let name = self.name().to_string();
        input.check(&name)?;
        let l = Layout::of(input.inputs.dims())?;
        let (n, p) = (l.n(), l.p());
        let shape = &input.inputs.dims()[1..];
        let xs = host(input.inputs)?;
        let mut masked = xs.clone();
        for (i, r) in pixel_relevance(&host(input.attributions)?, &l).iter().enumerate() {
            let lo = r.iter().cloned().fold(f64::INFINITY, f64::min);
            let span = r.iter().map(|v| v - lo).fold(0.0, f64::max);
            for c in 0..l.c {
                for j in 0..p {
                    let m = if span > 0.0 { (r[j] - lo) / span } else { 0.0 };
                    masked[i * n + c * p + j] = (xs[i * n + c * p + j] as f64 * m) as f32;
                }
            }
        }
        let before = scores(input.model, &xs, shape, input.targets, self.score, self.batch_size)?;
        let after = scores(input.model, &masked, shape, input.targets, self.score, self.batch_size)?;
        let v = before
            .iter()
            .zip(&after)
            .map(|(b, a)| if self.increase { f64::from(u8::from(a > b)) } else { (b - a).max(0.0) })
            .collect();
        Ok(MetricOutput::new(name, v))
    }
}

lumen_core::submit_metric!(
    "road",
    "ROAD: (LeRF − MoRF) / 2 of the target score after noisy linear imputation, averaged over percentiles (higher is better)",
    ROAD_PARAMS,
    true,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Road::from_args(Order::Combined, a)?)),
);
lumen_core::submit_metric!(
    "road_morf",
    "ROAD, most relevant first: target score change after imputing the top of the map (lower is better)",
    ROAD_PARAMS,
    false,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Road::from_args(Order::Morf, a)?)),
);
lumen_core::submit_metric!(
    "road_lerf",
    "ROAD, least relevant first: target score change after imputing the bottom of the map (higher is better)",
    ROAD_PARAMS,
    true,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Road::from_args(Order::Lerf, a)?)),
);
lumen_core::submit_metric!(
    "confidence_drop",
    "drop of the target score when the input is multiplied by the map scaled to [0, 1] (lower is better)",
    CONFIDENCE_PARAMS,
    false,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Confidence::from_args(false, a)?)),
);
lumen_core::submit_metric!(
    "confidence_increase",
    "1 where the input multiplied by the map scaled to [0, 1] raises the target score (higher is better)",
    CONFIDENCE_PARAMS,
    true,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Confidence::from_args(true, a)?)),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_numpys_linear() {
        let v = [3.0, 1.0, 4.0, 1.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        // sorted 1 1 3 4 5: position 0.9 · 4 = 3.6 → 4 + 0.6
        assert!((percentile(&v, 90.0) - 4.6).abs() < 1e-12);
    }

    /// One hole in a constant image is that constant; one hole in a linear ramp is
    /// the ramp (the weights are symmetric); a 2-pixel hole solves jointly.
    #[test]
    fn imputation_by_hand() {
        let (h, w) = (3, 3);
        let mut keep = vec![true; 9];
        keep[4] = false;
        let flat = impute_channel(&[2.0; 9], &keep, h, w);
        assert!((flat[4] - 2.0).abs() < 1e-12);
        let ramp: Vec<f64> = (0..9).map(|i| (i % 3) as f64).collect();
        let r = impute_channel(&ramp, &keep, h, w);
        assert!((r[4] - 1.0).abs() < 1e-12, "{r:?}");
        // corner hole: neighbours (0,1) w 1/6, (1,0) w 1/6, (1,1) w 1/12 of values 1, 0, 1
        let mut keep = vec![true; 9];
        keep[0] = false;
        let c = impute_channel(&ramp, &keep, h, w);
        assert!((c[0] - (1.0 / 6.0 + 1.0 / 12.0) / (1.0 / 6.0 + 1.0 / 6.0 + 1.0 / 12.0)).abs() < 1e-12, "{c:?}");
        // holes at 3 and 4 of the ramp: the solution satisfies both mean equations
        let mut keep = vec![true; 9];
        keep[3] = false;
        keep[4] = false;
        let j = impute_channel(&ramp, &keep, h, w);
        for i in [3usize, 4] {
            let (y, x) = ((i / 3) as i64, (i % 3) as i64);
            let (mut s, mut ws) = (0.0, 0.0);
            for ((dy, dx), wt) in NEIGHBOURS {
                let (ny, nx) = (y + dy, x + dx);
                if (0..3).contains(&ny) && (0..3).contains(&nx) {
                    s += wt * j[(ny * 3 + nx) as usize];
                    ws += wt;
                }
            }
            assert!((j[i] - s / ws).abs() < 1e-10, "{i}: {j:?}");
        }
    }
}
