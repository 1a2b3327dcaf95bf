//! Perturbation curves: deletion and insertion (Petsiuk et al. 2018, RISE §4) and
//! pixel flipping / region perturbation (Samek et al. 2017).
//!
//! Deletion starts from the image and replaces positions by the fill, most relevant
//! first; insertion starts from the fill and restores the image's positions in the
//! same order. Both record the target's softmax probability after each of `steps`
//! equal steps and report the trapezoid area under that curve over the fraction
//! 0..1 (deletion: lower is better; insertion: higher is better). The fill is zero
//! by default for both (see [`DeletionConfig::default_for`]), blur or mean on request.
//!
//! Pixel flipping ranks non-overlapping r×r regions (r-long segments for sequences)
//! by summed relevance and perturbs them most relevant first (MoRF); its headline
//! is the AOPC, `1/(L+1) Σ_{k=0..L} (f(x) − f(x^(k)))` (higher is better).

use crate::util::{blur, host, order_desc, pixel_relevance, scores, trapezoid, Layout};
pub use crate::util::Score;
use lumen_core::metric::{MetricInput, MetricNeeds, MetricOutput};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Error, Metric, Result};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// What replaces a removed position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Zero,
    /// The image blurred with a Gaussian of this sigma (in positions).
    Blur(f64),
    /// The image's per-channel mean.
    Mean,
    /// Uniform noise over the model's input range (seeded).
    Uniform,
}

impl Fill {
    fn parse(name: &str, sigma: f64) -> Result<Fill> {
        Ok(match name {
            "zero" => Fill::Zero,
            "blur" => Fill::Blur(sigma),
            "mean" => Fill::Mean,
            "uniform" => Fill::Uniform,
            _ => return Err(Error::msg(format!("unknown fill '{name}'"))),
        })
    }
    fn as_str(&self) -> &'static str {
        match self {
            Fill::Zero => "zero",
            Fill::Blur(_) => "blur",
            Fill::Mean => "mean",
            Fill::Uniform => "uniform",
        }
    }

    /// The fill image for one example `x` (`c` channels of `p` positions).
    pub fn image(&self, x: &[f32], l: &Layout, range: (f32, f32), rng: &mut rand::rngs::StdRng) -> Vec<f32> {
        let p = l.p();
        match *self {
            Fill::Zero => vec![0.0; x.len()],
            Fill::Blur(s) => blur(x, l.c, &l.spatial, s),
            Fill::Mean => x
                .chunks(p)
                .flat_map(|ch| {
                    let m = ch.iter().map(|v| *v as f64).sum::<f64>() / p as f64;
                    std::iter::repeat_n(m as f32, p)
                })
                .collect(),
            Fill::Uniform => {
                let (lo, hi) = if range.1 > range.0 { range } else { (0.0, 1.0) };
                (0..x.len()).map(|_| rng.gen_range(lo..hi)).collect()
            }
        }
    }
}

/// Deletion or insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Deletion,
    Insertion,
}

