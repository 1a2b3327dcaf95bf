//! DeepLIFT rules (Shrikumar et al., "Not Just a Black Box", 2016, and "Learning
//! Important Features Through Propagating Activation Differences", 2017).
//!
//! The batch holds the inputs in rows `0..n` and their references in rows `n..2n`
//! ([`RuleCtx::with_reference_split`]), so every rule sees both activations. Each
//! rule keeps the layer's value and sets its gradient to the DeepLIFT multiplier
//! `m = C / δ`; the chain rule for multipliers is then ordinary backprop, and the
//! input's contributions are `m · (x − x_ref)`.
//!
//! Affine layers (conv, linear, batch norm, average pooling) need no rule: their
//! multiplier is the weight, which is their gradient.
//!
//! The threshold `eps` below which `|δx|` counts as zero (the multiplier then falls
//! back to the gradient) is a field of each rule that uses it.

use super::fused;
use lumen_core::candle::{DType, Tensor, TensorId, Var};
use lumen_core::model::{LayerKind, Node};
use lumen_core::rules::{settings, surrogate, Matcher, Rule, RuleCtx, RuleMap};
use lumen_core::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Default of the rules' `eps`.
pub const DEFAULT_EPS: f64 = 1e-6;

/// The numbers of the DeepLIFT composites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeepLiftSettings {
    /// Below this `|δx|` counts as zero.
    pub eps: f64,
}

impl Default for DeepLiftSettings {
    fn default() -> Self {
        DeepLiftSettings { eps: DEFAULT_EPS }
    }
}

/// The number of input rows `n`, checking that the batch has `2n` rows.
pub fn split_rows(ctx: &RuleCtx, x: &Tensor, rule: &str) -> Result<usize> {
    let n = ctx
        .reference_split
        .ok_or_else(|| Error::msg(format!("{rule}: needs RuleCtx::with_reference_split (inputs and references in one batch)")))?;
    if x.dim(0)? != 2 * n {
        return Err(Error::shape(format!("a batch of {} rows (inputs then references)", 2 * n), format!("{:?}", x.dims())));
    }
    Ok(n)
}

/// `[a; a]` along the batch dimension: references get the inputs' multipliers, so
/// every row's backward stays local to its row.
fn twice(a: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[a, a], 0)?)
}

/// Element-wise derivative of an activation layer at `x` (detached).
fn local_grad(node: &Node, x: &Tensor) -> Result<Tensor> {
    let v = Var::from_tensor(&x.detach())?;
    let y = node.forward(&[v.as_tensor()])?;
    let g = y.sum_all()?.backward()?;
    Ok(match g.get(v.as_tensor()) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    })
}

/// `where(|d| ≥ eps, num / d, fallback)`.
fn safe_ratio(num: &Tensor, d: &Tensor, fallback: &Tensor, eps: f64) -> Result<Tensor> {
    let big = d.abs()?.ge(eps)?;
    let ones = d.ones_like()?;
    let dsafe = big.where_cond(d, &ones)?;
    Ok(big.where_cond(&(num / dsafe)?, fallback)?)
}

/// The Rescale multipliers `δy/δx` of an element-wise layer, with the gradient as
/// the limit where `|δx| < eps`. `x` and `y` are the full `2n`-row batch.
pub fn rescale_multiplier(node: &Node, x: &Tensor, y: &Tensor, n: usize, eps: f64) -> Result<Tensor> {
    let (x, y) = (x.detach(), y.detach());
    let dx = (x.narrow(0, 0, n)? - x.narrow(0, n, n)?)?;
    let dy = (y.narrow(0, 0, n)? - y.narrow(0, n, n)?)?;
    let g = local_grad(node, &x.narrow(0, 0, n)?)?;
    twice(&safe_ratio(&dy, &dx, &g, eps)?)
}

/// The Rescale rule for ReLU, PReLU, sigmoid and tanh: `m = δy/δx`.
#[derive(Debug, Clone, Copy)]
pub struct Rescale {
    pub eps: f64,
}

