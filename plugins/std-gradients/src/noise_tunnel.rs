//! NoiseTunnel: SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad (Adebayo
//! et al. 2018) around any attribution method.
//!
//! Each input gets `n` noisy copies `x + ε`, `ε ~ N(0, σ²)` with
//! `σ = sigma · (max(x) − min(x))` (the paper's noise level, per example), the inner
//! method explains every copy, and the maps are aggregated: mean (`smoothgrad`),
//! mean of squares (`smoothgrad_sq`) or variance (`vargrad`). The target is resolved
//! once on the clean input and then repeated for its copies.
//!
//! Nesting. From Rust, wrap any attributor: `NoiseTunnel::new(Box::new(ig), config)`.
//! Through the registry (CLI `--param`, Rhai maps), name the inner method with
//! `inner=NAME` and give its parameters with the `inner.` prefix:
//!
//! ```text
//! lumen explain --method smoothgrad --param inner=guided_backprop --param n=25
//! lumen explain --method smoothgrad --param inner=integrated_gradients \
//!     --param inner.steps=20 --param inner.scheme=trapezoid --param sigma=0.1
//! ```
//!
//! The noise of an example depends only on the seed and the example itself, so a
//! batch gives the same maps as explaining each example alone.

use crate::util::{example_ids, example_rngs, progress};
use lumen_core::candle::{DType, Tensor};
use lumen_core::method::{chunks, prepare};
use lumen_core::{Attributor, Choice, Classifier, Config, Error, Explanation, Method, MethodProps, Nested, Result, Target};
use rand::Rng;
use rand_distr::StandardNormal;
use std::sync::Arc;

/// How the maps of the noisy copies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum Aggregation {
    /// Mean.
    #[choice(name = "smoothgrad")]
    SmoothGrad,
    /// Mean of the squares.
    #[choice(name = "smoothgrad_sq")]
    SmoothGradSq,
    /// Variance (population, `E[a²] − E[a]²`).
    #[choice(name = "vargrad")]
    VarGrad,
}

/// Configuration of [`NoiseTunnel`] (all but the inner method).
#[derive(Debug, Clone, Config)]
pub struct NoiseTunnelConfig {
    /// aggregation of the noisy maps
    pub agg: Aggregation,
    /// noisy copies per example
    #[param(positive, max = 10_000)]
    pub n: usize,
    /// noise σ as a fraction of the input's (max − min)
    pub sigma: f64,
    /// noise seed
    pub seed: u64,
    /// noisy copies per call of the inner method
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for NoiseTunnelConfig {
    fn default() -> Self {
        NoiseTunnelConfig { agg: Aggregation::SmoothGrad, n: 50, sigma: 0.15, seed: 0, batch_size: 64 }
    }
}

/// The registered `smoothgrad` method's parameters: the inner method and the noise.
#[derive(Debug, Clone, Config)]
pub struct SmoothGradConfig {
    /// the wrapped method; its parameters go as inner.NAME=VALUE
    pub inner: Nested,
    #[param(flatten)]
    pub noise: NoiseTunnelConfig,
}

impl Default for SmoothGradConfig {
    fn default() -> Self {
        SmoothGradConfig { inner: Nested::named("saliency"), noise: NoiseTunnelConfig::default() }
    }
}

pub const PROPS: MethodProps = MethodProps { stochastic: true, wrapper: true, ..MethodProps::NONE };

/// Noise around any attributor.
pub struct NoiseTunnel {
    pub config: SmoothGradConfig,
}

impl NoiseTunnel {
    pub fn new(inner: Box<dyn Attributor>, config: NoiseTunnelConfig) -> Self {
        NoiseTunnel { config: SmoothGradConfig { inner: Nested::built(Arc::from(inner)), noise: config } }
    }
}

impl Method for NoiseTunnel {
    const NAME: &'static str = "smoothgrad";
    const SUMMARY: &'static str = SUMMARY;
    type Config = SmoothGradConfig;
    fn props_of(c: &SmoothGradConfig) -> MethodProps {
        let i = c.inner.props();
        MethodProps { needs_rules: i.needs_rules, multiplies_input: i.multiplies_input, ..PROPS }
    }
    fn new(config: SmoothGradConfig) -> Result<Self> {
        let sigma = config.noise.sigma;
        if sigma < 0.0 {
            return Err(Error::bad_param("smoothgrad", "sigma", format!("must be ≥ 0, got {sigma}")));
        }
        config.inner.get()?;
        Ok(NoiseTunnel { config })
    }
    fn config(&self) -> &SmoothGradConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config.noise;
        let inner = self.config.inner.get()?;
        let (b, n, dev) = (inputs.dim(0)?, c.n, inputs.device());
        let inputs = inputs.detach();
        let d = inputs.elem_count() / b;
        let flat = inputs.flatten_from(1)?.to_dtype(DType::F32)?;
        let range = (flat.max(1)? - flat.min(1)?)?.to_vec1::<f32>()?;
        let sigma: Vec<f32> = range.iter().map(|r| r * c.sigma as f32).collect();
        let mut rngs = example_rngs(&inputs, c.seed, 0)?;
        let mut sum = inputs.zeros_like()?;
        let mut sum_sq = inputs.zeros_like()?;
        let pb = progress((b * n).div_ceil(c.batch_size), "noise tunnel");
        for r in chunks(b * n, c.batch_size) {
            let ids = example_ids(&r, n, dev)?;
            // Rows come in example order, so each example's stream is read in order.
            let mut noise = Vec::with_capacity(r.len() * d);
            for row in r.clone() {
                let e = row / n;
                let rng = &mut rngs[e];
                noise.extend((0..d).map(|_| rng.sample::<f32, _>(StandardNormal) * sigma[e]));
            }
            let mut shape = inputs.dims().to_vec();
            shape[0] = r.len();
            let noise = Tensor::from_vec(noise, shape, dev)?.to_dtype(inputs.dtype())?;
            let noisy = (inputs.index_select(&ids, 0)? + noise)?;
            let ex = inner.attribute(model, &noisy, &target.select_repeated(n, r.clone()))?;
            let a = ex.attribution().detach();
            if a.dims() != noisy.dims() {
                return Err(Error::shape(
                    format!("{} to return a map of shape {:?}", inner.name(), noisy.dims()),
                    format!("{:?}", a.dims()),
                ));
            }
            sum = sum.index_add(&ids, &a, 0)?;
            if c.agg != Aggregation::SmoothGrad {
                sum_sq = sum_sq.index_add(&ids, &a.sqr()?, 0)?;
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
        let mean = |t: Tensor| -> Result<Tensor> { Ok(if n == 1 { t } else { t.affine(1.0 / n as f64, 0.0)? }) };
        let attr = match c.agg {
            Aggregation::SmoothGrad => mean(sum)?,
            Aggregation::SmoothGradSq => mean(sum_sq)?,
            // Rounding can make E[a²] − E[a]² slightly negative; a variance is not.
            Aggregation::VarGrad => (mean(sum_sq)? - mean(sum)?.sqr()?)?.relu()?,
        };
        let mut e = Explanation::new("smoothgrad", attr, target)
            .with_params(self.params())
            .with_diag("inner_method", inner.name().to_string());
        e.seed = Some(c.seed);
        Ok(e)
    }
}

const SUMMARY: &str = "NoiseTunnel: SmoothGrad / SmoothGrad² / VarGrad around any method (inner=NAME, inner.PARAM=...)";

lumen_core::submit_method!(NoiseTunnel);