/// Configuration of [`Deletion`] (and insertion).
#[derive(Debug, Clone)]
pub struct DeletionConfig {
    /// Number of equal steps from 0 to all positions.
    pub steps: usize,
    pub fill: Fill,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl DeletionConfig {
    /// Both start from zeros by default. Petsiuk et al. insert into a blurred image,
    /// but lumen's data have a zero background, and mnist-cnn still gives a digit
    /// blurred with σ = 2 about 0.98 probability, so a blurred canvas cannot tell
    /// maps apart there (`fill=blur` keeps the paper's choice available).
    pub fn default_for(_: Direction) -> Self {
        DeletionConfig { steps: 50, fill: Fill::Zero, batch_size: 128 }
    }
}

impl Default for DeletionConfig {
    fn default() -> Self {
        Self::default_for(Direction::Deletion)
    }
}

pub static DELETION_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("steps", ParamKind::Int, "50", "equal steps from no position to all positions").max(10_000),
    ParamSpec::new("fill", ParamKind::Choice(&["zero", "blur", "mean"]), "zero", "what replaces a deleted position"),
    ParamSpec::new("blur_sigma", ParamKind::Float, "2.0", "Gaussian sigma of the blur fill, in positions"),
    ParamSpec::new("batch_size", ParamKind::Int, "128", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

pub static INSERTION_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("steps", ParamKind::Int, "50", "equal steps from no position to all positions").max(10_000),
    ParamSpec::new("fill", ParamKind::Choice(&["zero", "blur", "mean"]), "zero", "the starting image that positions are inserted into (the paper: blur)"),
    ParamSpec::new("blur_sigma", ParamKind::Float, "2.0", "Gaussian sigma of the blur fill, in positions"),
    ParamSpec::new("batch_size", ParamKind::Int, "128", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

/// Deletion or insertion curve and its AUC.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub direction: Direction,
    pub config: DeletionConfig,
}

impl Deletion {
    pub fn new(direction: Direction, config: DeletionConfig) -> Self {
        Deletion { direction, config }
    }
    pub fn from_args(direction: Direction, a: &Args) -> Result<Self> {
        let sigma = a.f64("blur_sigma")?;
        if sigma <= 0.0 {
            return Err(Error::bad_param(a.method(), "blur_sigma", "must be > 0"));
        }
        Ok(Deletion::new(
            direction,
            DeletionConfig {
                steps: a.positive("steps")?,
                fill: Fill::parse(&a.string("fill")?, sigma)?,
                batch_size: a.positive("batch_size")?,
            },
        ))
    }
}

impl Metric for Deletion {
    fn name(&self) -> &str {
        match self.direction {
            Direction::Deletion => "deletion",
            Direction::Insertion => "insertion",
        }
    }
    fn higher_is_better(&self) -> bool {
        self.direction == Direction::Insertion
    }
    fn params(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            ("steps".to_string(), self.config.steps.to_string()),
            ("fill".to_string(), self.config.fill.as_str().to_string()),
            ("batch_size".to_string(), self.config.batch_size.to_string()),
        ]);
        if let Fill::Blur(s) = self.config.fill {
            m.insert("blur_sigma".into(), s.to_string());
        }
        m
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check(self.name())?;
        let l = Layout::of(input.inputs.dims())?;
        let (n, p, steps) = (l.n(), l.p(), self.config.steps);
        let xs = host(input.inputs)?;
        let rel = pixel_relevance(&host(input.attributions)?, &l);
        let range = input.model.info().input_range;
        let xs_x: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
        let mut curves = Vec::with_capacity(l.b);
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        for i in 0..l.b {
            let x = &xs[i * n..(i + 1) * n];
            let fill = self.config.fill.image(x, &l, range, &mut rng);
            let order = order_desc(&rel[i]);
            let (mut cur, other) = match self.direction {
                Direction::Deletion => (x.to_vec(), fill),
                Direction::Insertion => (fill, x.to_vec()),
            };
            let mut images = Vec::with_capacity((steps + 1) * n);
            images.extend_from_slice(&cur);
            let mut done = 0;
            for k in 1..=steps {
                let upto = (k * p + steps / 2) / steps; // rounded share of positions
                for &j in &order[done..upto] {
                    for c in 0..l.c {
                        cur[c * p + j] = other[c * p + j];
                    }
                }
                done = upto;
                images.extend_from_slice(&cur);
            }
            let t = vec![input.targets[i]; steps + 1];
            curves.push(scores(input.model, &images, &input.inputs.dims()[1..], &t, Score::Prob, self.config.batch_size)?);
        }
        let per_example = curves.iter().map(|c| trapezoid(&xs_x, c)).collect();
        let mut out = MetricOutput::new(self.name(), per_example);
        out.curves = Some(curves);
        out.curve_x = Some(xs_x);
        Ok(out)
    }
}

/// Configuration of [`PixelFlipping`].
#[derive(Debug, Clone)]
pub struct PixelFlippingConfig {
    /// Side of the square regions (length of segments for sequences).
    pub region: usize,
    /// Regions perturbed in total (0 = all).
    pub steps: usize,
    pub fill: Fill,
    pub score: Score,
    pub batch_size: usize,
}

impl Default for PixelFlippingConfig {
    fn default() -> Self {
        PixelFlippingConfig { region: 4, steps: 0, fill: Fill::Uniform, score: Score::Prob, batch_size: 128 }
    }
}

