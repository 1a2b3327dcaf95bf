//! Layer-wise relevance propagation rules (Bach et al. 2015; Montavon et al., "Layer-
//! Wise Relevance Propagation: An Overview", 2019) as value-preserving surrogates.
//!
//! Unlike DeepLIFT's multipliers, the backward pass here carries the relevance `R`
//! itself (start it at the target's output value): a rule maps the relevance of a
//! layer's outputs to the relevance of its inputs,
//! `R_i = Σ_j q_ij R_j / z_j` with `z_j = Σ_i q_ij` for the rule's `q_ij`.
//! Activations pass relevance unchanged, max pools route it to the winner.
//!
//! Each rule carries its own numbers (`Epsilon { epsilon }`, `ZBox { low, high }`). A
//! composite is a value ([`LrpComposite`]: a rule choice for the first layer, the
//! convs and the dense layers) built with the numbers of an [`LrpSettings`].
//!
//! Conventions. By default every rule is Zennit's (Anders et al., "Software for
//! Dataset-wide XAI", 2021; zennit 0.5): z⁺ keeps `b⁺` in its denominator, γ is the
//! sign-aware generalised rule (Andéol et al. 2021), w² squares the bias too, and every
//! rule but ε divides by `z + s·sign(z)` with the stabiliser `s` = 1e-6. The classic
//! forms of Montavon et al. ("Layer-Wise Relevance Propagation: An Overview", 2019;
//! "Explaining nonlinear classification decisions with deep Taylor decomposition",
//! 2017) are selected by [`Conventions`]: `zplus_bias = false`, `gamma_sign_aware =
//! false`, `wsquare_bias = false`. Checked against Zennit's own maps in tests/zennit.rs.

use super::deeplift::MaxRoute;
use lumen_core::candle::Tensor;
use lumen_core::model::network::per_channel;
use lumen_core::model::{LayerKind, Node};
use lumen_core::rules::{grad_hook, settings, surrogate, Matcher, Rule, RuleCtx, RuleMap};
use lumen_core::{Error, Result};
use std::sync::Arc;

/// Keeps every denominator away from zero (added with the sign of `z`, on top of ε or
/// the stabiliser, so that ε = 0 stays finite).
const STAB: f64 = 1e-9;
pub const DEFAULT_EPSILON: f64 = 1e-6;
pub const DEFAULT_GAMMA: f64 = 0.25;
/// Zennit's stabiliser of every rule but ε (and of the Norm rule on pools and sums).
pub const DEFAULT_STABILIZER: f64 = 1e-6;

/// Where the reference implementation (Zennit, the default) and the classic papers
/// (Montavon et al. 2017, 2019) define a rule differently; `true` is Zennit's form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conventions {
    /// z⁺ puts the positive bias `b⁺` into its denominator (Zennit's `ZPlus`, i.e.
    /// αβ with α = 1, β = 0); `false`: no bias (Montavon et al. 2019 / DTD 2017).
    pub zplus_bias: bool,
    /// γ treats negative outputs with the roles of `w⁺` and `w⁻` swapped (Zennit's
    /// generalised `Gamma`, Andéol et al. 2021); `false`: `w + γw⁺` for every output
    /// (Montavon et al. 2019).
    pub gamma_sign_aware: bool,
    /// w² adds `b²` to its denominator (Zennit's `WSquare` squares every parameter);
    /// `false`: weights only (Montavon et al. 2017).
    pub wsquare_bias: bool,
}

impl Default for Conventions {
    fn default() -> Self {
        Conventions::ZENNIT
    }
}

impl Conventions {
    /// Zennit 0.5's definitions (the default).
    pub const ZENNIT: Conventions = Conventions { zplus_bias: true, gamma_sign_aware: true, wsquare_bias: true };
    /// The classic forms of Montavon et al. (2017, 2019).
    pub const CLASSIC: Conventions = Conventions { zplus_bias: false, gamma_sign_aware: false, wsquare_bias: false };
}

/// The LRP rules for conv and linear layers, as a composite chooses them; the numbers
/// they take come from [`LrpSettings`] ([`LrpRule::rule`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrpRule {
    /// LRP-0 ([`Zero`]).
    Zero,
    /// LRP-ε ([`Epsilon`]).
    Epsilon,
    /// LRP-γ ([`Gamma`]).
    Gamma,
    /// z⁺ ([`ZPlus`]).
    ZPlus,
    /// αβ ([`AlphaBeta`]).
    AlphaBeta { alpha: f64, beta: f64 },
    /// Flat ([`Flat`]).
    Flat,
    /// w² ([`WSquare`]).
    WSquare,
    /// z^B ([`ZBox`]).
    ZBox,
}

