//! Layer attribution (Captum's definitions): the target attributed to the units of
//! one layer. Let `A(x)` be the layer's output, `F` the target's objective as a
//! function of it, `g = ∂F/∂A`, and `x_α = b + α(x − b)` the straight path from the
//! baseline `b`; `(α_k, w_k)` is the quadrature of `scheme` (Gauss–Legendre by
//! default, 50 steps, as Captum and lumen's Integrated Gradients):
//!
//! - `layer_activation`: `A(x)` (Captum's LayerActivation);
//! - `layer_gradient_x_activation`: `A(x) ⊙ g(x)` (LayerGradientXActivation);
//! - `layer_integrated_gradients`: IG in the layer's space, the layer's output
//!   interpolated between the baseline's and the input's, `a_k = A(b) + α_k(A(x) − A(b))`:
//!   `(A(x) − A(b)) ⊙ Σ_k w_k ∂F/∂A|_{a_k}` (LayerIntegratedGradients with
//!   `attribute_to_layer_input=False`); sums to `F(x) − F(b)` up to the quadrature;
//! - `layer_conductance`: `Σ_k (A(x_{α_{k+1}}) − A(x_{α_k})) ⊙ g(x_{α_k})` over the
//!   `steps + 1` nodes of the scheme (Captum's LayerConductance: the weights are not
//!   used, the activation differences are the steps); summed over the layer it is
//!   the path integral of `dF`, `F(x) − F(b)` up to the quadrature and, for rules
//!   without end nodes (Gauss–Legendre), the two end segments;
//! - `internal_influence`: `Σ_k w_k g(x_{α_k})` (InternalInfluence).
//!
//! Every attribution has the layer's shape `[B, ...]`; the explanation names the
//! layer in `diagnostics["layer"]`. The path methods report completeness where it
//! holds.

use crate::path::{activations, completeness, objective_values, per_row, points};
use lumen_core::method::resolve_layer;
use lumen_core::quadrature::{PathConfig, Scheme};
use lumen_core::baseline::Baseline;
use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, layer_gradient, per_chunk, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};

/// Configuration of the one-pass layer methods.
#[derive(Debug, Clone, Config)]
pub struct LayerConfig {
    /// the layer to attribute to (default: the last layer with spatial output)
    pub layer: Option<String>,
    /// examples per pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig { layer: None, batch_size: 64 }
    }
}

/// Configuration of the path methods at a layer: the layer and core's path
/// parameters (`steps`, `scheme`, `baseline`, `seed`, `batch_size`).
#[derive(Debug, Clone, Default, Config)]
pub struct LayerPathConfig {
    /// the layer to attribute to (default: the last layer with spatial output)
    pub layer: Option<String>,
    #[param(flatten)]
    pub path: PathConfig,
}

/// Reads a layer's maps, so needs the layer vocabulary.
const LAYER: MethodProps = MethodProps { needs_rules: true, ..MethodProps::NONE };
const LAYER_COMPLETE: MethodProps = MethodProps { needs_rules: true, completeness: true, ..MethodProps::NONE };

fn check_path(method: &str, c: &LayerPathConfig, nodes: usize) -> Result<()> {
    if c.path.baselines.is_empty() {
        return Err(Error::bad_param(method, "baseline", "no baseline given"));
    }
    if c.path.scheme == Scheme::Trapezoid && nodes < 2 {
        return Err(Error::bad_param(method, "steps", "the trapezoid rule needs at least 2 steps"));
    }
    Ok(())
}

