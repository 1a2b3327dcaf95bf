//! Guided Integrated Gradients (Kapishnikov et al., CVPR 2021, "Guided Integrated
//! Gradients: an Adaptive Path Method for Removing Noise"): an attribution path from a
//! baseline `b` to the input `x` that adapts to the model. Instead of moving every
//! feature along the straight line at once, each step moves the `fraction` of features
//! with the smallest absolute gradient first, towards their position at the step's end,
//! until the path has covered the step's share of the L1 distance `‖x − b‖₁`.
//!
//! Step k of `steps` (α = (k+1)/m) keeps every feature inside the band
//! `[α − max_dist, α + max_dist]` of the straight line: features that lag behind the
//! band's lower edge are pulled up to it, and the low-gradient features move to the
//! upper edge (or part of the way, so that the remaining L1 distance is exactly
//! `‖x − b‖₁ (1 − α)`). Each move contributes `∇f(x_step) ⊙ Δx`, where the gradient is
//! the one at the start of the step. The path ends at the input, so completeness
//! `Σφ ≈ f(x) − f(b)` holds as for a left Riemann sum and its delta is reported.
//!
//! All examples of a chunk step together (one forward/backward pass per step); the
//! feature selection runs on the host in f64. Several baselines are averaged as in
//! integrated gradients.
//!
//! ```text
//! lumen explain --method guided_ig --param steps=200 --param fraction=0.25 --param max_dist=0.02
//! ```

use crate::integrated_gradients::objective_values;
use crate::util::{completeness, progress};
use lumen_core::baseline::Baseline;
use lumen_core::candle::{DType, Tensor};
use lumen_core::method::{chunks, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};

/// Configuration of [`GuidedIg`].
#[derive(Debug, Clone, Config)]
pub struct GuidedIgConfig {
    /// path steps (gradient evaluations)
    #[param(positive, max = 10_000)]
    pub steps: usize,
    /// share of the not-yet-finished features moved per inner iteration, in (0, 1]
    pub fraction: f64,
    /// how far (in α) a feature may run ahead of or lag behind the straight line, in [0, 1]
    pub max_dist: f64,
    /// comma-separated baselines, averaged: zero, constant, blur, uniform, tensor
    #[param(name = "baseline", with = lumen_core::baseline::param)]
    pub baselines: Vec<Baseline>,
    /// seed of the 'uniform' baselines
    pub seed: u64,
    /// examples stepped together per forward/backward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for GuidedIgConfig {
    fn default() -> Self {
        // The paper's reference settings: 200 steps, 25 % of features per move, band 0.02.
        GuidedIgConfig { steps: 200, fraction: 0.25, max_dist: 0.02, baselines: vec![Baseline::Zero], seed: 0, batch_size: 64 }
    }
}

#[derive(Debug, Clone)]
pub struct GuidedIg {
    pub config: GuidedIgConfig,
}

/// The straight line's point at α for every feature.
fn on_line(alpha: f64, x: &[f64], b: &[f64]) -> Vec<f64> {
    x.iter().zip(b).map(|(x, b)| b + alpha * (x - b)).collect()
}

fn l1(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).sum()
}

/// One path step of one example: moves `cur` (in place) from where it is to the
/// step's target distance and returns `Σ ∇f ⊙ Δx` per feature, added into `attr`.
/// `grad` is the gradient at `cur` when the step starts. Returns the number of inner
/// iterations taken.
pub fn guided_step(
    cur: &mut [f64],
    x: &[f64],
    b: &[f64],
    grad: &[f64],
    attr: &mut [f64],
    (step, steps): (usize, usize),
    fraction: f64,
    max_dist: f64,
) -> usize {
    const EPS: f64 = 1e-9;
    let d = x.len();
    let total = l1(x, b);
    let alpha = (step + 1) as f64 / steps as f64;
    let (a_lo, a_hi) = ((alpha - max_dist).max(0.0), (alpha + max_dist).min(1.0));
    let (x_lo, x_hi) = (on_line(a_lo, x, b), on_line(a_hi, x, b));
    let l1_target = total * (1.0 - alpha);
    let mut g: Vec<f64> = grad.to_vec();
    let mut iterations = 0;
    // Every iteration either finishes the step or moves at least one more feature to
    // the band's upper edge, where it stays excluded; d + 2 bounds the loop.
    while iterations <= d + 1 {
        iterations += 1;
        let old = cur.to_vec();
        // Features behind the band (in α along their own coordinate) catch up first.
        for i in 0..d {
            let span = x[i] - b[i];
            let a_i = if span == 0.0 { a_hi } else { (cur[i] - b[i]) / span };
            if a_i < a_lo {
                cur[i] = x_lo[i];
            }
        }
        let l1_cur = l1(cur, x);
        let record = |cur: &[f64], attr: &mut [f64]| {
            for i in 0..d {
                attr[i] += (cur[i] - old[i]) * grad[i];
            }
        };
        if (l1_cur - l1_target).abs() <= EPS + EPS * l1_target.abs() || l1_cur < l1_target {
            record(cur, attr);
            break;
        }
        // The candidates: features not yet at the upper edge, lowest |∇| first.
        for i in 0..d {
            if cur[i] == x_hi[i] {
                g[i] = f64::INFINITY;
            }
        }
        let mut mags: Vec<f64> = g.iter().map(|v| v.abs()).collect();
        mags.sort_by(|a, b| a.total_cmp(b));
        // numpy's quantile with the 'lower' rule.
        let threshold = mags[((fraction * (d - 1) as f64).floor() as usize).min(d - 1)];
        let chosen: Vec<usize> = (0..d).filter(|&i| g[i].is_finite() && g[i].abs() <= threshold).collect();
        let l1_s: f64 = chosen.iter().map(|&i| (cur[i] - x_hi[i]).abs()).sum();
        if l1_s <= 0.0 {
            // Nothing left to move inside the band: the step ends where it is.
            record(cur, attr);
            break;
        }
        let gamma = (l1_cur - l1_target) / l1_s;
        for &i in &chosen {
            cur[i] = if gamma > 1.0 { x_hi[i] } else { cur[i] + gamma * (x_hi[i] - cur[i]) };
        }
        record(cur, attr);
        if gamma <= 1.0 {
            break;
        }
    }
    iterations
}