impl LrpRule {
    pub fn label(&self) -> &'static str {
        match self {
            LrpRule::Zero => "lrp_0",
            LrpRule::Epsilon => "lrp_epsilon",
            LrpRule::Gamma => "lrp_gamma",
            LrpRule::ZPlus => "lrp_zplus",
            LrpRule::AlphaBeta { alpha, beta } if *alpha == 1.0 && *beta == 0.0 => "lrp_alpha1beta0",
            LrpRule::AlphaBeta { alpha, beta } if *alpha == 2.0 && *beta == 1.0 => "lrp_alpha2beta1",
            LrpRule::AlphaBeta { .. } => "lrp_alphabeta",
            LrpRule::Flat => "lrp_flat",
            LrpRule::WSquare => "lrp_wsquare",
            LrpRule::ZBox => "lrp_zbox",
        }
    }

    /// A short symbol for listings: LRP-0, ε, γ, z⁺, αβ(2,1), flat, w², z^B.
    pub fn symbol(&self) -> String {
        match self {
            LrpRule::Zero => "LRP-0".into(),
            LrpRule::Epsilon => "ε".into(),
            LrpRule::Gamma => "γ".into(),
            LrpRule::ZPlus => "z⁺".into(),
            LrpRule::AlphaBeta { alpha, beta } => format!("αβ({alpha},{beta})"),
            LrpRule::Flat => "flat".into(),
            LrpRule::WSquare => "w²".into(),
            LrpRule::ZBox => "z^B".into(),
        }
    }
}

/// One summand of a rule's `q_ij`: `sign · m_i · ρ(w)_ij` (+ its bias in `z_j`).
struct Term {
    /// What multiplies the weight: the (modified) input, a bound, or ones.
    m: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    sign: f64,
}

/// `z_j + ε·sign(z_j)` with `sign(0) = 1`, plus a tiny stabiliser.
fn stabilize(z: &Tensor, eps: f64) -> Result<Tensor> {
    let c = eps + STAB;
    // sign(z)·c as one affine map of the 0/1 mask: 2c·[z ≥ 0] − c.
    let s = z.ge(0f32)?.to_dtype(z.dtype())?.affine(2.0 * c, -c)?;
    Ok((z + s)?)
}

/// The surrogate for one normalised group of terms:
/// `Σ_t sign_t · affine(hook_t(a), w_t) · coef · mask / z` where the hook scales the
/// gradient by `m_t`, so the input's gradient is `Σ_t sign_t m_t ⊙ w_tᵀ(coef·mask·R / z)`;
/// `mask` (0/1 per output) restricts the group to some outputs.
fn group(node: &Node, a: &Tensor, terms: &[Term], eps: f64, coef: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    let mut z: Option<Tensor> = None;
    let mut s: Option<Tensor> = None;
    for t in terms {
        let zt = (node.affine(&t.m, &t.w, t.b.as_ref())? * t.sign)?;
        z = Some(match z {
            None => zt,
            Some(acc) => (acc + zt)?,
        });
        let m = t.m.detach();
        let hooked = grad_hook(a, move |g| g.mul(&m))?;
        let st = (node.affine(&hooked, &t.w, None)? * t.sign)?;
        s = Some(match s {
            None => st,
            Some(acc) => (acc + st)?,
        });
    }
    let (z, s) = match (z, s) {
        (Some(z), Some(s)) => (z, s),
        _ => return Err(Error::msg("internal: an LRP group has no terms")),
    };
    let mut inv = (stabilize(&z.detach(), eps)?.recip()? * coef)?;
    if let Some(m) = mask {
        inv = (inv * m)?;
    }
    Ok((s * inv)?)
}

/// A z^B bound in the network's input space: one value, or one per input channel
/// (channels beyond `channels` take `value`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bound {
    pub value: f64,
    pub channels: Vec<f64>,
}

impl Bound {
    pub fn uniform(value: f64) -> Self {
        Bound { value, channels: vec![] }
    }