/// The attribution averaged over the baselines, `run(baseline j)` giving one
/// baseline's attribution and `F(b_j)`; with the completeness fact when `complete`.
fn over_baselines(
    method: &'static str,
    c: &LayerPathConfig,
    model: &dyn Classifier,
    inputs: &Tensor,
    target: &Target,
    layer: &str,
    complete: bool,
    mut run: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Explanation> {
    let mut total: Option<Tensor> = None;
    let b = inputs.dim(0)?;
    let mut f_b = vec![0f64; b];
    for (j, base) in c.path.baselines.iter().enumerate() {
        let bl = base.materialize(model, inputs, c.path.seed, j as u64)?.detach();
        if complete {
            for (acc, v) in f_b.iter_mut().zip(objective_values(model, &bl, target, c.path.batch_size)?) {
                *acc += v;
            }
        }
        let attr = run(&bl)?;
        total = Some(match total {
            None => attr,
            Some(t) => (t + attr)?,
        });
    }
    let nb = c.path.baselines.len();
    let mut attr = total.ok_or_else(|| Error::bad_param(method, "baseline", "no baseline given"))?;
    if nb > 1 {
        attr = attr.affine(1.0 / nb as f64, 0.0)?;
        f_b.iter_mut().for_each(|v| *v /= nb as f64);
    }
    let mut e = Explanation::new(method, attr.clone(), target.clone()).with_diag("layer", layer);
    if complete {
        let f_x = objective_values(model, inputs, target, c.path.batch_size)?;
        e = e.with_completeness(completeness(&attr, f_x, f_b)?);
    }
    if c.path.baselines.iter().any(|b| matches!(b, Baseline::Uniform)) {
        e.seed = Some(c.path.seed);
    }
    Ok(e)
}

macro_rules! method {
    ($ty:ident, $config:ty, $name:literal, $summary:literal, $props:expr, $check:expr) => {
        #[derive(Debug, Clone, Default)]
        pub struct $ty {
            pub config: $config,
        }

        impl Method for $ty {
            const NAME: &'static str = $name;
            const SUMMARY: &'static str = $summary;
            type Config = $config;
            const PROPS: MethodProps = $props;
            fn new(config: $config) -> Result<Self> {
                #[allow(clippy::redundant_closure_call)]
                ($check)(&config)?;
                Ok($ty { config })
            }
            fn config(&self) -> &$config {
                &self.config
            }
            fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
                Ok(self.run(model, inputs, target)?.with_params(self.params()))
            }
        }

        lumen_core::submit_method!($ty);
    };
}

method!(
    LayerActivation,
    LayerConfig,
    "layer_activation",
    "a layer's activations for the input (Captum's LayerActivation); the layer's shape",
    LAYER,
    |_: &LayerConfig| Ok::<(), Error>(())
);
method!(
    LayerGradientXActivation,
    LayerConfig,
    "layer_gradient_x_activation",
    "a layer's activations times the target's gradient there (Captum's LayerGradientXActivation)",
    LAYER,
    |_: &LayerConfig| Ok::<(), Error>(())
);
method!(
    LayerIntegratedGradients,
    LayerPathConfig,
    "layer_integrated_gradients",
    "integrated gradients in a layer's space, its output interpolated from the baseline's (Captum's LayerIntegratedGradients)",
    LAYER_COMPLETE,
    |c: &LayerPathConfig| check_path("layer_integrated_gradients", c, c.path.steps)
);
method!(
    LayerConductance,
    LayerPathConfig,
    "layer_conductance",
    "conductance of a layer's units: activation steps along the input path times the gradient (Captum's LayerConductance)",
    LAYER_COMPLETE,
    |c: &LayerPathConfig| check_path("layer_conductance", c, c.path.steps + 1)
);
method!(
    InternalInfluence,
    LayerPathConfig,
    "internal_influence",
    "a layer's gradient integrated along the input path (Captum's InternalInfluence)",
    LAYER,
    |c: &LayerPathConfig| check_path("internal_influence", c, c.path.steps)
);

impl LayerActivation {
    fn run(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let layer = resolve_layer(Self::NAME, model, inputs, self.config.layer.as_deref())?;
        let a = activations(model, inputs, &layer, self.config.batch_size)?;
        Ok(Explanation::new(Self::NAME, a, target).with_diag("layer", layer.as_str()))
    }
}

impl LayerGradientXActivation {
    fn run(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let layer = resolve_layer(Self::NAME, model, inputs, self.config.layer.as_deref())?;
        let attr = per_chunk(&inputs.detach(), self.config.batch_size, |r, x| {
            let lg = layer_gradient(model, x, &target.select(r), &layer, None, ForwardOptions::default())?;
            Ok((lg.activation * lg.grad)?)
        })?;
        Ok(Explanation::new(Self::NAME, attr, target).with_diag("layer", layer.as_str()))
    }
}

impl LayerIntegratedGradients {
    fn run(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let inputs = inputs.detach();
        let layer = resolve_layer(Self::NAME, model, &inputs, c.layer.as_deref())?;
        let (alphas, weights) = c.path.scheme.nodes(Self::NAME, c.path.steps)?;
        let m = alphas.len();
        let a_x = activations(model, &inputs, &layer, c.path.batch_size)?;
        over_baselines(Self::NAME, c, model, &inputs, &target, &layer, true, |bl| {
            let a_b = activations(model, bl, &layer, c.path.batch_size)?;
            let diff = (&a_x - &a_b)?;
            // Σ_k w_k ∂F/∂A at the interpolated activations, per example; the input
            // below the layer is the example's own (its value is replaced).
            let mut acc = a_x.zeros_like()?;
            for r in chunks(inputs.dim(0)? * m, c.path.batch_size) {
                let (ids, pts) = points(&a_b, &diff, &alphas, &r)?;
                let x = inputs.index_select(&ids, 0)?;
                let t = target.select_repeated(m, r.clone());
                let g = layer_gradient(model, &x, &t, &layer, Some(&pts), ForwardOptions::default())?.grad;
                let w = per_row(r.clone().map(|i| weights[i % m]).collect(), &g)?;
                acc = acc.index_add(&ids, &g.broadcast_mul(&w)?, 0)?;
            }
            Ok((diff * acc)?)
        })
    }
}