impl Rule for Rescale {
    fn name(&self) -> &str {
        "deeplift_rescale"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let x = inputs[0];
        let y = node.forward(inputs)?;
        let m = self.multiplier(node, x, &y, ctx)?;
        if fused::on_cpu(x) {
            return fused::with_multiplier(x, &y, &m);
        }
        surrogate(&y, &(x * m)?)
    }
    fn has_vjp(&self, _node: &Node) -> bool {
        true
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], y: &Tensor, g: &Tensor, ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        // `g` has the inputs' rows only; their multipliers come first.
        let m = self.multiplier(node, inputs[0], y, ctx)?;
        Ok(vec![(g * m.narrow(0, 0, g.dim(0)?)?)?])
    }
}

impl Rescale {
    /// The multipliers `[2n, ...]` of the layer with input `x` and output `y`.
    fn multiplier(&self, node: &Node, x: &Tensor, y: &Tensor, ctx: &RuleCtx) -> Result<Tensor> {
        let n = split_rows(ctx, x, self.name())?;
        match node.kind {
            LayerKind::Relu if fused::on_cpu(x) => fused::relu_rescale_multiplier(x, y, self.eps),
            _ => rescale_multiplier(node, x, y, n, self.eps),
        }
    }
}

/// How a max pool picks the input that receives the output's signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRouting {
    /// DeepLIFT (eq. 11): `δy` goes to the input's argmax, whatever the reference.
    DeepLift,
    /// Plain winner-take-all (LRP): the gradient 1 goes to each row's own argmax.
    Winner,
}

/// Max pooling with explicit routing (candle's own max-pool backward splits ties
/// and needs kernel == stride).
#[derive(Debug, Clone, Copy)]
pub struct MaxRoute {
    pub routing: MaxRouting,
    /// DeepLIFT routing's threshold on `|δx|`.
    pub eps: f64,
}

impl MaxRoute {
    /// Winner-take-all routing (LRP), which takes no threshold.
    pub fn winner() -> Self {
        MaxRoute { routing: MaxRouting::Winner, eps: DEFAULT_EPS }
    }
}

/// Window geometry of a max-pool node: (kernel_h, kernel_w, stride_h, stride_w).
fn pool_geometry(node: &Node) -> Result<(usize, usize, usize, usize)> {
    match node.kind {
        LayerKind::MaxPool1d { kernel, stride } => Ok((1, kernel, 1, stride)),
        LayerKind::MaxPool2d { kernel, stride } => Ok((kernel, kernel, stride, stride)),
        ref k => Err(Error::msg(format!("layer '{}' ({}) is not a max pool", node.name, k.type_name()))),
    }
}

impl Rule for MaxRoute {
    fn name(&self) -> &str {
        match self.routing {
            MaxRouting::DeepLift => "deeplift_max",
            MaxRouting::Winner => "max_winner",
        }
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let x = inputs[0];
        let y = node.forward(inputs)?;
        let (idx, mult) = self.routes(node, x, ctx)?;
        let (b, c) = (x.dim(0)?, x.dim(1)?);
        let xf = x.contiguous()?.reshape((b, c, ()))?;
        let s = (xf.gather(&idx, 2)? * mult)?.reshape(y.shape())?;
        surrogate(&y, &s)
    }
    fn has_vjp(&self, _node: &Node) -> bool {
        true
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], _y: &Tensor, g: &Tensor, ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        // The adjoint of the forward's `gather(x, idx) · mult`: scatter-add `g · mult`.
        // `g` may hold only the first rows (the inputs under a reference split).
        let x = inputs[0];
        let rows = g.dim(0)?;
        let (idx, mult) = self.routes(node, x, ctx)?;
        let (idx, mult) = (idx.narrow(0, 0, rows)?.contiguous()?, mult.narrow(0, 0, rows)?);
        let src = (g.contiguous()?.reshape(mult.shape())? * mult)?;
        let mut shape = x.dims().to_vec();
        shape[0] = rows;
        let c = x.dim(1)?;
        let dx = Tensor::zeros((rows, c, x.elem_count() / (x.dim(0)? * c).max(1)), x.dtype(), x.device())?;
        Ok(vec![dx.scatter_add(&idx, &src, 2)?.reshape(shape)?])
    }
}