    /// A tensor shaped like `a` holding the bound, per channel when the channels differ.
    fn like(&self, a: &Tensor) -> Result<Tensor> {
        let base = self.value;
        let c = if a.rank() >= 2 { a.dim(1)? } else { 1 };
        let per: Vec<f32> = (0..c).map(|i| self.channels.get(i).copied().unwrap_or(base) as f32).collect();
        if a.rank() < 2 || per.iter().all(|v| *v == base as f32) {
            return Ok((a.zeros_like()? + base)?);
        }
        let v = Tensor::from_vec(per, c, a.device())?.to_dtype(a.dtype())?;
        Ok(a.zeros_like()?.broadcast_add(&per_channel(&v, a.rank())?)?)
    }
}

/// The numbers of the LRP rules, chosen by the method that applies a composite.
#[derive(Debug, Clone, PartialEq)]
pub struct LrpSettings {
    /// ε of LRP-ε (and of the parameter-free linear maps).
    pub epsilon: f64,
    /// γ of LRP-γ.
    pub gamma: f64,
    /// The stabiliser of every rule but ε, and of the Norm rule on pools and sums.
    pub stabilizer: f64,
    /// The z^B bounds.
    pub low: Bound,
    pub high: Bound,
    /// Zennit's or the classic form of z⁺, γ and w².
    pub conventions: Conventions,
}

impl Default for LrpSettings {
    fn default() -> Self {
        LrpSettings {
            epsilon: DEFAULT_EPSILON,
            gamma: DEFAULT_GAMMA,
            stabilizer: DEFAULT_STABILIZER,
            low: Bound::uniform(0.0),
            high: Bound::uniform(1.0),
            conventions: Conventions::default(),
        }
    }
}

impl LrpSettings {
    /// Uniform bounds `low..high`, the default stabiliser and Zennit's conventions.
    pub fn new(epsilon: f64, gamma: f64, low: f64, high: f64) -> Self {
        LrpSettings { epsilon, gamma, low: Bound::uniform(low), high: Bound::uniform(high), ..Default::default() }
    }

    pub fn with_conventions(mut self, c: Conventions) -> Self {
        self.conventions = c;
        self
    }

    pub fn with_stabilizer(mut self, s: f64) -> Self {
        self.stabilizer = s;
        self
    }
}

impl LrpRule {
    /// The rule with its numbers from `s`.
    pub fn rule(&self, s: &LrpSettings) -> Arc<dyn Rule> {
        let (st, c) = (s.stabilizer, s.conventions);
        match *self {
            LrpRule::Zero => Arc::new(Zero),
            LrpRule::Epsilon => Arc::new(Epsilon { epsilon: s.epsilon }),
            LrpRule::Gamma => Arc::new(Gamma { gamma: s.gamma, sign_aware: c.gamma_sign_aware, stabilizer: st }),
            LrpRule::ZPlus => Arc::new(ZPlus { bias: c.zplus_bias, stabilizer: st }),
            LrpRule::AlphaBeta { alpha, beta } => Arc::new(AlphaBeta { alpha, beta, stabilizer: st }),
            LrpRule::Flat => Arc::new(Flat { stabilizer: st }),
            LrpRule::WSquare => Arc::new(WSquare { bias: c.wsquare_bias, stabilizer: st }),
            LrpRule::ZBox => Arc::new(ZBox { low: s.low.clone(), high: s.high.clone(), stabilizer: st }),
        }
    }
}

/// What every conv/linear rule starts from: the input, the plain output, the weight
/// and bias, and the detached input.
struct Affine<'a> {
    a: &'a Tensor,
    z: Tensor,
    w: &'a Tensor,
    b: Option<&'a Tensor>,
    ad: Tensor,
}

/// Conv/linear rules refuse other layers with this error.
fn require_affine(label: &str, node: &Node) -> Result<()> {
    if node.kind.is_affine_param() {
        return Ok(());
    }
    Err(Error::msg(format!("{label} applies to conv and linear layers, not to '{}' ({})", node.name, node.kind.type_name())))
}

