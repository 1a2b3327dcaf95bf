//! The [`Attributor`] trait and the helpers every gradient-type method shares.

use crate::explanation::Explanation;
use crate::model::rule::{Composite, NodeInfo, Rule, RuleCtx};
use crate::model::{Classifier, ForwardOptions, Node, Taps};
use crate::target::{objective, Target};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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

/// The layer a method reads: `layer` when given (it must exist; the error lists the
/// layers), else the last layer whose output has spatial dimensions (`[B, C, H, W]`
/// or `[B, C, L]`): the last one before global pooling or flattening, where the CAMs
/// and the layer methods look by default.
pub fn resolve_layer(method: &str, model: &dyn Classifier, xs: &Tensor, layer: Option<&str>) -> Result<String> {
    let net = model.network().ok_or_else(|| {
        Error::msg(format!(
            "{method} needs a model built from the explainable layer vocabulary (it reads a layer's values); '{}' is not",
            model.info().name
        ))
    })?;
    if let Some(name) = layer.filter(|l| !l.is_empty()) {
        net.node(name)?;
        return Ok(name.to_string());
    }
    let one = xs.narrow(0, 0, 1)?;
    let fwd = model.forward_with(&one, &ForwardOptions { taps: Taps::All, ..Default::default() })?;
    net.nodes()
        .iter()
        .rev()
        .find(|n| fwd.taps.get(&n.name).is_some_and(|t| t.rank() >= 3))
        .map(|n| n.name.clone())
        .ok_or_else(|| {
            Error::bad_param(
                method,
                "layer",
                format!("model '{}' has no layer with spatial output to default to; name one", model.info().name),
            )
        })
}

/// The activations at one layer and the gradient of the objective with respect to
/// them ([`layer_gradient`]).
#[derive(Debug, Clone)]
pub struct LayerGradient {
    /// The layer's output `A` (or the tensor that replaced it).
    pub activation: Tensor,
    /// `d objective_b / d A_b`, shape of `A`.
    pub grad: Tensor,
    /// The objective per example `[B]`.
    pub objective: Tensor,
}

/// The activations at `layer` and the gradient of a resolved target's objective with
/// respect to them, through `opts` (its rules apply to the other layers). With
/// `replace`, the layer's output is that tensor instead (same shape), as layer
/// integrated gradients need.
///
/// The layer's value restarts the graph as a fresh variable, so the backward stops
/// there: nothing below the layer is differentiated. Works on any model whose
/// forward honours rule maps (the explainable network); others are an error.
pub fn layer_gradient(
    model: &dyn Classifier,
    xs: &Tensor,
    target: &Target,
    layer: &str,
    replace: Option<&Tensor>,
    opts: ForwardOptions,
) -> Result<LayerGradient> {
    let (obj, var) = probe_objective(model, xs, target, layer, replace, true, opts)?;
    let var = var.ok_or_else(|| Error::msg(format!("the model's forward pass did not reach layer '{layer}'")))?;
    let grads = obj.sum_all()?.backward()?;
    let grad = grad_or_zeros(&grads, var.as_tensor())?;
    Ok(LayerGradient { activation: var.as_tensor().detach(), grad, objective: obj.detach() })
}

/// The objective `[B]` of a resolved target with the output of `layer` replaced by
/// `replacement` (same shape), without a backward pass: what ablating units of a
/// layer needs (Ablation-CAM).
pub fn objective_with_layer(
    model: &dyn Classifier,
    xs: &Tensor,
    target: &Target,
    layer: &str,
    replacement: &Tensor,
    opts: ForwardOptions,
) -> Result<Tensor> {
    Ok(probe_objective(model, xs, target, layer, Some(replacement), false, opts)?.0.detach())
}

/// The objective with the probe at `layer`, and the probe's variable when `track`.
fn probe_objective(
    model: &dyn Classifier,
    xs: &Tensor,
    target: &Target,
    layer: &str,
    replace: Option<&Tensor>,
    track: bool,
    opts: ForwardOptions,
) -> Result<(Tensor, Option<Var>)> {
    let net = model.network().ok_or_else(|| {
        Error::msg(format!(
            "layer '{layer}': model '{}' is not built from the explainable layer vocabulary, so its layers cannot be read",
            model.info().name
        ))
    })?;
    net.node(layer)?;
    let probe = Arc::new(LayerProbe { layer: layer.to_string(), replace: replace.cloned(), track, var: Mutex::new(None) });
    let composite = ProbeComposite { inner: opts.composite, probe: probe.clone() };
    let opts = ForwardOptions { composite: Some(&composite), ..opts };
    let (obj, _) = objective(model, xs, target, opts)?;
    let var = probe.var.lock().map_err(|_| Error::msg("internal: layer probe lock poisoned"))?.take();
    Ok((obj, var))
}

