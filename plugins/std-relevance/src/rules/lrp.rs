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

use super::deeplift::MaxRoute;
use lumen_core::candle::Tensor;
use lumen_core::model::network::per_channel;
use lumen_core::model::{LayerKind, Node};
use lumen_core::rules::{grad_hook, settings, surrogate, Matcher, Rule, RuleCtx, RuleMap};
use lumen_core::{Error, Result};
use std::sync::Arc;

/// Keeps every denominator away from zero (added with the sign of `z`).
const STAB: f64 = 1e-9;
pub const DEFAULT_EPSILON: f64 = 1e-6;
pub const DEFAULT_GAMMA: f64 = 0.25;

/// The LRP rules for conv and linear layers, as a composite chooses them; the numbers
/// they take come from [`LrpSettings`] ([`LrpRule::rule`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrpRule {
    /// LRP-0: `q_ij = a_i w_ij` (bias in the denominator).
    Zero,
    /// LRP-ε: LRP-0 with `z_j + ε·sign(z_j)` as denominator.
    Epsilon,
    /// LRP-γ: `q_ij = a_i (w_ij + γ w⁺_ij)`, bias `b + γ b⁺`.
    Gamma,
    /// z⁺: `q_ij = a⁺_i w⁺_ij + a⁻_i w⁻_ij`, no bias.
    ZPlus,
    /// αβ: `α R⁺ − β R⁻`, the positive part `a⁺w⁺ + a⁻w⁻ (+ b⁺)`, the negative
    /// part `a⁺w⁻ + a⁻w⁺ (+ b⁻)`, each normalised by its own sum.
    AlphaBeta { alpha: f64, beta: f64 },
    /// Flat: `q_ij = 1` for every connection (ignores weights and inputs).
    Flat,
    /// w²: `q_ij = w_ij²` (ignores inputs).
    WSquare,
    /// z^B for bounded inputs `l ≤ x ≤ h`: `q_ij = x_i w_ij − l_i w⁺_ij − h_i w⁻_ij`.
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
    let s = ((z.ge(0f32)?.to_dtype(z.dtype())? * 2.0)? - 1.0)?;
    Ok((z + (s * (eps + STAB))?)?)
}

/// The surrogate for one normalised group of terms:
/// `Σ_t sign_t · affine(hook_t(a), w_t) / z` where the hook scales the gradient by
/// `m_t`, so the input's gradient is `Σ_t sign_t m_t ⊙ w_tᵀ(R / z)`.
fn group(node: &Node, a: &Tensor, terms: &[Term], eps: f64, coef: f64) -> Result<Tensor> {
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
    let inv = (stabilize(&z.detach(), eps)?.recip()? * coef)?;
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
    /// The z^B bounds.
    pub low: Bound,
    pub high: Bound,
}

impl Default for LrpSettings {
    fn default() -> Self {
        LrpSettings { epsilon: DEFAULT_EPSILON, gamma: DEFAULT_GAMMA, low: Bound::uniform(0.0), high: Bound::uniform(1.0) }
    }
}

impl LrpSettings {
    /// Uniform bounds `low..high`.
    pub fn new(epsilon: f64, gamma: f64, low: f64, high: f64) -> Self {
        LrpSettings { epsilon, gamma, low: Bound::uniform(low), high: Bound::uniform(high) }
    }
}