fn affine<'a>(label: &str, node: &'a Node, inputs: &[&'a Tensor]) -> Result<Affine<'a>> {
    require_affine(label, node)?;
    let a = inputs[0];
    let z = node.forward(inputs)?;
    let w = node.weight.as_ref().ok_or_else(|| Error::msg(format!("layer '{}' has no weight", node.name)))?;
    Ok(Affine { a, z, w, b: node.bias.as_ref(), ad: a.detach() })
}

fn pos(t: &Tensor) -> Result<Tensor> {
    Ok(t.relu()?)
}
fn neg(t: &Tensor) -> Result<Tensor> {
    Ok(t.minimum(0f32)?)
}
fn term(m: Tensor, w: Tensor, b: Option<Tensor>, sign: f64) -> Term {
    Term { m, w, b, sign }
}

/// Declares a conv/linear LRP rule: its label and the surrogate's `s` from the layer.
macro_rules! lrp_rule {
    ($ty:ty, $label:expr, |$self_:ident, $node:ident, $p:ident| $body:block) => {
        impl Rule for $ty {
            #[allow(unused_variables)] // most labels do not read the rule
            fn name(&self) -> &str {
                let $self_ = self;
                $label
            }
            fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
                let $self_ = self;
                let $node = node;
                let $p = affine($label, node, inputs)?;
                let s: Tensor = $body;
                surrogate(&$p.z, &s)
            }
        }
    };
}

/// LRP-0 (Bach et al. 2015): `R_i = Σ_j a_i w_ij R_j / z_j`, `z_j = Σ_i a_i w_ij + b_j`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zero;
/// LRP-ε (Bach et al. 2015): `R_i = Σ_j a_i w_ij R_j / (z_j + ε·sign(z_j))`,
/// `z_j = Σ_i a_i w_ij + b_j`, `sign(0) = 1`. Zennit's `Epsilon` (ε = 1e-6).
#[derive(Debug, Clone, Copy)]
pub struct Epsilon {
    pub epsilon: f64,
}
/// LRP-γ. Sign-aware (Zennit's generalised `Gamma`, Andéol et al. 2021; the default):
/// for `z_j > 0`, `q_ij = a⁺_i (w_ij + γw⁺_ij) + a⁻_i (w_ij + γw⁻_ij)` with bias
/// `b_j + γb⁺_j`; for `z_j < 0`, `q_ij = a⁺_i (w_ij + γw⁻_ij) + a⁻_i (w_ij + γw⁺_ij)` with
/// bias `b_j + γb⁻_j`; `z_j = 0` passes nothing; `R_i = Σ_j q_ij R_j / (Σ_i q_ij + bias
/// ± s)`. Classic (`sign_aware = false`, Montavon et al. 2019 eq. 4): `q_ij = a_i (w_ij +
/// γw⁺_ij)`, bias `b_j + γb⁺_j`, for every output. The two agree where `a ≥ 0, z > 0`.
#[derive(Debug, Clone, Copy)]
pub struct Gamma {
    pub gamma: f64,
    pub sign_aware: bool,
    pub stabilizer: f64,
}
/// z⁺: `q_ij = a⁺_i w⁺_ij + a⁻_i w⁻_ij`, `R_i = Σ_j q_ij R_j / (Σ_i q_ij + b⁺_j ± s)`
/// (Zennit's `ZPlus`, αβ with α = 1, β = 0; the default). `bias = false` drops `b⁺_j`
/// (the z⁺ rule of Montavon et al. 2017 / 2019).
#[derive(Debug, Clone, Copy)]
pub struct ZPlus {
    pub bias: bool,
    pub stabilizer: f64,
}
/// αβ (Bach et al. 2015): `R_i = Σ_j (α q⁺_ij / (Σ_i q⁺_ij + b⁺_j ± s) − β q⁻_ij /
/// (Σ_i q⁻_ij + b⁻_j ± s)) R_j` with `q⁺ = a⁺w⁺ + a⁻w⁻` and `q⁻ = a⁺w⁻ + a⁻w⁺`
/// (Zennit's `AlphaBeta`; Montavon et al. 2019 eq. 5 for `a ≥ 0`).
#[derive(Debug, Clone, Copy)]
pub struct AlphaBeta {
    pub alpha: f64,
    pub beta: f64,
    pub stabilizer: f64,
}
/// Flat (Lapuschkin et al. 2019): `q_ij = 1` for every connection (zero padding
/// excluded), `R_i = Σ_j R_j / (Σ_i 1 + s)`; no bias (Zennit's `Flat`).
#[derive(Debug, Clone, Copy)]
pub struct Flat {
    pub stabilizer: f64,
}
/// w² (Montavon et al. 2017): `q_ij = w_ij²`, `R_i = Σ_j q_ij R_j / (Σ_i w_ij² + b_j² + s)`
/// (Zennit's `WSquare` squares the bias too; the default). `bias = false` drops `b_j²`
/// (the paper's form).
#[derive(Debug, Clone, Copy)]
pub struct WSquare {
    pub bias: bool,
    pub stabilizer: f64,
}
/// z^B for bounded inputs `l ≤ x ≤ h` (Montavon et al. 2017): `q_ij = x_i w_ij − l_i
/// w⁺_ij − h_i w⁻_ij`, `R_i = Σ_j q_ij R_j / (Σ_i q_ij ± s)`. Zennit's `ZBox` adds `b`,
/// `−b⁺` and `−b⁻` to the three terms, which cancel: the same rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ZBox {
    pub low: Bound,
    pub high: Bound,
    pub stabilizer: f64,
}