impl MaxRoute {
    /// Each output's routed input position in its plane (`[b, c, nout]`, u32) and
    /// the multiplier it carries (`[b, c, nout]`, the input's dtype).
    fn routes(&self, node: &Node, x: &Tensor, ctx: &RuleCtx) -> Result<(Tensor, Tensor)> {
        let (kh, kw, sh, sw) = pool_geometry(node)?;
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let (h, w) = if dims.len() == 4 { (dims[2], dims[3]) } else { (1, dims[2]) };
        if h < kh || w < kw {
            return Err(Error::shape(format!("a max-pool input of at least {kh}x{kw}"), format!("{dims:?}")));
        }
        let (oh, ow) = ((h - kh) / sh + 1, (w - kw) / sw + 1);
        let plane = h * w;
        let (nout, kk) = (oh * ow, kh * kw);
        if fused::on_cpu(x) {
            let deeplift = match self.routing {
                MaxRouting::Winner => None,
                MaxRouting::DeepLift => Some((split_rows(ctx, x, self.name())?, self.eps)),
            };
            let g = fused::PoolGeom { b, c, h, w, kh, kw, sh, sw };
            let (idx, mult) = fused::max_route(x, g, deeplift)?;
            return Ok((idx, mult.to_dtype(x.dtype())?));
        }
        let dev = x.device();
        // Each output's window as plane positions, `[nout, kk]`; everything below
        // stays on the device.
        let win: Vec<u32> = (0..nout)
            .flat_map(|o| {
                let (i, j) = (o / ow, o % ow);
                (0..kh).flat_map(move |di| (0..kw).map(move |dj| ((i * sh + di) * w + j * sw + dj) as u32))
            })
            .collect();
        let win = Tensor::from_vec(win, (nout, kk), dev)?;
        // The windows' values, `[b·c, nout, kk]`, in f32 like the reference loop.
        let xw = x
            .detach()
            .to_dtype(DType::F32)?
            .contiguous()?
            .reshape((b * c, plane))?
            .index_select(&win.flatten_all()?, 1)?
            .reshape((b * c, nout, kk))?;
        // The window slot of each output's first `true` in `mask` (`[rows, nout, kk]`),
        // `[rows, nout, 1]`: ties go to the earliest slot, as a strict `>` scan does.
        let rev = Tensor::from_vec((0..kk).map(|j| (kk - j) as f32).collect::<Vec<_>>(), (1, 1, kk), dev)?;
        let first = |mask: &Tensor| -> Result<Tensor> {
            let s = mask.to_dtype(DType::F32)?.broadcast_mul(&rev)?.max_keepdim(2)?;
            // No `true` (only with NaNs): the first slot, as the scan keeps it.
            let j = s.affine(-1.0, kk as f64)?;
            Ok(s.ge(1f32)?.where_cond(&j, &s.zeros_like()?)?)
        };
        let at = |t: &Tensor, slot: &Tensor| -> Result<Tensor> { Ok(t.gather(&slot.to_dtype(DType::U32)?, 2)?) };
        let position = |slot: &Tensor| -> Result<Tensor> {
            let rows = slot.dim(0)?;
            let w3 = win.unsqueeze(0)?.broadcast_as((rows, nout, kk))?.contiguous()?;
            Ok(at(&w3, slot)?.squeeze(2)?)
        };
        let (idx, mult) = match self.routing {
            MaxRouting::Winner => {
                let xmax = xw.max_keepdim(2)?;
                let slot = first(&xw.broadcast_eq(&xmax)?)?;
                (position(&slot)?, Tensor::ones((b * c, nout), DType::F32, dev)?)
            }
            MaxRouting::DeepLift => {
                let n = split_rows(ctx, x, self.name())?;
                let half = n * c; // (input row, channel) pairs
                let (xi, ri) = (xw.narrow(0, 0, half)?, xw.narrow(0, half, half)?);
                // The input's argmax; among ties, the one whose reference is largest
                // (its δx is then closest to δy).
                let xmax = xi.max_keepdim(2)?;
                let is_max = xi.broadcast_eq(&xmax)?;
                let neg_inf = Tensor::full(f32::NEG_INFINITY, ri.shape(), dev)?;
                let rmasked = is_max.where_cond(&ri, &neg_inf)?;
                let rbest = rmasked.max_keepdim(2)?;
                let slot1 = first(&(is_max.to_dtype(DType::F32)? * rmasked.broadcast_eq(&rbest)?.to_dtype(DType::F32)?)?.ge(0.5f32)?)?;
                let rmax = ri.max_keepdim(2)?;
                let dy = (&xmax - &rmax)?;
                let dx1 = (&xmax - &rbest)?;
                // δx at the argmax is zero but δy is not: only when the reference's max
                // sits elsewhere and is larger. Route to the largest |δx| so the window
                // still sums to δy.
                let d = (&xi - &ri)?;
                let ad = d.abs()?;
                let dmax = ad.max_keepdim(2)?;
                let slot2 = first(&ad.broadcast_eq(&dmax)?)?;
                let e = self.eps as f32;
                let small1 = dx1.abs()?.lt(e)?;
                let fallback = (small1.to_dtype(DType::F32)? * dmax.gt(&dx1.abs()?)?.to_dtype(DType::F32)?)?.ge(0.5f32)?;
                let slot = fallback.where_cond(&slot2, &slot1)?;
                let dx = fallback.where_cond(&at(&d, &slot2)?, &dx1)?;
                let m = dx.abs()?.lt(e)?.where_cond(&dx.ones_like()?, &(&dy / &dx)?)?;
                let pos = position(&slot)?;
                let m = m.squeeze(2)?;
                (Tensor::cat(&[&pos, &pos], 0)?, Tensor::cat(&[&m, &m], 0)?)
            }
        };
        Ok((idx.reshape((b, c, nout))?, mult.reshape((b, c, nout))?.to_dtype(x.dtype())?))
    }
}