/// The input gradient and, for each of `layers`, its activations and their gradient,
/// from one backward pass (FullGrad needs every bias layer's gradient together).
/// Unlike [`layer_gradient`], the graph stays whole: each layer's output gets a zero
/// variable added, whose gradient is the layer's.
pub fn layer_gradients(
    model: &dyn Classifier,
    xs: &Tensor,
    target: &Target,
    layers: &[String],
    opts: ForwardOptions,
) -> Result<(Gradient, Vec<LayerGradient>)> {
    let net = model.network().ok_or_else(|| {
        Error::msg(format!("model '{}' is not built from the explainable layer vocabulary, so its layers cannot be read", model.info().name))
    })?;
    for l in layers {
        net.node(l)?;
    }
    let taps = Arc::new(ZeroTaps { layers: layers.to_vec(), taken: Mutex::new(vec![]) });
    let composite = TapComposite { inner: opts.composite, taps: taps.clone() };
    let var = Var::from_tensor(&xs.detach())?;
    let (obj, output) = objective(model, var.as_tensor(), target, ForwardOptions { composite: Some(&composite), ..opts })?;
    let grads = obj.sum_all()?.backward()?;
    let taken = std::mem::take(&mut *taps.taken.lock().map_err(|_| Error::msg("internal: layer taps lock poisoned"))?);
    let mut out = vec![];
    for l in layers {
        let (_, a, z) = taken
            .iter()
            .find(|(n, _, _)| n == l)
            .ok_or_else(|| Error::msg(format!("the model's forward pass did not reach layer '{l}'")))?;
        out.push(LayerGradient { activation: a.clone(), grad: grad_or_zeros(&grads, z.as_tensor())?, objective: obj.detach() });
    }
    let input = Gradient { grad: grad_or_zeros(&grads, var.as_tensor())?, objective: obj.detach(), output: output.detach() };
    Ok((input, out))
}

/// The rule of [`layer_gradients`]: the layer's value plus a zero variable.
struct ZeroTaps {
    layers: Vec<String>,
    taken: Mutex<Vec<(String, Tensor, Var)>>,
}

impl Rule for ZeroTaps {
    fn name(&self) -> &str {
        "layer_taps"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _: &RuleCtx) -> Result<Tensor> {
        let value = node.forward(inputs)?;
        let z = Var::zeros(value.shape(), value.dtype(), value.device())?;
        let out = value.broadcast_add(z.as_tensor())?;
        self.taken.lock().map_err(|_| Error::msg("internal: layer taps lock poisoned"))?.push((node.name.clone(), value.detach(), z));
        Ok(out)
    }
}

/// The taps at their layers, the caller's rules elsewhere.
struct TapComposite<'a> {
    inner: Option<&'a dyn Composite>,
    taps: Arc<ZeroTaps>,
}

impl Composite for TapComposite<'_> {
    fn name(&self) -> &str {
        self.inner.map_or("layer_taps", |c| c.name())
    }
    fn rule_for(&self, node: &NodeInfo) -> Option<Arc<dyn Rule>> {
        if self.taps.layers.iter().any(|l| l == node.name) {
            return Some(self.taps.clone());
        }
        self.inner.and_then(|c| c.rule_for(node))
    }
}

/// The rule at the probed layer: its value (or the replacement), as a fresh variable
/// when `track` (else detached: a forward that needs no gradient there).
struct LayerProbe {
    layer: String,
    replace: Option<Tensor>,
    track: bool,
    var: Mutex<Option<Var>>,
}

impl Rule for LayerProbe {
    fn name(&self) -> &str {
        "layer_probe"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _: &RuleCtx) -> Result<Tensor> {
        let value = node.forward(inputs)?;
        let value = match &self.replace {
            Some(r) if r.dims() != value.dims() => {
                return Err(Error::shape(
                    format!("a replacement for layer '{}' of shape {:?}", node.name, value.dims()),
                    format!("{:?}", r.dims()),
                ))
            }
            Some(r) => r.clone(),
            None => value,
        };
        if !self.track {
            return Ok(value.detach());
        }
        let var = Var::from_tensor(&value.detach())?;
        let out = var.as_tensor().clone();
        *self.var.lock().map_err(|_| Error::msg("internal: layer probe lock poisoned"))? = Some(var);
        Ok(out)
    }
}

/// The probe at its layer, the caller's rules elsewhere.
struct ProbeComposite<'a> {
    inner: Option<&'a dyn Composite>,
    probe: Arc<LayerProbe>,
}

impl Composite for ProbeComposite<'_> {
    fn name(&self) -> &str {
        self.inner.map_or("layer_probe", |c| c.name())
    }
    fn rule_for(&self, node: &NodeInfo) -> Option<Arc<dyn Rule>> {
        if node.name == self.probe.layer {
            return Some(self.probe.clone());
        }
        self.inner.and_then(|c| c.rule_for(node))
    }
}