/// `w + γ f(w)` for a parameter, `f` its positive or negative part.
fn gamma_mod(p: &Tensor, g: f64, f: fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    Ok((p + (f(p)? * g)?)?)
}

/// 0/1 per output where `z > 0` (`up`) or `z < 0`.
fn sign_mask(z: &Tensor, up: bool) -> Result<Tensor> {
    let m = if up { z.gt(0f32)? } else { z.lt(0f32)? };
    Ok(m.to_dtype(z.dtype())?)
}

/// LRP-0 and LRP-ε, whose `q_ij = a_i w_ij` is the layer itself: one forward of the
/// layer on the hooked input gives the value `z`, and a hook on `z` scales the
/// gradient by `1/(z ± ε)`, so the input's gradient is `a ⊙ wᵀ(R / (z ± ε))`, as the
/// general `group` computes it with three affine passes instead of one.
fn direct(label: &str, node: &Node, inputs: &[&Tensor], eps: f64) -> Result<Tensor> {
    require_affine(label, node)?;
    let m = inputs[0].detach();
    let hooked = grad_hook(inputs[0], move |g| g.mul(&m))?;
    let z = node.forward(&[&hooked])?;
    let inv = stabilize(&z.detach(), eps)?.recip()?;
    grad_hook(&z, move |g| g.mul(&inv))
}

/// [`direct`]'s backward stated directly: `a ⊙ wᵀ(g / (z ± ε))`, with `z` the
/// layer's output.
fn direct_vjp(label: &str, node: &Node, inputs: &[&Tensor], z: &Tensor, g: &Tensor, eps: f64) -> Result<Vec<Tensor>> {
    require_affine(label, node)?;
    let gz = (g * stabilize(z, eps)?.recip()?)?;
    let c = node.vjp(inputs, z, &gz)?.and_then(|v| v.into_iter().next());
    let c = c.ok_or_else(|| Error::msg(format!("{label}: layer '{}' has no direct backward", node.name)))?;
    Ok(vec![(c * inputs[0])?])
}

impl Rule for Zero {
    fn name(&self) -> &str {
        "lrp_0"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        direct("lrp_0", node, inputs, 0.0)
    }
    fn has_vjp(&self, node: &Node) -> bool {
        node.kind.is_affine_param() && node.has_vjp()
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], z: &Tensor, g: &Tensor, _ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        direct_vjp("lrp_0", node, inputs, z, g, 0.0)
    }
}