/// Element-wise products (`Mul` layer): `m_x1 = A⁰_x2 + δx2/2` and symmetrically,
/// which sums exactly to `δ(x1·x2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Product;

impl Rule for Product {
    fn name(&self) -> &str {
        "deeplift_product"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        if inputs.len() != 2 {
            return Err(Error::msg(format!("mul layer '{}' needs exactly two inputs", node.name)));
        }
        let (x1, x2) = (inputs[0], inputs[1]);
        let n = split_rows(ctx, x1, self.name())?;
        let y = node.forward(inputs)?;
        // A⁰ + δ/2 = (input + reference) / 2.
        let mid = |t: &Tensor| -> Result<Tensor> {
            let t = t.detach();
            twice(&((t.narrow(0, 0, n)? + t.narrow(0, n, n)?)? * 0.5)?)
        };
        let s = ((x1 * mid(x2)?)? + (x2 * mid(x1)?)?)?;
        surrogate(&y, &s)
    }
    fn has_vjp(&self, _node: &Node) -> bool {
        true
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], _y: &Tensor, g: &Tensor, ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        if inputs.len() != 2 {
            return Err(Error::msg(format!("mul layer '{}' needs exactly two inputs", node.name)));
        }
        // `g` has the inputs' `n` rows; A⁰ + δ/2 of those rows.
        let n = split_rows(ctx, inputs[0], self.name())?;
        let mid = |t: &Tensor| -> Result<Tensor> { Ok(((t.narrow(0, 0, n)? + t.narrow(0, n, n)?)? * 0.5)?) };
        Ok(vec![(g * mid(inputs[1])?)?, (g * mid(inputs[0])?)?])
    }
}

/// §2.6 of the 2016 paper: for one-hot inputs (exactly one channel is 1 at each
/// position) subtract the per-position channel mean from the first layer's weights
/// and add it to the bias. One-hot inputs see the same value; references that are
/// not one-hot (such as zeros) change, which is the point.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneHotNormalize;

