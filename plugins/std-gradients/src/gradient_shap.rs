//! GradientSHAP (Lundberg & Lee 2017, as Captum's `GradientShap`): the expected
//! gradient × (input − baseline) over a baseline distribution, noisy inputs and a
//! random point on the straight path. Each of the `n_samples` draws per example picks
//! a baseline `b_j` uniformly from the distribution, a noisy input
//! `x̃ = x + ε, ε ~ N(0, stdev²)` and `α ~ U(0, 1)`, and contributes
//! `∇f(b_j + α (x̃ − b_j)) ⊙ (x̃ − b_j)`; the map is the mean.
//!
//! The distribution is `baseline_distribution` (a `[K, ...]` tensor of references)
//! when given, else the listed `baseline` words (one reference each). Completeness
//! holds in expectation: the delta is reported against `f(x) − mean_j f(b_j)`. The
//! draws of an example depend only on the seed and the example, so a batch equals its
//! examples explained one at a time.

use crate::integrated_gradients::objective_values;
use crate::util::{completeness, example_ids, example_rngs, progress};
use lumen_core::baseline::Baseline;
use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::Rng;
use rand_distr::StandardNormal;

/// Configuration of [`GradientShap`].
#[derive(Debug, Clone, Config)]
pub struct GradientShapConfig {
    /// draws per example
    #[param(positive, max = 100_000)]
    pub n_samples: usize,
    /// σ of the Gaussian noise added to the input (absolute, as Captum's stdevs)
    pub stdev: f64,
    /// the baseline distribution when no baseline_distribution is given: one reference per word
    #[param(name = "baseline", with = lumen_core::baseline::param)]
    pub baselines: Vec<Baseline>,
    /// a [K, ...] tensor of references drawn uniformly (.safetensors or .png)
    pub baseline_distribution: Option<Tensor>,
    /// seed of the draws
    pub seed: u64,
    /// path points per forward/backward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for GradientShapConfig {
    fn default() -> Self {
        // Captum's defaults: 5 samples, no noise.
        GradientShapConfig {
            n_samples: 5,
            stdev: 0.0,
            baselines: vec![Baseline::Zero],
            baseline_distribution: None,
            seed: 0,
            batch_size: 64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GradientShap {
    pub config: GradientShapConfig,
}

impl GradientShap {
    /// The references as rows `[R, ...]` and the row of (example e, reference j).
    fn references(&self, model: &dyn Classifier, xs: &Tensor) -> Result<(Tensor, usize, bool)> {
        let c = &self.config;
        let item = &xs.dims()[1..];
        if let Some(t) = &c.baseline_distribution {
            if t.rank() != xs.rank() || &t.dims()[1..] != item || t.dim(0)? == 0 {
                return Err(Error::bad_param(
                    Self::NAME,
                    "baseline_distribution",
                    format!("must be [K, {item:?}] with K ≥ 1, got {:?}", t.dims()),
                ));
            }
            let t = t.to_device(xs.device())?.to_dtype(xs.dtype())?;
            let k = t.dim(0)?;
            return Ok((t, k, true));
        }
        let mut rows = vec![];
        for (j, base) in c.baselines.iter().enumerate() {
            rows.push(base.materialize(model, xs, c.seed, j as u64)?);
        }
        Ok((Tensor::cat(&rows, 0)?, c.baselines.len(), false))
    }
}

impl Method for GradientShap {
    const NAME: &'static str = "gradient_shap";
    const SUMMARY: &'static str =
        "GradientSHAP: expected gradient × (input − baseline) over a baseline distribution, noise and path points";
    type Config = GradientShapConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, multiplies_input: true, ..MethodProps::NONE };
    fn new(config: GradientShapConfig) -> Result<Self> {
        let s = config.stdev;
        if !(s >= 0.0 && s.is_finite()) {
            return Err(Error::bad_param(Self::NAME, "stdev", format!("must be finite and ≥ 0, got {s}")));
        }
        Ok(GradientShap { config })
    }
    fn config(&self) -> &GradientShapConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let (b, n, dev) = (inputs.dim(0)?, c.n_samples, inputs.device());
        let inputs = inputs.detach();
        let d = inputs.elem_count() / b;
        let (refs, k, shared) = self.references(model, &inputs)?;
        let row_of = |e: usize, j: usize| if shared { j } else { j * b + e };
        let f_x = objective_values(model, &inputs, &target, c.batch_size)?;
        // E_j f(b_j) per example, each reference under the example's target.
        let f_b: Vec<f64> = if shared {
            let mut acc = vec![0f64; b];
            for j in 0..k {
                let rj = refs.narrow(0, j, 1)?.broadcast_as(inputs.shape())?.contiguous()?;
                for (a, v) in acc.iter_mut().zip(objective_values(model, &rj, &target, c.batch_size)?) {
                    *a += v / k as f64;
                }
            }
            acc
        } else {
            let mut acc = vec![0f64; b];
            for j in 0..k {
                let rj = refs.narrow(0, j * b, b)?;
                for (a, v) in acc.iter_mut().zip(objective_values(model, &rj, &target, c.batch_size)?) {
                    *a += v / k as f64;
                }
            }
            acc
        };
        let mut rngs = example_rngs(&inputs, c.seed, 0)?;
        let mut acc = inputs.zeros_like()?;
        let pb = progress((b * n).div_ceil(c.batch_size), "gradient shap");
        for r in chunks(b * n, c.batch_size) {
            // Rows are example-major (row = e·n + s), so each example's stream is read in order.
            let (mut ref_rows, mut alphas, mut noise) = (vec![], vec![], Vec::with_capacity(r.len() * d));
            for row in r.clone() {
                let e = row / n;
                let rng = &mut rngs[e];
                ref_rows.push(row_of(e, rng.gen_range(0..k)) as u32);
                alphas.push(rng.gen::<f32>());
                if c.stdev > 0.0 {
                    noise.extend((0..d).map(|_| rng.sample::<f32, _>(StandardNormal) * c.stdev as f32));
                }
            }
            let mut shape = inputs.dims().to_vec();
            shape[0] = r.len();
            let ids = example_ids(&r, n, dev)?;
            let mut x = inputs.index_select(&ids, 0)?;
            if c.stdev > 0.0 {
                x = (x + Tensor::from_vec(noise, shape.clone(), dev)?.to_dtype(inputs.dtype())?)?;
            }
            let base = refs.index_select(&Tensor::from_vec(ref_rows, r.len(), dev)?, 0)?;
            let mut ashape = vec![1; shape.len()];
            ashape[0] = r.len();
            let a = Tensor::from_vec(alphas, ashape, dev)?.to_dtype(inputs.dtype())?;
            let diff = (x - &base)?;
            let pts = (base + diff.broadcast_mul(&a)?)?;
            let g = gradient(model, &pts, &target.select_repeated(n, r.clone()), ForwardOptions::default())?.grad;
            acc = acc.index_add(&ids, &(g * diff)?, 0)?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        let attr = acc.affine(1.0 / n as f64, 0.0)?;
        let fact = completeness(&attr, f_x, f_b)?;
        let mut e = Explanation::new(Self::NAME, attr, target)
            .with_params(self.params())
            .with_completeness(fact)
            .with_diag("n_samples", n)
            .with_diag("n_references", k);
        e.seed = Some(c.seed);
        Ok(e)
    }
}

lumen_core::submit_method!(GradientShap);
