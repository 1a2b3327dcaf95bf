//! The [`Attributor`] trait and the helpers every gradient-type method shares.

use crate::explanation::Explanation;
use crate::model::{Classifier, ForwardOptions};
use crate::target::{objective, Target};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::BTreeMap;

/// What a method promises, for reports and for choosing metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodProps {
    /// The map is multiplied by the input (or by input − baseline).
    pub multiplies_input: bool,
    /// Attributions sum to `f(x) − f(baseline)` (reported as a delta).
    pub completeness: bool,
    /// Needs the explainable layer vocabulary (rules or taps).
    pub needs_rules: bool,
    /// Uses randomness, so takes a seed.
    pub stochastic: bool,
    /// Wraps another method.
    pub wrapper: bool,
}

impl MethodProps {
    /// No properties (usable in statics, unlike `Default`).
    pub const NONE: MethodProps = MethodProps {
        multiplies_input: false,
        completeness: false,
        needs_rules: false,
        stochastic: false,
        wrapper: false,
    };
}

/// An attribution method. One required call: `attribute`.
pub trait Attributor: Send + Sync {
    fn name(&self) -> &str;
    fn props(&self) -> MethodProps {
        MethodProps::default()
    }
    /// The method's resolved parameters, as strings.
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Explains `inputs` (`[B, ...]`) for `target`. The result's `attribution` has the
    /// shape of `inputs`.
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation>;
}

/// Gradient of the per-example objective with respect to the input.
#[derive(Debug, Clone)]
pub struct Gradient {
    /// `d objective_b / d x_b`, shape of the input.
    pub grad: Tensor,
    /// The objective per example `[B]`.
    pub objective: Tensor,
    /// The model output `[B, K]` (or the tapped layer's network output).
    pub output: Tensor,
}

/// Computes the input gradient of a resolved target, through `opts` (rules apply).
/// Examples in a batch are independent, so one backward pass over the sum gives
/// every example's gradient.
pub fn gradient(model: &dyn Classifier, xs: &Tensor, target: &Target, opts: ForwardOptions) -> Result<Gradient> {
    if let Some(g) = native_gradient(model, xs, target, &opts)? {
        return Ok(g);
    }
    let var = Var::from_tensor(&xs.detach())?;
    let (obj, output) = objective(model, var.as_tensor(), target, opts)?;
    let grads = obj.sum_all()?.backward()?;
    let grad = grad_or_zeros(&grads, var.as_tensor())?;
    Ok(Gradient { grad, objective: obj.detach(), output: output.detach() })
}

/// [`gradient`] for a class target through the model's own reverse pass
/// ([`Classifier::input_gradient`]), or `None` where the model has none (or the
/// target is malformed: the autograd path then reports it).
fn native_gradient(model: &dyn Classifier, xs: &Tensor, target: &Target, opts: &ForwardOptions) -> Result<Option<Gradient>> {
    if opts.ctx.reference_split.is_some() {
        // The split pass carries only the inputs' rows; this objective has every row.
        return Ok(None);
    }
    let n = xs.dim(0)?;
    let Some(seed) = crate::target::class_seed(target, n, n, model.info().num_classes(), false, xs)? else {
        return Ok(None);
    };
    let Some(r) = model.input_gradient(&xs.detach(), &seed, opts)? else { return Ok(None) };
    let objective = crate::target::class_objective(&r.output, target)?;
    Ok(Some(Gradient { grad: r.grad, objective, output: r.output }))
}

/// The config of a method that takes examples `batch_size` at a time (saliency,
/// input × gradient, the modified gradients, LRP): the one `batch_size` parameter.
#[derive(Debug, Clone, Copy, PartialEq, crate::config::Config)]
pub struct Batched {
    /// examples per backward pass
    #[param(positive, max = crate::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for Batched {
    fn default() -> Self {
        Batched { batch_size: 64 }
    }
}