impl Rule for Epsilon {
    fn name(&self) -> &str {
        "lrp_epsilon"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        direct("lrp_epsilon", node, inputs, self.epsilon)
    }
    fn has_vjp(&self, node: &Node) -> bool {
        node.kind.is_affine_param() && node.has_vjp()
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], z: &Tensor, g: &Tensor, _ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        direct_vjp("lrp_epsilon", node, inputs, z, g, self.epsilon)
    }
}
lrp_rule!(Gamma, "lrp_gamma", |r, node, p| {
    let (g, st) = (r.gamma, r.stabilizer);
    let bmod = |f: fn(&Tensor) -> Result<Tensor>| -> Result<Option<Tensor>> {
        p.b.map(|b| gamma_mod(b, g, f)).transpose()
    };
    let wp = gamma_mod(p.w, g, pos)?;
    if !r.sign_aware {
        group(node, p.a, &[term(p.ad.clone(), wp, bmod(pos)?, 1.0)], st, 1.0, None)?
    } else {
        let wn = gamma_mod(p.w, g, neg)?;
        let (ap, an) = (pos(&p.ad)?, neg(&p.ad)?);
        let zd = p.z.detach();
        let up = [term(ap.clone(), wp.clone(), bmod(pos)?, 1.0), term(an.clone(), wn.clone(), None, 1.0)];
        let down = [term(ap, wn, bmod(neg)?, 1.0), term(an, wp, None, 1.0)];
        let s_up = group(node, p.a, &up, st, 1.0, Some(&sign_mask(&zd, true)?))?;
        (s_up + group(node, p.a, &down, st, 1.0, Some(&sign_mask(&zd, false)?))?)?
    }
});
lrp_rule!(ZPlus, "lrp_zplus", |r, node, p| {
    let bp = if r.bias { p.b.map(pos).transpose()? } else { None };
    let terms = [term(pos(&p.ad)?, pos(p.w)?, bp, 1.0), term(neg(&p.ad)?, neg(p.w)?, None, 1.0)];
    group(node, p.a, &terms, r.stabilizer, 1.0, None)?
});
lrp_rule!(AlphaBeta, LrpRule::AlphaBeta { alpha: r.alpha, beta: r.beta }.label(), |r, node, p| {
    let (bp, bn) = match p.b {
        Some(b) => (Some(pos(b)?), Some(neg(b)?)),
        None => (None, None),
    };
    let ps = [term(pos(&p.ad)?, pos(p.w)?, bp, 1.0), term(neg(&p.ad)?, neg(p.w)?, None, 1.0)];
    let mut s = group(node, p.a, &ps, r.stabilizer, r.alpha, None)?;
    if r.beta != 0.0 {
        let q = [term(pos(&p.ad)?, neg(p.w)?, bn, 1.0), term(neg(&p.ad)?, pos(p.w)?, None, 1.0)];
        s = (s + group(node, p.a, &q, r.stabilizer, -r.beta, None)?)?;
    }
    s
});
lrp_rule!(Flat, "lrp_flat", |r, node, p| {
    group(node, p.a, &[term(p.ad.ones_like()?, p.w.ones_like()?, None, 1.0)], r.stabilizer, 1.0, None)?
});
lrp_rule!(WSquare, "lrp_wsquare", |r, node, p| {
    let b2 = if r.bias { p.b.map(|b| b.sqr()).transpose()? } else { None };
    group(node, p.a, &[term(p.ad.ones_like()?, p.w.sqr()?, b2, 1.0)], r.stabilizer, 1.0, None)?
});
lrp_rule!(ZBox, "lrp_zbox", |r, node, p| {
    let (l, h) = (r.low.like(&p.ad)?, r.high.like(&p.ad)?);
    let terms = [term(p.ad.clone(), p.w.clone(), None, 1.0), term(l, pos(p.w)?, None, -1.0), term(h, neg(p.w)?, None, -1.0)];
    group(node, p.a, &terms, r.stabilizer, 1.0, None)?
});

/// Relevance passes through element-wise activations unchanged (gradient 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass;

impl Rule for Pass {
    fn name(&self) -> &str {
        "pass"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        let y = node.forward(inputs)?;
        surrogate(&y, inputs[0])
    }
    fn has_vjp(&self, node: &Node) -> bool {
        node.inputs.len() == 1
    }
    fn vjp(&self, _node: &Node, _inputs: &[&Tensor], _y: &Tensor, g: &Tensor, _ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        Ok(vec![g.clone()])
    }
}

/// Zennit's Norm rule on parameter-free linear maps (average pools, batch norm,
/// residual sums): `R_i = Σ_j a_i ∂z_j/∂a_i · R_j / (z_j + s·sign(z_j))`, i.e.
/// relevance split in proportion to each input's share of the (bias-free) sum, with
/// the stabiliser `s` (in the field `epsilon`).
#[derive(Debug, Clone, Copy)]
pub struct Proportional {
    pub epsilon: f64,
}

