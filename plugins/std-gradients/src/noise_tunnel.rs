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
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Registry, Result, Target};
use rand::Rng;
use rand_distr::StandardNormal;
use std::collections::BTreeMap;

/// How the maps of the noisy copies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Mean.
    SmoothGrad,
    /// Mean of the squares.
    SmoothGradSq,
    /// Variance (population, `E[a²] − E[a]²`).
    VarGrad,
}

impl Aggregation {
    pub const NAMES: &'static [&'static str] = &["smoothgrad", "smoothgrad_sq", "vargrad"];

    pub fn name(self) -> &'static str {
        match self {
            Aggregation::SmoothGrad => "smoothgrad",
            Aggregation::SmoothGradSq => "smoothgrad_sq",
            Aggregation::VarGrad => "vargrad",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "smoothgrad" => Ok(Aggregation::SmoothGrad),
            "smoothgrad_sq" => Ok(Aggregation::SmoothGradSq),
            "vargrad" => Ok(Aggregation::VarGrad),
            other => Err(Error::bad_param(
                "smoothgrad",
                "agg",
                format!("'{other}' is not one of {}", Self::NAMES.join(", ")),
            )),
        }
    }
}

/// Configuration of [`NoiseTunnel`].
#[derive(Debug, Clone)]
pub struct NoiseTunnelConfig {
    pub agg: Aggregation,
    /// Noisy copies per example.
    pub n: usize,
    /// Noise σ as a fraction of each input's (max − min).
    pub sigma: f64,
    pub seed: u64,
    /// Noisy copies per call of the inner method.
    pub batch_size: usize,
}

impl Default for NoiseTunnelConfig {
    fn default() -> Self {
        NoiseTunnelConfig { agg: Aggregation::SmoothGrad, n: 50, sigma: 0.15, seed: 0, batch_size: 64 }
    }
}

impl NoiseTunnelConfig {
    pub fn from_args(a: &Args) -> Result<Self> {
        let sigma = a.f64("sigma")?;
        if sigma < 0.0 {
            return Err(Error::bad_param("smoothgrad", "sigma", format!("must be ≥ 0, got {sigma}")));
        }
        Ok(NoiseTunnelConfig {
            agg: Aggregation::parse(&a.string("agg")?)?,
            n: a.positive("n")?,
            sigma,
            seed: a.u64("seed")?,
            batch_size: a.positive("batch_size")?,
        })
    }
}

pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("inner", ParamKind::Method, "saliency", "the wrapped method; its parameters go as inner.NAME=VALUE"),
    ParamSpec::new("agg", ParamKind::Choice(Aggregation::NAMES), "smoothgrad", "aggregation of the noisy maps"),
    ParamSpec::new("n", ParamKind::Int, "50", "noisy copies per example").max(10_000),
    ParamSpec::new("sigma", ParamKind::Float, "0.15", "noise σ as a fraction of the input's (max − min)"),
    ParamSpec::new("seed", ParamKind::Int, "0", "noise seed"),
    ParamSpec::new("batch_size", ParamKind::Int, "64", "noisy copies per call of the inner method").max(lumen_core::params::MAX_BATCH_SIZE),
];

pub const PROPS: MethodProps = MethodProps { stochastic: true, wrapper: true, ..MethodProps::NONE };

/// Noise around any attributor.
pub struct NoiseTunnel {
    pub inner: Box<dyn Attributor>,
    pub config: NoiseTunnelConfig,
}

impl NoiseTunnel {
    pub fn new(inner: Box<dyn Attributor>, config: NoiseTunnelConfig) -> Self {
        NoiseTunnel { inner, config }
    }

    /// Builds the wrapper and its inner method (`inner`, with the `inner.*` parameters)
    /// from the registry.
    pub fn from_args(a: &Args, registry: &Registry) -> Result<Self> {
        let name = a.string("inner")?;
        let inner = registry.build_method(&name, &a.sub("inner"))?;
        Ok(Self::new(inner, NoiseTunnelConfig::from_args(a)?))
    }
}

impl Attributor for NoiseTunnel {
    fn name(&self) -> &str {
        "smoothgrad"
    }
    fn props(&self) -> MethodProps {
        let i = self.inner.props();
        MethodProps { needs_rules: i.needs_rules, multiplies_input: i.multiplies_input, ..PROPS }
    }
    fn params(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut p = BTreeMap::from([
            ("inner".to_string(), self.inner.name().to_string()),
            ("agg".to_string(), c.agg.name().to_string()),
            ("n".to_string(), c.n.to_string()),
            ("sigma".to_string(), c.sigma.to_string()),
            ("seed".to_string(), c.seed.to_string()),
            ("batch_size".to_string(), c.batch_size.to_string()),
        ]);
        for (k, v) in self.inner.params() {
            p.insert(format!("inner.{k}"), v);
        }
        p
    }

    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
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
            let ex = self.inner.attribute(model, &noisy, &target.select_repeated(n, r.clone()))?;
            let a = ex.attribution().detach();
            if a.dims() != noisy.dims() {
                return Err(Error::shape(
                    format!("{} to return a map of shape {:?}", self.inner.name(), noisy.dims()),
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
            .with_diag("inner_method", self.inner.name().to_string());
        e.seed = Some(c.seed);
        Ok(e)
    }
}

lumen_core::submit_method!(
    "smoothgrad",
    "NoiseTunnel: SmoothGrad / SmoothGrad² / VarGrad around any method (inner=NAME, inner.PARAM=...)",
    PARAMS,
    PROPS,
    |a, reg| Ok(Box::new(NoiseTunnel::from_args(a, reg)?)),
);