impl Rule for OneHotNormalize {
    fn name(&self) -> &str {
        "deeplift_onehot"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        if !matches!(node.kind, LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. }) {
            return Err(Error::unsupported(
                "deeplift (onehot)",
                format!("the §2.6 normalisation needs a conv first layer with the one-hot axis as channels; '{}' is {}", node.name, node.kind.type_name()),
            ));
        }
        let w = node.weight.as_ref().ok_or_else(|| Error::msg(format!("layer '{}' has no weight", node.name)))?;
        let mean = w.mean_keepdim(1)?;
        let w2 = w.broadcast_sub(&mean)?;
        let shift = mean.flatten_from(1)?.sum(1)?;
        let b2 = match &node.bias {
            Some(b) => (b + shift)?,
            None => shift,
        };
        node.affine(inputs[0], &w2, Some(&b2))
    }
}

/// What an affine layer leaves for the RevealCancel activation after it: the
/// positive and negative parts of its pre-activation, as graph-connected tensors
/// whose gradients are the linear rule's multipliers, and their deltas.
struct Split {
    pos: Tensor,
    neg: Tensor,
    dpos: Tensor,
    dneg: Tensor,
}

/// Shared between the affine and activation rules of one RevealCancel composite;
/// keyed by the id of the affine layer's output tensor.
#[derive(Default)]
struct SplitStash {
    map: Mutex<HashMap<TensorId, Split>>,
}

impl SplitStash {
    fn put(&self, id: TensorId, s: Split) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Entries of layers not followed by an activation are never taken; bound them.
        if m.len() >= 32 {
            m.clear();
        }
        m.insert(id, s);
    }
    fn take(&self, id: TensorId) -> Option<Split> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }
}

/// RevealCancel's linear rule (2017 paper, §3.5.1): the contributions `w·δa` of each
/// input are split by sign, the positive ones into `Δ⁺`, the negative into `Δ⁻`
/// (an input with `δa = 0` goes half to each). The value and the plain gradient are
/// unchanged; the split is left for the activation that follows.
pub struct RevealCancelAffine {
    stash: Arc<SplitStash>,
}

impl Rule for RevealCancelAffine {
    fn name(&self) -> &str {
        "deeplift_revealcancel_linear"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let a = inputs[0];
        let n = split_rows(ctx, a, self.name())?;
        let z = node.forward(inputs)?;
        let w = node.weight.as_ref().ok_or_else(|| Error::msg(format!("layer '{}' has no weight", node.name)))?;
        let (wp, wn) = (w.relu()?, w.minimum(0f32)?);
        let ad = a.detach();
        let da = (ad.narrow(0, 0, n)? - ad.narrow(0, n, n)?)?;
        let zero = da.eq(0f32)?.to_dtype(a.dtype())?;
        let mp = twice(&(da.gt(0f32)?.to_dtype(a.dtype())? + (&zero * 0.5)?)?)?;
        let mn = twice(&(da.lt(0f32)?.to_dtype(a.dtype())? + (&zero * 0.5)?)?)?;
        let (ap, an) = ((a * &mp)?, (a * &mn)?);
        // Positive contributions: δa > 0 through w > 0, or δa < 0 through w < 0.
        let pos = (node.affine(&ap, &wp, None)? + node.affine(&an, &wn, None)?)?;
        let neg = (node.affine(&ap, &wn, None)? + node.affine(&an, &wp, None)?)?;
        let delta = |t: &Tensor| -> Result<Tensor> {
            let t = t.detach();
            Ok((t.narrow(0, 0, n)? - t.narrow(0, n, n)?)?)
        };
        let (dpos, dneg) = (delta(&pos)?, delta(&neg)?);
        let out = surrogate(&z, &(&pos + &neg)?)?;
        self.stash.put(out.id(), Split { pos, neg, dpos, dneg });
        Ok(out)
    }
}