impl InternalInfluence {
    fn run(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let inputs = inputs.detach();
        let layer = resolve_layer(Self::NAME, model, &inputs, c.layer.as_deref())?;
        let (alphas, weights) = c.path.scheme.nodes(Self::NAME, c.path.steps)?;
        let m = alphas.len();
        over_baselines(Self::NAME, c, model, &inputs, &target, &layer, false, |bl| {
            let diff = (&inputs - bl)?;
            let mut acc: Option<Tensor> = None;
            for r in chunks(inputs.dim(0)? * m, c.path.batch_size) {
                let (ids, pts) = points(bl, &diff, &alphas, &r)?;
                let t = target.select_repeated(m, r.clone());
                let g = layer_gradient(model, &pts, &t, &layer, None, ForwardOptions::default())?.grad;
                let w = per_row(r.clone().map(|i| weights[i % m]).collect(), &g)?;
                let a = match acc.take() {
                    Some(a) => a,
                    None => layer_zeros(&g, inputs.dim(0)?)?,
                };
                acc = Some(a.index_add(&ids, &g.broadcast_mul(&w)?, 0)?);
            }
            acc.ok_or_else(|| Error::msg("internal_influence: no path points"))
        })
    }
}

/// Zeros of the layer's shape for `b` examples, from a chunk of its values `[n, ...]`.
fn layer_zeros(like: &Tensor, b: usize) -> Result<Tensor> {
    let mut shape = like.dims().to_vec();
    shape[0] = b;
    Ok(Tensor::zeros(shape, like.dtype(), like.device())?)
}

impl LayerConductance {
    fn run(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let inputs = inputs.detach();
        let layer = resolve_layer(Self::NAME, model, &inputs, c.layer.as_deref())?;
        // Captum evaluates steps + 1 nodes and multiplies each node's gradient by the
        // activation step to the next node.
        let (alphas, _) = c.path.scheme.nodes(Self::NAME, c.path.steps + 1)?;
        let m = alphas.len();
        let b = inputs.dim(0)?;
        let dev = inputs.device().clone();
        over_baselines(Self::NAME, c, model, &inputs, &target, &layer, true, |bl| {
            let diff = (&inputs - bl)?;
            let mut acc: Option<Tensor> = None;
            // The last row of the previous chunk, when its example goes on.
            let mut carry: Option<(Tensor, Tensor)> = None;
            for r in chunks(b * m, c.path.batch_size) {
                let (_, pts) = points(bl, &diff, &alphas, &r)?;
                let t = target.select_repeated(m, r.clone());
                let lg = layer_gradient(model, &pts, &t, &layer, None, ForwardOptions::default())?;
                let (mut a, mut g, mut start) = (lg.activation, lg.grad, r.start);
                if let Some((ca, cg)) = carry.take() {
                    a = Tensor::cat(&[&ca, &a], 0)?;
                    g = Tensor::cat(&[&cg, &g], 0)?;
                    start -= 1;
                }
                let mut sum = match acc.take() {
                    Some(s) => s,
                    None => layer_zeros(&a, b)?,
                };
                // Consecutive rows p, p + 1 of one example.
                let lo: Vec<usize> = (start..r.end - 1).filter(|p| (p + 1) % m != 0).collect();
                if !lo.is_empty() {
                    let local = |off: usize| -> Result<Tensor> {
                        let v: Vec<u32> = lo.iter().map(|p| (p - start + off) as u32).collect();
                        Ok(Tensor::from_vec(v, lo.len(), &dev)?)
                    };
                    let (lo_t, hi_t) = (local(0)?, local(1)?);
                    let step = (a.index_select(&hi_t, 0)? - a.index_select(&lo_t, 0)?)?;
                    let contrib = (step * g.index_select(&lo_t, 0)?)?;
                    let ids: Vec<u32> = lo.iter().map(|p| (p / m) as u32).collect();
                    sum = sum.index_add(&Tensor::from_vec(ids, lo.len(), &dev)?, &contrib, 0)?;
                }
                if r.end % m != 0 {
                    let n = a.dim(0)?;
                    carry = Some((a.narrow(0, n - 1, 1)?, g.narrow(0, n - 1, 1)?));
                }
                acc = Some(sum);
            }
            acc.ok_or_else(|| Error::msg("layer_conductance: no path points"))
        })
    }
}