pub static PIXEL_FLIPPING_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("region", ParamKind::Int, "4", "side r of the r×r regions (segment length for sequences)").max(1024),
    ParamSpec::new("steps", ParamKind::Int, "0", "regions perturbed in total, most relevant first (0 = all)").max(10_000),
    ParamSpec::new("fill", ParamKind::Choice(&["zero", "uniform", "mean"]), "uniform", "what replaces a region (uniform: seeded noise over the input range)"),
    ParamSpec::new("score", ParamKind::Choice(Score::CHOICES), "prob", "the model output followed: softmax probability or logit of the target"),
    ParamSpec::new("batch_size", ParamKind::Int, "128", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

/// Region perturbation, most relevant first, and its AOPC.
#[derive(Debug, Clone, Default)]
pub struct PixelFlipping {
    pub config: PixelFlippingConfig,
}

impl PixelFlipping {
    pub fn new(config: PixelFlippingConfig) -> Self {
        PixelFlipping { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        Ok(PixelFlipping::new(PixelFlippingConfig {
            region: a.positive("region")?,
            steps: a.usize("steps")?,
            fill: Fill::parse(&a.string("fill")?, 0.0)?,
            score: Score::parse(&a.string("score")?)?,
            batch_size: a.positive("batch_size")?,
        }))
    }
}

/// The positions of each r×r region (r-segment in 1-D; last two dims for more).
pub fn regions(spatial: &[usize], r: usize) -> Vec<Vec<usize>> {
    let (h, w) = crate::util::hw(spatial);
    let mut out = vec![];
    for y0 in (0..h).step_by(if h == 1 { 1 } else { r }) {
        for x0 in (0..w).step_by(r) {
            let ys = if h == 1 { 0..1 } else { y0..(y0 + r).min(h) };
            out.push(ys.flat_map(|y| (x0..(x0 + r).min(w)).map(move |x| y * w + x)).collect());
        }
    }
    out
}

impl Metric for PixelFlipping {
    fn name(&self) -> &str {
        "pixel_flipping"
    }
    fn higher_is_better(&self) -> bool {
        true
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("region".to_string(), self.config.region.to_string()),
            ("steps".to_string(), self.config.steps.to_string()),
            ("fill".to_string(), self.config.fill.as_str().to_string()),
            ("score".to_string(), self.config.score.as_str().to_string()),
            ("batch_size".to_string(), self.config.batch_size.to_string()),
        ])
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check(self.name())?;
        let l = Layout::of(input.inputs.dims())?;
        let (n, p) = (l.n(), l.p());
        let regs = regions(&l.spatial, self.config.region);
        let steps = if self.config.steps == 0 { regs.len() } else { self.config.steps.min(regs.len()) };
        let xs = host(input.inputs)?;
        let rel = pixel_relevance(&host(input.attributions)?, &l);
        let range = input.model.info().input_range;
        let mut curves = vec![];
        let mut aopc = vec![];
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        for i in 0..l.b {
            let x = &xs[i * n..(i + 1) * n];
            let fill = self.config.fill.image(x, &l, range, &mut rng);
            let region_rel: Vec<f64> = regs.iter().map(|r| r.iter().map(|&j| rel[i][j]).sum()).collect();
            let order = order_desc(&region_rel);
            let mut cur = x.to_vec();
            let mut images = Vec::with_capacity((steps + 1) * n);
            images.extend_from_slice(&cur);
            for &ri in order.iter().take(steps) {
                for &j in &regs[ri] {
                    for c in 0..l.c {
                        cur[c * p + j] = fill[c * p + j];
                    }
                }
                images.extend_from_slice(&cur);
            }
            let t = vec![input.targets[i]; steps + 1];
            let curve = scores(input.model, &images, &input.inputs.dims()[1..], &t, self.config.score, self.config.batch_size)?;
            aopc.push(curve.iter().map(|f| curve[0] - f).sum::<f64>() / curve.len() as f64);
            curves.push(curve);
        }
        let mut out = MetricOutput::new("pixel_flipping", aopc);
        out.curve_x = Some((0..=steps).map(|k| k as f64).collect());
        out.curves = Some(curves);
        Ok(out)
    }
}

lumen_core::submit_metric!(
    "deletion",
    "Petsiuk et al.: target probability while the most relevant positions are removed; AUC (lower is better)",
    DELETION_PARAMS,
    false,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Deletion::from_args(Direction::Deletion, a)?)),
);

lumen_core::submit_metric!(
    "insertion",
    "Petsiuk et al.: target probability while the most relevant positions are inserted into the fill; AUC (higher is better)",
    INSERTION_PARAMS,
    true,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Deletion::from_args(Direction::Insertion, a)?)),
);

lumen_core::submit_metric!(
    "pixel_flipping",
    "Samek et al.: r×r regions perturbed most relevant first; AOPC (higher is better)",
    PIXEL_FLIPPING_PARAMS,
    true,
    MetricNeeds::NONE,
    |a| Ok(Box::new(PixelFlipping::from_args(a)?)),
);