impl Rule for Proportional {
    fn name(&self) -> &str {
        "lrp_epsilon_linear"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        let y = node.forward(inputs)?;
        let eps = self.epsilon;
        let hooked: Vec<Tensor> = inputs
            .iter()
            .map(|a| {
                let m = a.detach();
                grad_hook(a, move |g| g.mul(&m))
            })
            .collect::<Result<_>>()?;
        // The bias-free map: batch norm's shift is a bias.
        let lin = match &node.kind {
            LayerKind::BatchNorm { eps: bn_eps, .. } => {
                let (scale, _) = node.batch_norm_affine(*bn_eps)?;
                hooked[0].broadcast_mul(&per_channel(&scale, hooked[0].rank())?)?
            }
            _ => {
                let refs: Vec<&Tensor> = hooked.iter().collect();
                node.forward(&refs)?
            }
        };
        let denom = match &node.kind {
            LayerKind::BatchNorm { eps: bn_eps, .. } => {
                let (scale, _) = node.batch_norm_affine(*bn_eps)?;
                inputs[0].detach().broadcast_mul(&per_channel(&scale, inputs[0].rank())?)?
            }
            _ => y.detach(),
        };
        let s = (lin * stabilize(&denom, eps)?.recip()?)?;
        surrogate(&y, &s)
    }
}

const MAX_POOLS: &[&str] = &["max_pool1d", "max_pool2d"];
const LINEAR_OPS: &[&str] = &["avg_pool2d", "global_avg_pool", "batch_norm", "add"];

/// An LRP composite as a value: the rule for the first param layer (optional), the
/// convs and the dense layers; activations, pools and sums get the shared treatment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrpComposite {
    pub first: Option<LrpRule>,
    pub conv: LrpRule,
    pub dense: LrpRule,
}

impl LrpComposite {
    /// The rule map called `name`, with the rules' numbers from `s`.
    pub fn build(&self, name: &str, s: &LrpSettings) -> RuleMap {
        let mut m = RuleMap::new(name);
        if let Some(f) = self.first {
            m = m.with_arc(Matcher::FirstParam, f.rule(s));
        }
        m.with_arc(Matcher::Conv, self.conv.rule(s))
            .with_arc(Matcher::Linear, self.dense.rule(s))
            .with(Matcher::Activation, Pass)
            .with(Matcher::Types(MAX_POOLS.to_vec()), MaxRoute::winner())
            .with(Matcher::Types(LINEAR_OPS.to_vec()), Proportional { epsilon: s.stabilizer })
    }
}

/// [`LrpComposite::build`] in one call.
pub fn lrp_composite(name: &str, first: Option<LrpRule>, conv: LrpRule, dense: LrpRule, s: &LrpSettings) -> RuleMap {
    LrpComposite { first, conv, dense }.build(name, s)
}

const AB21: LrpRule = LrpRule::AlphaBeta { alpha: 2.0, beta: 1.0 };
const AB10: LrpRule = LrpRule::AlphaBeta { alpha: 1.0, beta: 0.0 };

/// A named LRP composite.
#[derive(Debug, Clone, Copy)]
pub struct LrpPreset {
    pub name: &'static str,
    pub summary: &'static str,
    pub composite: LrpComposite,
}

/// Writes the preset table and registers each preset as a composite of this pack;
/// the listed summary starts with the layer mapping (`first … · conv … · dense …`),
/// whose symbols a unit test checks against the rules.
macro_rules! presets {
    ($(($name:literal, $summary:literal, [$fs:literal, $cs:literal, $ds:literal], $first:expr, $conv:expr, $dense:expr)),* $(,)?) => {
        /// The LRP presets, in `lumen list` order.
        pub const PRESETS: &[LrpPreset] = &[
            $(LrpPreset {
                name: $name,
                summary: concat!("first ", $fs, " · conv ", $cs, " · dense ", $ds, ": ", $summary),
                composite: LrpComposite { first: $first, conv: $conv, dense: $dense },
            }),*
        ];
        $(lumen_core::submit_composite!($name, concat!("first ", $fs, " · conv ", $cs, " · dense ", $ds, ": ", $summary), |s| {
            let s = settings::<LrpSettings>($name, s)?;
            Ok(LrpComposite { first: $first, conv: $conv, dense: $dense }.build($name, &s))
        });)*
    };
}