impl LrpRule {
    /// The rule with its numbers from `s`.
    pub fn rule(&self, s: &LrpSettings) -> Arc<dyn Rule> {
        match *self {
            LrpRule::Zero => Arc::new(Zero),
            LrpRule::Epsilon => Arc::new(Epsilon { epsilon: s.epsilon }),
            LrpRule::Gamma => Arc::new(Gamma { gamma: s.gamma }),
            LrpRule::ZPlus => Arc::new(ZPlus),
            LrpRule::AlphaBeta { alpha, beta } => Arc::new(AlphaBeta { alpha, beta }),
            LrpRule::Flat => Arc::new(Flat),
            LrpRule::WSquare => Arc::new(WSquare),
            LrpRule::ZBox => Arc::new(ZBox { low: s.low.clone(), high: s.high.clone() }),
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

fn affine<'a>(label: &str, node: &'a Node, inputs: &[&'a Tensor]) -> Result<Affine<'a>> {
    if !node.kind.is_affine_param() {
        return Err(Error::msg(format!(
            "{label} applies to conv and linear layers, not to '{}' ({})",
            node.name,
            node.kind.type_name()
        )));
    }
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

/// LRP-0: `q_ij = a_i w_ij` (bias in the denominator).
#[derive(Debug, Clone, Copy, Default)]
pub struct Zero;
/// LRP-ε: LRP-0 with `z_j + ε·sign(z_j)` as denominator.
#[derive(Debug, Clone, Copy)]
pub struct Epsilon {
    pub epsilon: f64,
}
/// LRP-γ: `q_ij = a_i (w_ij + γ w⁺_ij)`, bias `b + γ b⁺`.
#[derive(Debug, Clone, Copy)]
pub struct Gamma {
    pub gamma: f64,
}
/// z⁺: `q_ij = a⁺_i w⁺_ij + a⁻_i w⁻_ij`, no bias.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZPlus;
/// αβ: `α R⁺ − β R⁻` (see [`LrpRule::AlphaBeta`]).
#[derive(Debug, Clone, Copy)]
pub struct AlphaBeta {
    pub alpha: f64,
    pub beta: f64,
}
/// Flat: `q_ij = 1` for every connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flat;
/// w²: `q_ij = w_ij²`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WSquare;
/// z^B for bounded inputs `l ≤ x ≤ h`: `q_ij = x_i w_ij − l_i w⁺_ij − h_i w⁻_ij`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZBox {
    pub low: Bound,
    pub high: Bound,
}

lrp_rule!(Zero, "lrp_0", |_r, node, p| { group(node, p.a, &[term(p.ad.clone(), p.w.clone(), p.b.cloned(), 1.0)], 0.0, 1.0)? });
lrp_rule!(Epsilon, "lrp_epsilon", |r, node, p| {
    group(node, p.a, &[term(p.ad.clone(), p.w.clone(), p.b.cloned(), 1.0)], r.epsilon, 1.0)?
});
lrp_rule!(Gamma, "lrp_gamma", |r, node, p| {
    let g = r.gamma;
    let wg = (p.w + (pos(p.w)? * g)?)?;
    let bg = match p.b {
        Some(b) => Some((b + (pos(b)? * g)?)?),
        None => None,
    };
    group(node, p.a, &[term(p.ad.clone(), wg, bg, 1.0)], 0.0, 1.0)?
});
lrp_rule!(ZPlus, "lrp_zplus", |_r, node, p| {
    let terms = [term(pos(&p.ad)?, pos(p.w)?, None, 1.0), term(neg(&p.ad)?, neg(p.w)?, None, 1.0)];
    group(node, p.a, &terms, 0.0, 1.0)?
});
lrp_rule!(AlphaBeta, LrpRule::AlphaBeta { alpha: r.alpha, beta: r.beta }.label(), |r, node, p| {
    let (bp, bn) = match p.b {
        Some(b) => (Some(pos(b)?), Some(neg(b)?)),
        None => (None, None),
    };
    let ps = [term(pos(&p.ad)?, pos(p.w)?, bp, 1.0), term(neg(&p.ad)?, neg(p.w)?, None, 1.0)];
    let mut s = group(node, p.a, &ps, 0.0, r.alpha)?;
    if r.beta != 0.0 {
        let q = [term(pos(&p.ad)?, neg(p.w)?, bn, 1.0), term(neg(&p.ad)?, pos(p.w)?, None, 1.0)];
        s = (s + group(node, p.a, &q, 0.0, -r.beta)?)?;
    }
    s
});
lrp_rule!(Flat, "lrp_flat", |_r, node, p| {
    group(node, p.a, &[term(p.ad.ones_like()?, p.w.ones_like()?, None, 1.0)], 0.0, 1.0)?
});
lrp_rule!(WSquare, "lrp_wsquare", |_r, node, p| {
    group(node, p.a, &[term(p.ad.ones_like()?, p.w.sqr()?, None, 1.0)], 0.0, 1.0)?
});
lrp_rule!(ZBox, "lrp_zbox", |r, node, p| {
    let (l, h) = (r.low.like(&p.ad)?, r.high.like(&p.ad)?);
    let terms = [term(p.ad.clone(), p.w.clone(), None, 1.0), term(l, pos(p.w)?, None, -1.0), term(h, neg(p.w)?, None, -1.0)];
    group(node, p.a, &terms, 0.0, 1.0)?
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
}

/// LRP-ε on parameter-free linear maps (average pools, batch norm, residual sums):
/// `R_i = a_i ∂z_j/∂a_i · R_j / (z_j + ε)`, i.e. relevance split in proportion to
/// each input's share of the (bias-free) sum.
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
            .with(Matcher::Types(LINEAR_OPS.to_vec()), Proportional { epsilon: s.epsilon })
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

/// Writes the preset table and registers each preset as a composite of this pack.
macro_rules! presets {
    ($(($name:literal, $summary:literal, $first:expr, $conv:expr, $dense:expr)),* $(,)?) => {
        /// The LRP presets, in `lumen list` order.
        pub const PRESETS: &[LrpPreset] = &[
            $(LrpPreset { name: $name, summary: $summary, composite: LrpComposite { first: $first, conv: $conv, dense: $dense } }),*
        ];
        $(lumen_core::submit_composite!($name, $summary, |s| {
            let s = settings::<LrpSettings>($name, s)?;
            Ok(LrpComposite { first: $first, conv: $conv, dense: $dense }.build($name, &s))
        });)*
    };
}

presets! {
    ("lrp_zero", "LRP-0 on every conv/linear layer (equals gradient × input on ReLU nets)", None, LrpRule::Zero, LrpRule::Zero),
    ("lrp_epsilon", "LRP-ε on every conv/linear layer", None, LrpRule::Epsilon, LrpRule::Epsilon),
    ("lrp_gamma", "LRP-γ on every conv/linear layer", None, LrpRule::Gamma, LrpRule::Gamma),
    ("lrp_zplus", "z⁺ on every conv/linear layer", None, LrpRule::ZPlus, LrpRule::ZPlus),
    ("lrp_alpha1beta0", "αβ with α=1, β=0 on every conv/linear layer", None, AB10, AB10),
    ("lrp_alpha2beta1", "αβ with α=2, β=1 on every conv/linear layer", None, AB21, AB21),
    ("lrp_flat", "flat on every conv/linear layer", None, LrpRule::Flat, LrpRule::Flat),
    ("lrp_wsquare", "w² on every conv/linear layer", None, LrpRule::WSquare, LrpRule::WSquare),
    ("lrp_zbox", "z^B on every conv/linear layer", None, LrpRule::ZBox, LrpRule::ZBox),
    ("lrp_composite_epsilon_plus", "z⁺ on convs, ε on dense layers", None, LrpRule::ZPlus, LrpRule::Epsilon),
    ("lrp_composite_epsilon_plus_flat", "flat on the first layer, z⁺ on convs, ε on dense layers", Some(LrpRule::Flat), LrpRule::ZPlus, LrpRule::Epsilon),
    ("lrp_composite_epsilon_gamma_box", "z^B on the first layer, γ on convs, ε on dense layers", Some(LrpRule::ZBox), LrpRule::Gamma, LrpRule::Epsilon),
    ("lrp_composite_epsilon_alpha2beta1", "αβ (2, 1) on convs, ε on dense layers", None, AB21, LrpRule::Epsilon),
    ("lrp_composite_epsilon_alpha2beta1_flat", "flat on the first layer, αβ (2, 1) on convs, ε on dense layers", Some(LrpRule::Flat), AB21, LrpRule::Epsilon),
}

/// The LRP preset called `name`, or an error listing them.
pub fn preset(name: &str) -> Result<&'static LrpPreset> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| Error::Unknown {
        kind: "LRP composite",
        name: name.to_string(),
        known: PRESETS.iter().map(|p| p.name.to_string()).collect(),
    })
}
