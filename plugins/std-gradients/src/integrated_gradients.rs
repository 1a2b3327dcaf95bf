//! Integrated Gradients (Sundararajan et al. 2017): the path integral of the gradient
//! along the straight line from a baseline `b` to the input `x`, times `x − b`:
//!
//! `IG_i(x) = (x_i − b_i) · ∫₀¹ ∂f(b + α(x − b))/∂x_i dα ≈ (x_i − b_i) · Σ_k w_k ∂f(b + α_k(x − b))/∂x_i`
//!
//! The quadrature (α_k, w_k) is one of the Riemann rules, the trapezoid rule or
//! Gauss–Legendre. Completeness says `Σ_i IG_i = f(x) − f(b)`; the gap, per example,
//! is reported in `diagnostics["completeness_delta"]` (and relative to
//! `|f(x) − f(b)|` in `completeness_delta_relative`). Several baselines are averaged
//! (the delta is then taken against the mean `f(b)`). The `steps × examples` path
//! points are evaluated in chunks of `batch_size`.

use crate::util::{completeness, example_ids, per_row, progress};
use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Error, Explanation, Method, MethodProps, Result, Target};

/// The quadrature along the path (core's, shared with the layer methods).
pub use lumen_core::quadrature::{gauss_legendre, Scheme};

/// Where the integration path starts: core's baseline, shared with the perturbation
/// and Shapley family.
pub use lumen_core::baseline::Baseline;

/// Configuration of [`IntegratedGradients`]: core's path parameters (`steps`,
/// `scheme`, `baseline`, `seed`, `batch_size`), shared with the layer methods.
pub type IntegratedGradientsConfig = lumen_core::quadrature::PathConfig;

pub const PROPS: MethodProps = MethodProps { multiplies_input: true, completeness: true, ..MethodProps::NONE };

#[derive(Debug, Clone, Default)]
pub struct IntegratedGradients {
    pub config: IntegratedGradientsConfig,
}

impl IntegratedGradients {
    pub fn new(config: IntegratedGradientsConfig) -> Self {
        IntegratedGradients { config }
    }

    /// The baseline batch for `xs` (same shape, dtype and device).
    pub fn baseline(&self, model: &dyn Classifier, xs: &Tensor, base: &Baseline, stream: u64) -> Result<Tensor> {
        base.materialize(model, xs, self.config.seed, stream)
    }
}

/// The target's objective per example, without gradients (core's).
pub use lumen_core::method::objective_values;

/// The blur baseline is core's shared Gaussian blur (DeepLIFT's blur reference too).
pub use lumen_core::method::gaussian_blur;

impl Method for IntegratedGradients {
    const NAME: &'static str = "integrated_gradients";
    const SUMMARY: &'static str =
        "integrated gradients: path integral of the gradient from a baseline, with completeness delta";
    type Config = IntegratedGradientsConfig;
    const PROPS: MethodProps = PROPS;
    fn new(config: IntegratedGradientsConfig) -> Result<Self> {
        // Reject e.g. trapezoid with 1 step now; the nodes themselves are computed
        // when explaining, not at build time.
        if config.scheme == Scheme::Trapezoid && config.steps < 2 {
            return Err(Error::bad_param(Self::NAME, "steps", "the trapezoid rule needs at least 2 steps"));
        }
        Ok(IntegratedGradients { config })
    }
    fn config(&self) -> &IntegratedGradientsConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let (alphas, weights) = c.scheme.nodes(Self::NAME, c.steps)?;
        let m = alphas.len();
        let (b, rank, dev) = (inputs.dim(0)?, inputs.rank(), inputs.device());
        let inputs = inputs.detach();
        let f_x = objective_values(model, &inputs, &target, c.batch_size)?;
        let mut f_b = vec![0f64; b];
        let n_chunks = c.baselines.len() * (b * m).div_ceil(c.batch_size);
        let pb = progress(n_chunks, "integrated gradients");
        let mut total: Option<Tensor> = None;
        for (j, base) in c.baselines.iter().enumerate() {
            let bl = self.baseline(model, &inputs, base, j as u64)?;
            for (acc, v) in f_b.iter_mut().zip(objective_values(model, &bl, &target, c.batch_size)?) {
                *acc += v;
            }
            let diff = (&inputs - &bl)?;
            // Σ_k w_k ∇f(b + α_k (x − b)), accumulated per example.
            let mut acc = inputs.zeros_like()?;
            for r in chunks(b * m, c.batch_size) {
                let ids = example_ids(&r, m, dev)?;
                let a = per_row(r.clone().map(|i| alphas[i % m] as f32).collect(), rank, dev)?;
                let w = per_row(r.clone().map(|i| weights[i % m] as f32).collect(), rank, dev)?;
                let a = a.to_dtype(inputs.dtype())?;
                let w = w.to_dtype(inputs.dtype())?;
                let pts = bl.index_select(&ids, 0)?.add(&diff.index_select(&ids, 0)?.broadcast_mul(&a)?)?;
                let g = gradient(model, &pts, &target.select_repeated(m, r.clone()), ForwardOptions::default())?.grad;
                acc = acc.index_add(&ids, &g.broadcast_mul(&w)?, 0)?;
                pb.inc(1);
            }
            let attr = (diff * acc)?;
            total = Some(match total {
                None => attr,
                Some(t) => (t + attr)?,
            });
        }
        pb.finish_and_clear();
        let nb = c.baselines.len();
        let mut attr = total.ok_or_else(|| Error::bad_param("integrated_gradients", "baseline", "no baseline given"))?;
        if nb > 1 {
            attr = attr.affine(1.0 / nb as f64, 0.0)?;
            f_b.iter_mut().for_each(|v| *v /= nb as f64);
        }
        let fact = completeness(&attr, f_x, f_b)?;
        let mut e = Explanation::new("integrated_gradients", attr, target).with_params(self.params()).with_completeness(fact);
        if c.baselines.iter().any(|b| matches!(b, Baseline::Uniform)) {
            e.seed = Some(c.seed);
        }
        Ok(e)
    }
}

lumen_core::submit_method!(IntegratedGradients);

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::Device;

    #[test]
    fn blur_is_normalised_and_smooths() {
        let d = Device::Cpu;
        // a constant image stays constant (edges replicated); an impulse spreads out
        let x = Tensor::full(0.7f32, (1, 1, 9, 9), &d).unwrap();
        let y = gaussian_blur(&x, 1.5).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(y.iter().all(|v| (v - 0.7).abs() < 1e-6));
        let mut v = vec![0f32; 81];
        v[40] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 9, 9), &d).unwrap();
        let y = gaussian_blur(&x, 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let g = |i: i32| (-(i * i) as f32 / 2.0).exp();
        let norm: f32 = (-3..=3).map(g).sum();
        // separable: the centre is g(0)²/norm², a neighbour g(0)g(1)/norm²
        assert!((y[40] - 1.0 / (norm * norm)).abs() < 1e-6, "{}", y[40]);
        assert!((y[41] - g(1) / (norm * norm)).abs() < 1e-6);
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