impl Method for GuidedIg {
    const NAME: &'static str = "guided_ig";
    const SUMMARY: &'static str =
        "Guided IG: an adaptive path that moves low-gradient features first, with completeness delta";
    type Config = GuidedIgConfig;
    const PROPS: MethodProps = MethodProps { multiplies_input: true, completeness: true, ..MethodProps::NONE };
    fn new(config: GuidedIgConfig) -> Result<Self> {
        let (f, m) = (config.fraction, config.max_dist);
        if !(f > 0.0 && f <= 1.0) {
            return Err(Error::bad_param(Self::NAME, "fraction", format!("must be in (0, 1], got {f}")));
        }
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::bad_param(Self::NAME, "max_dist", format!("must be in [0, 1], got {m}")));
        }
        if config.baselines.is_empty() {
            return Err(Error::bad_param(Self::NAME, "baseline", "no baseline given"));
        }
        Ok(GuidedIg { config })
    }
    fn config(&self) -> &GuidedIgConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let (b, dev) = (inputs.dim(0)?, inputs.device());
        let inputs = inputs.detach();
        let d = inputs.elem_count() / b;
        let host = |t: &Tensor| -> Result<Vec<f64>> { Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?) };
        let f_x = objective_values(model, &inputs, &target, c.batch_size)?;
        let mut f_b = vec![0f64; b];
        let mut attr = vec![0f64; b * d];
        let mut inner = 0usize;
        let nb = c.baselines.len();
        let pb = progress(nb * b.div_ceil(c.batch_size) * c.steps, "guided ig");
        for (j, base) in c.baselines.iter().enumerate() {
            let bl = base.materialize(model, &inputs, c.seed, j as u64)?;
            for (acc, v) in f_b.iter_mut().zip(objective_values(model, &bl, &target, c.batch_size)?) {
                *acc += v / nb as f64;
            }
            for r in chunks(b, c.batch_size) {
                let (xs, bs) = (host(&inputs.narrow(0, r.start, r.len())?)?, host(&bl.narrow(0, r.start, r.len())?)?);
                let mut cur = bs.clone();
                let tg = target.select(r.clone());
                let mut shape = inputs.dims().to_vec();
                shape[0] = r.len();
                let mut acc = vec![0f64; r.len() * d];
                for step in 0..c.steps {
                    let pts = Tensor::from_vec(cur.iter().map(|v| *v as f32).collect(), shape.clone(), dev)?;
                    let g = host(&gradient(model, &pts.to_dtype(inputs.dtype())?, &tg, ForwardOptions::default())?.grad)?;
                    for e in 0..r.len() {
                        let s = e * d..(e + 1) * d;
                        inner += guided_step(
                            &mut cur[s.clone()],
                            &xs[s.clone()],
                            &bs[s.clone()],
                            &g[s.clone()],
                            &mut acc[s],
                            (step, c.steps),
                            c.fraction,
                            c.max_dist,
                        );
                    }
                    pb.inc(1);
                }
                for (a, v) in attr[r.start * d..r.end * d].iter_mut().zip(acc) {
                    *a += v / nb as f64;
                }
            }
        }
        pb.finish_and_clear();
        let attr = Tensor::from_vec(attr.iter().map(|v| *v as f32).collect(), inputs.dims(), dev)?.to_dtype(inputs.dtype())?;
        let fact = completeness(&attr, f_x, f_b)?;
        let mut e = Explanation::new(Self::NAME, attr, target)
            .with_params(self.params())
            .with_completeness(fact)
            .with_diag("inner_iterations", inner);
        if c.baselines.iter().any(|b| matches!(b, Baseline::Uniform)) {
            e.seed = Some(c.seed);
        }
        Ok(e)
    }
}

lumen_core::submit_method!(GuidedIg);
