//! Blur IG (Xu et al. 2020, "Attribution in Scale and Space"): integrated gradients
//! along the Gaussian scale-space path `x(σ) = G_σ * x`, from the fully blurred input
//! `x(σ_max)` down to the input itself `x(0) = x`.
//!
//! The path is cut at `σ_k = σ_max (1 − k/m)`, k = 0..m. Each segment contributes the
//! gradient at its mid-scale times the segment's displacement,
//! `φ += ∇f(x(σ̄_k)) ⊙ (x(σ_{k+1}) − x(σ_k))`. Using the exact displacement (rather than a
//! finite-difference ∂x/∂σ) makes the sum telescope: on a linear model
//! `Σφ = f(x) − f(x(σ_max))` exactly, and completeness is reported against the fully
//! blurred input. The blur is core's [`gaussian_blur`] over the spatial dims.

use crate::integrated_gradients::objective_values;
use crate::util::{completeness, pick_targets, progress};
use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gaussian_blur, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};

/// Configuration of [`BlurIg`].
#[derive(Debug, Clone, Config)]
pub struct BlurIgConfig {
    /// path segments (gradient evaluations)
    #[param(positive, max = 10_000)]
    pub steps: usize,
    /// σ (pixels) where the path starts
    pub max_sigma: f64,
    /// path points per forward/backward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for BlurIgConfig {
    fn default() -> Self {
        // The paper's defaults: 100 steps from σ = 50.
        BlurIgConfig { steps: 100, max_sigma: 50.0, batch_size: 64 }
    }
}

#[derive(Debug, Clone)]
pub struct BlurIg {
    pub config: BlurIgConfig,
}

impl Method for BlurIg {
    const NAME: &'static str = "blur_ig";
    const SUMMARY: &'static str = "Blur IG: integrated gradients along the Gaussian scale-space path, with completeness delta";
    type Config = BlurIgConfig;
    const PROPS: MethodProps = MethodProps { completeness: true, ..MethodProps::NONE };
    fn new(config: BlurIgConfig) -> Result<Self> {
        let s = config.max_sigma;
        if !(s > 0.0 && s <= 1e3) {
            return Err(Error::bad_param(Self::NAME, "max_sigma", format!("must be in (0, 1000], got {s}")));
        }
        Ok(BlurIg { config })
    }
    fn config(&self) -> &BlurIgConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let (b, m) = (inputs.dim(0)?, c.steps);
        let inputs = inputs.detach();
        let sigma = |k: f64| c.max_sigma * (1.0 - k / m as f64);
        let f_x = objective_values(model, &inputs, &target, c.batch_size)?;
        let f_b = objective_values(model, &gaussian_blur(&inputs, c.max_sigma)?, &target, c.batch_size)?;
        // Rows are step-major (row = k·b + e); a chunk is cut into runs of one step, so
        // each run blurs a contiguous range of examples with one σ.
        let mut acc = inputs.zeros_like()?;
        let pb = progress((b * m).div_ceil(c.batch_size), "blur ig");
        for r in chunks(b * m, c.batch_size) {
            let (mut pts, mut disp, mut ids) = (vec![], vec![], vec![]);
            let mut i = r.start;
            while i < r.end {
                let k = i / b;
                let (e0, e1) = (i % b, (r.end - k * b).min(b));
                let xe = inputs.narrow(0, e0, e1 - e0)?;
                pts.push(gaussian_blur(&xe, sigma(k as f64 + 0.5))?);
                disp.push((gaussian_blur(&xe, sigma(k as f64 + 1.0))? - gaussian_blur(&xe, sigma(k as f64))?)?);
                ids.extend((e0..e1).map(|e| e as u32));
                i = k * b + e1;
            }
            let pts = Tensor::cat(&pts, 0)?;
            let disp = Tensor::cat(&disp, 0)?;
            let tg = pick_targets(&target, &ids.iter().map(|&e| e as usize).collect::<Vec<_>>());
            let ids = Tensor::from_vec(ids, r.len(), inputs.device())?;
            let g = gradient(model, &pts, &tg, ForwardOptions::default())?.grad;
            acc = acc.index_add(&ids, &(g * disp)?, 0)?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        let fact = completeness(&acc, f_x, f_b)?;
        Ok(Explanation::new(Self::NAME, acc, target)
            .with_params(self.params())
            .with_completeness(fact))
    }
}

lumen_core::submit_method!(BlurIg);