/// Runs `f` on chunks of at most `batch_size` examples of `inputs` (with the chunk's
/// range, to select the target) and concatenates the results along dim 0.
pub fn per_chunk(
    inputs: &Tensor,
    batch_size: usize,
    mut f: impl FnMut(std::ops::Range<usize>, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut parts = vec![];
    for r in chunks(inputs.dim(0)?, batch_size) {
        let x = inputs.narrow(0, r.start, r.len())?;
        parts.push(f(r, &x)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `d (Σ objective) / d var`, or zeros when the objective does not depend on `var`
/// (the step every hand-written backward pass needs).
pub fn grad_or_zeros(grads: &candle_core::backprop::GradStore, var: &Tensor) -> Result<Tensor> {
    Ok(match grads.get(var) {
        Some(g) => g.clone(),
        None => var.zeros_like()?,
    })
}

/// Gaussian blur over the spatial dims (the last two for `[B, C, H, W]`, the last for
/// lower ranks), with edges replicated; σ in pixels. The kernel is the sampled
/// Gaussian truncated at ⌈3σ⌉ and normalised to sum 1; σ = 0 is the identity. IG's
/// blur baseline and DeepLIFT's blurred reference both use this one.
pub fn gaussian_blur(xs: &Tensor, sigma: f64) -> Result<Tensor> {
    if sigma == 0.0 {
        return Ok(xs.clone());
    }
    let dims = xs.dims().to_vec();
    let rank = dims.len();
    let (h, w) = if rank >= 4 { (dims[rank - 2], dims[rank - 1]) } else { (1, dims[rank - 1]) };
    let r = (3.0 * sigma).ceil() as usize;
    let mut k: Vec<f32> = (-(r as i64)..=r as i64).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32).collect();
    let total: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    let dev = xs.device();
    let n = xs.elem_count() / (h * w);
    let mut y = xs.to_dtype(DType::F32)?.reshape((n, 1, h, w))?;
    let kw = Tensor::from_vec(k.clone(), (1, 1, 1, 2 * r + 1), dev)?;
    y = y.pad_with_same(3, r, r)?.conv2d(&kw, 0, 1, 1, 1)?;
    if h > 1 {
        let kh = Tensor::from_vec(k, (1, 1, 2 * r + 1, 1), dev)?;
        y = y.pad_with_same(2, r, r)?.conv2d(&kh, 0, 1, 1, 1)?;
    }
    Ok(y.reshape(dims)?.to_dtype(xs.dtype())?)
}

/// Splits `0..n` into ranges of at most `batch_size`.
pub fn chunks(n: usize, batch_size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let bs = batch_size.max(1);
    (0..n.div_ceil(bs)).map(move |i| i * bs..((i + 1) * bs).min(n))
}

/// Checks the input against the model and resolves the target; the common first
/// step of every method.
pub fn prepare(model: &dyn Classifier, xs: &Tensor, target: &Target) -> Result<Target> {
    model.info().check_input(xs)?;
    if xs.dim(0)? == 0 {
        return Err(Error::shape("a batch of at least one example", format!("{:?}", xs.dims())));
    }
    target.resolve(model, xs)
}

/// `repeat_interleave` along dim 0: `[x0, x0, .., x1, x1, ..]`.
pub fn repeat_each(xs: &Tensor, n: usize) -> Result<Tensor> {
    let b = xs.dim(0)?;
    let mut shape = xs.dims().to_vec();
    let rest = shape[1..].to_vec();
    let x = xs.unsqueeze(1)?;
    let mut bshape = vec![b, n];
    bshape.extend(&rest);
    let x = x.broadcast_as(bshape)?.contiguous()?;
    shape[0] = b * n;
    Ok(x.reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    #[test]
    fn chunking_and_repeat() {
        let c: Vec<_> = chunks(5, 2).collect();
        assert_eq!(c, vec![0..2, 2..4, 4..5]);
        let x = Tensor::new(&[[1f32], [2.]], &Device::Cpu).unwrap();
        let r = repeat_each(&x, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(r, vec![1., 1., 1., 2., 2., 2.]);
    }
}