/// The target's objective per example, without gradients, in chunks.
pub fn objective_values(model: &dyn Classifier, xs: &Tensor, target: &Target, batch_size: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(xs.dim(0)?);
    for r in chunks(xs.dim(0)?, batch_size) {
        let x = xs.narrow(0, r.start, r.len())?.detach();
        let (obj, _) = objective(model, &x, &target.select(r), ForwardOptions::default())?;
        out.extend(obj.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok(out)
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

    /// y = W2 relu(W1 x + b1): at layer `relu`, A = relu(W1 x + b1) and dy_c/dA is
    /// row c of W2, whatever A is (also a replacement).
    #[test]
    fn layer_gradient_by_hand() {
        use crate::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
        let d = Device::Cpu;
        let specs = vec![
            LayerSpec::new("fc1", LayerKind::Linear { in_features: 2, out_features: 2, bias: true }),
            LayerSpec::new("relu", LayerKind::Relu),
            LayerSpec::new("fc2", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
        ];
        let mut m = std::collections::HashMap::new();
        m.insert("fc1.weight".to_string(), Tensor::new(&[[1f32, -2.], [-1., 1.]], &d).unwrap());
        m.insert("fc1.bias".to_string(), Tensor::new(&[0.1f32, -0.2], &d).unwrap());
        m.insert("fc2.weight".to_string(), Tensor::new(&[[2f32, -1.], [0.5, 3.]], &d).unwrap());
        let net = Network::from_spec(&specs, candle_nn::VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
        let info = ModelInfo { name: "tiny".into(), input_shape: vec![2], labels: vec!["a".into(), "b".into()], input_range: (0.0, 1.0), card: None };
        let model = NetworkModel::new(info, net, &d).unwrap();
        let x = Tensor::new(&[[1f32, 0.25], [0., 1.]], &d).unwrap();
        let t = Target::Classes(vec![0, 1]);
        let lg = layer_gradient(&model, &x, &t, "relu", None, ForwardOptions::default()).unwrap();
        // h = (1 - 0.5 + 0.1, -1 + 0.25 - 0.2) = (0.6, -0.95); (0 - 2 + 0.1, 0 + 1 - 0.2) = (-1.9, 0.8)
        let a = lg.activation.to_vec2::<f32>().unwrap();
        assert!((a[0][0] - 0.6).abs() < 1e-6 && a[0][1] == 0.0 && a[1][0] == 0.0 && (a[1][1] - 0.8).abs() < 1e-6, "{a:?}");
        assert_eq!(lg.grad.to_vec2::<f32>().unwrap(), vec![vec![2., -1.], vec![0.5, 3.]]);
        let obj = lg.objective.to_vec1::<f32>().unwrap();
        assert!((obj[0] - 1.2).abs() < 1e-6 && (obj[1] - 2.4).abs() < 1e-6, "{obj:?}");
        // a replacement flows on: y = W2 r
        let r = Tensor::new(&[[1f32, 1.], [2., 0.]], &d).unwrap();
        let lg = layer_gradient(&model, &x, &t, "relu", Some(&r), ForwardOptions::default()).unwrap();
        assert_eq!(lg.activation.to_vec2::<f32>().unwrap(), r.to_vec2::<f32>().unwrap());
        assert_eq!(lg.objective.to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
        let obj = objective_with_layer(&model, &x, &t, "relu", &r, ForwardOptions::default()).unwrap();
        assert_eq!(obj.to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
        // several layers in one pass: fc1's gradient is relu'(h) ⊙ row c of W2; the input's
        // is W1ᵀ (relu'(h) ⊙ W2_c)
        let (input, ls) = layer_gradients(&model, &x, &t, &["fc1".into(), "relu".into()], ForwardOptions::default()).unwrap();
        assert_eq!(ls[1].grad.to_vec2::<f32>().unwrap(), vec![vec![2., -1.], vec![0.5, 3.]]);
        assert_eq!(ls[0].grad.to_vec2::<f32>().unwrap(), vec![vec![2., 0.], vec![0., 3.]]);
        assert_eq!(input.grad.to_vec2::<f32>().unwrap(), vec![vec![2., -4.], vec![-3., 3.]]);
        // bad layer names and shapes are errors
        let e = layer_gradient(&model, &x, &t, "nope", None, ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("fc1, relu, fc2"), "{e}");
        let bad = Tensor::zeros((2, 3), DType::F32, &d).unwrap();
        let e = layer_gradient(&model, &x, &t, "relu", Some(&bad), ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains("relu") && e.contains("[2, 3]"), "{e}");
    }
    #[test]
    fn chunking_and_repeat() {
        let c: Vec<_> = chunks(5, 2).collect();
        assert_eq!(c, vec![0..2, 2..4, 4..5]);
        let x = Tensor::new(&[[1f32], [2.]], &Device::Cpu).unwrap();
        let r = repeat_each(&x, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(r, vec![1., 1., 1., 2., 2., 2.]);
    }
}