/// RevealCancel's nonlinearity rule (2017 paper, §3.5.3):
/// `Δy⁺ = ½(f(x⁰+Δ⁺) − f(x⁰)) + ½(f(x⁰+Δ⁻+Δ⁺) − f(x⁰+Δ⁻))`, `Δy⁻` symmetrically,
/// `m⁺ = Δy⁺/Δ⁺`, `m⁻ = Δy⁻/Δ⁻`. Where the input does not come straight from an
/// affine layer with the RevealCancel linear rule, it falls back to Rescale.
pub struct RevealCancel {
    stash: Arc<SplitStash>,
    eps: f64,
}

impl Rule for RevealCancel {
    fn name(&self) -> &str {
        "deeplift_revealcancel"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let x = inputs[0];
        let Some(sp) = self.stash.take(x.id()) else {
            return Rescale { eps: self.eps }.forward(node, inputs, ctx);
        };
        let n = split_rows(ctx, x, self.name())?;
        let e = self.eps;
        let y = node.forward(inputs)?;
        let f = |t: &Tensor| node.forward(&[t]);
        let x0 = x.detach().narrow(0, n, n)?;
        let (dp, dn) = (&sp.dpos, &sp.dneg);
        let (x0p, x0n) = ((&x0 + dp)?, (&x0 + dn)?);
        let xall = ((&x0 + dp)? + dn)?;
        let (f0, fp, fn_, fall) = (f(&x0)?, f(&x0p)?, f(&x0n)?, f(&xall)?);
        let dyp = (((&fp - &f0)? + (&fall - &fn_)?)? * 0.5)?;
        let dyn_ = (((&fn_ - &f0)? + (&fall - &fp)?)? * 0.5)?;
        // Limits as Δ⁺ → 0 (resp. Δ⁻ → 0): the mean of the two slopes involved.
        let (g0, gp, gn) = (local_grad(node, &x0)?, local_grad(node, &x0p)?, local_grad(node, &x0n)?);
        let lim_p = ((&g0 + &gn)? * 0.5)?;
        let lim_n = ((&g0 + &gp)? * 0.5)?;
        let mp = twice(&safe_ratio(&dyp, dp, &lim_p, e)?)?;
        let mn = twice(&safe_ratio(&dyn_, dn, &lim_n, e)?)?;
        let s = ((&sp.pos * mp)? + (&sp.neg * mn)?)?;
        surrogate(&y, &s)
    }
}

const MAX_POOLS: &[&str] = &["max_pool1d", "max_pool2d"];

/// DeepLIFT with the Rescale rule on every nonlinearity.
pub fn rescale_composite(s: &DeepLiftSettings) -> RuleMap {
    RuleMap::new("deeplift_rescale")
        .with(Matcher::Activation, Rescale { eps: s.eps })
        .with(Matcher::Types(MAX_POOLS.to_vec()), MaxRoute { routing: MaxRouting::DeepLift, eps: s.eps })
        .with(Matcher::Types(vec!["mul"]), Product)
}

/// DeepLIFT with RevealCancel on nonlinearities that follow a conv or linear layer
/// (Rescale elsewhere).
pub fn revealcancel_composite(s: &DeepLiftSettings) -> RuleMap {
    let stash = Arc::new(SplitStash::default());
    RuleMap::new("deeplift_revealcancel")
        .with(Matcher::Conv, RevealCancelAffine { stash: stash.clone() })
        .with(Matcher::Linear, RevealCancelAffine { stash: stash.clone() })
        .with(Matcher::Activation, RevealCancel { stash, eps: s.eps })
        .with(Matcher::Types(MAX_POOLS.to_vec()), MaxRoute { routing: MaxRouting::DeepLift, eps: s.eps })
        .with(Matcher::Types(vec!["mul"]), Product)
}

lumen_core::submit_composite!(
    "deeplift_rescale",
    "DeepLIFT: Rescale on nonlinearities, max routed to the input's argmax, product rule",
    |s| Ok(rescale_composite(&settings::<DeepLiftSettings>("deeplift_rescale", s)?)),
);
lumen_core::submit_composite!(
    "deeplift_revealcancel",
    "DeepLIFT: RevealCancel on nonlinearities after conv/linear layers (Rescale elsewhere)",
    |s| Ok(revealcancel_composite(&settings::<DeepLiftSettings>("deeplift_revealcancel", s)?)),
);