// Zennit's layer map (composites.py, `layer_map_base`): activations pass, sums and
// average pools (global ones too) take Norm, max pools keep their gradient (the
// winner), every conv takes the conv rule (also a 1×1 class-kernel conv that feeds a
// global pool: Zennit has no special case for it), and the first-layer rule goes to
// the first conv/linear layer in forward order. lumen's one deviation: the
// flat-first composites match any first layer (Zennit's `Linear` type), the z^B-first
// one only a conv there (Zennit's `Convolution`); lumen gives z^B to a first linear
// layer too, since z^B is defined for any bounded input. Batch norm takes Norm here;
// Zennit has no rule for it (its canonizer folds it into the layer before).
presets! {
    ("lrp_zero", "LRP-0 on every conv/linear layer (equals gradient × input on ReLU nets)", ["LRP-0", "LRP-0", "LRP-0"], None, LrpRule::Zero, LrpRule::Zero),
    ("lrp_epsilon", "LRP-ε on every conv/linear layer (Zennit Epsilon)", ["ε", "ε", "ε"], None, LrpRule::Epsilon, LrpRule::Epsilon),
    ("lrp_gamma", "LRP-γ on every conv/linear layer (Zennit Gamma)", ["γ", "γ", "γ"], None, LrpRule::Gamma, LrpRule::Gamma),
    ("lrp_zplus", "z⁺ on every conv/linear layer (Zennit ZPlus)", ["z⁺", "z⁺", "z⁺"], None, LrpRule::ZPlus, LrpRule::ZPlus),
    ("lrp_alpha1beta0", "αβ with α=1, β=0 on every conv/linear layer", ["αβ(1,0)", "αβ(1,0)", "αβ(1,0)"], None, AB10, AB10),
    ("lrp_alpha2beta1", "αβ with α=2, β=1 on every conv/linear layer (Zennit AlphaBeta)", ["αβ(2,1)", "αβ(2,1)", "αβ(2,1)"], None, AB21, AB21),
    ("lrp_flat", "flat on every conv/linear layer (Zennit Flat)", ["flat", "flat", "flat"], None, LrpRule::Flat, LrpRule::Flat),
    ("lrp_wsquare", "w² on every conv/linear layer (Zennit WSquare)", ["w²", "w²", "w²"], None, LrpRule::WSquare, LrpRule::WSquare),
    ("lrp_zbox", "z^B on every conv/linear layer (Zennit ZBox)", ["z^B", "z^B", "z^B"], None, LrpRule::ZBox, LrpRule::ZBox),
    ("lrp_composite_epsilon_plus", "Zennit EpsilonPlus", ["z⁺", "z⁺", "ε"], None, LrpRule::ZPlus, LrpRule::Epsilon),
    ("lrp_composite_epsilon_plus_flat", "Zennit EpsilonPlusFlat", ["flat", "z⁺", "ε"], Some(LrpRule::Flat), LrpRule::ZPlus, LrpRule::Epsilon),
    ("lrp_composite_epsilon_gamma_box", "Zennit EpsilonGammaBox", ["z^B", "γ", "ε"], Some(LrpRule::ZBox), LrpRule::Gamma, LrpRule::Epsilon),
    ("lrp_composite_epsilon_alpha2beta1", "Zennit EpsilonAlpha2Beta1", ["αβ(2,1)", "αβ(2,1)", "ε"], None, AB21, LrpRule::Epsilon),
    ("lrp_composite_epsilon_alpha2beta1_flat", "Zennit EpsilonAlpha2Beta1Flat", ["flat", "αβ(2,1)", "ε"], Some(LrpRule::Flat), AB21, LrpRule::Epsilon),
}

/// The LRP preset called `name`, or an error listing them.
pub fn preset(name: &str) -> Result<&'static LrpPreset> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| Error::Unknown {
        kind: "LRP composite",
        name: name.to_string(),
        known: PRESETS.iter().map(|p| p.name.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping each listed summary starts with is the preset's own rules.
    #[test]
    fn preset_summaries_name_their_rules() {
        for p in PRESETS {
            let c = p.composite;
            let first = c.first.unwrap_or(c.conv);
            let want = format!("first {} · conv {} · dense {}: ", first.symbol(), c.conv.symbol(), c.dense.symbol());
            assert!(p.summary.starts_with(&want), "{}: '{}' does not start with '{want}'", p.name, p.summary);
        }
    }

    #[test]
    fn conventions_default_to_zennit() {
        let s = LrpSettings::default();
        assert_eq!(s.conventions, Conventions::ZENNIT);
        assert_eq!(s.stabilizer, 1e-6);
        assert!(Conventions::CLASSIC.zplus_bias == false && !Conventions::CLASSIC.gamma_sign_aware && !Conventions::CLASSIC.wsquare_bias);
    }
}
