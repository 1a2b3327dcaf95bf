//! Layer-wise relevance propagation rules (Bach et al. 2015; Montavon et al., "Layer-
//! Wise Relevance Propagation: An Overview", 2019) as value-preserving surrogates.
//!
//! Unlike DeepLIFT's multipliers, the backward pass here carries the relevance `R`
//! itself (start it at the target's output value): a rule maps the relevance of a
//! layer's outputs to the relevance of its inputs,
//! `R_i = Σ_j q_ij R_j / z_j` with `z_j = Σ_i q_ij` for the rule's `q_ij`.
//! Activations pass relevance unchanged, max pools route it to the winner.
//!
//! Numeric options come from `RuleCtx::options`: `epsilon`, `gamma`, and the z^B
//! bounds `low`/`high` (per input channel `low.C`/`high.C` win over them).

use super::deeplift::{MaxRoute, MaxRouting};
use super::{grad_hook, surrogate, CompositeEntry, Matcher, Rule, RuleCtx, RuleMap};
use crate::model::network::per_channel;
use crate::model::{LayerKind, Node};
use crate::{Error, Result};
use candle_core::Tensor;

/// Keeps every denominator away from zero (added with the sign of `z`).
const STAB: f64 = 1e-9;
pub const DEFAULT_EPSILON: f64 = 1e-6;
pub const DEFAULT_GAMMA: f64 = 0.25;

/// The LRP rules for conv and linear layers.
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

fn opt(ctx: &RuleCtx, key: &str, default: f64) -> f64 {
    ctx.options.get(key).copied().unwrap_or(default)
}

/// A tensor shaped like `a` holding the bound `key` (`low`/`high`), per channel when
/// `key.C` options exist.
fn bound(ctx: &RuleCtx, a: &Tensor, key: &str, default: f64) -> Result<Tensor> {
    let base = opt(ctx, key, default);
    let c = if a.rank() >= 2 { a.dim(1)? } else { 1 };
    let per: Vec<f32> = (0..c).map(|i| opt(ctx, &format!("{key}.{i}"), base) as f32).collect();
    if a.rank() < 2 || per.iter().all(|v| *v == base as f32) {
        return Ok((a.zeros_like()? + base)?);
    }
    let v = Tensor::from_vec(per, c, a.device())?.to_dtype(a.dtype())?;
    Ok(a.zeros_like()?.broadcast_add(&per_channel(&v, a.rank())?)?)
}

impl Rule for LrpRule {
    fn name(&self) -> &str {
        self.label()
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        if !node.kind.is_affine_param() {
            return Err(Error::msg(format!(
                "{} applies to conv and linear layers, not to '{}' ({})",
                self.label(),
                node.name,
                node.kind.type_name()
            )));
        }
        let a = inputs[0];
        let z = node.forward(inputs)?;
        let w = node.weight.as_ref().ok_or_else(|| Error::msg(format!("layer '{}' has no weight", node.name)))?;
        let b = node.bias.as_ref();
        let ad = a.detach();
        let pos = |t: &Tensor| t.relu();
        let neg = |t: &Tensor| t.minimum(0f32);
        let term = |m: Tensor, w: Tensor, b: Option<Tensor>, sign: f64| Term { m, w, b, sign };
        let eps = opt(ctx, "epsilon", DEFAULT_EPSILON);
        let s = match *self {
            LrpRule::Zero => group(node, a, &[term(ad, w.clone(), b.cloned(), 1.0)], 0.0, 1.0)?,
            LrpRule::Epsilon => group(node, a, &[term(ad, w.clone(), b.cloned(), 1.0)], eps, 1.0)?,
            LrpRule::Gamma => {
                let g = opt(ctx, "gamma", DEFAULT_GAMMA);
                let wg = (w + (pos(w)? * g)?)?;
                let bg = match b {
                    Some(b) => Some((b + (pos(b)? * g)?)?),
                    None => None,
                };
                group(node, a, &[term(ad, wg, bg, 1.0)], 0.0, 1.0)?
            }
            LrpRule::ZPlus => {
                let terms = [term(pos(&ad)?, pos(w)?, None, 1.0), term(neg(&ad)?, neg(w)?, None, 1.0)];
                group(node, a, &terms, 0.0, 1.0)?
            }
            LrpRule::AlphaBeta { alpha, beta } => {
                let (bp, bn) = match b {
                    Some(b) => (Some(pos(b)?), Some(neg(b)?)),
                    None => (None, None),
                };
                let p = [term(pos(&ad)?, pos(w)?, bp, 1.0), term(neg(&ad)?, neg(w)?, None, 1.0)];
                let mut s = group(node, a, &p, 0.0, alpha)?;
                if beta != 0.0 {
                    let q = [term(pos(&ad)?, neg(w)?, bn, 1.0), term(neg(&ad)?, pos(w)?, None, 1.0)];
                    s = (s + group(node, a, &q, 0.0, -beta)?)?;
                }
                s
            }
            LrpRule::Flat => group(node, a, &[term(ad.ones_like()?, w.ones_like()?, None, 1.0)], 0.0, 1.0)?,
            LrpRule::WSquare => group(node, a, &[term(ad.ones_like()?, w.sqr()?, None, 1.0)], 0.0, 1.0)?,
            LrpRule::ZBox => {
                let (l, h) = (bound(ctx, &ad, "low", 0.0)?, bound(ctx, &ad, "high", 1.0)?);
                let terms = [term(ad, w.clone(), None, 1.0), term(l, pos(w)?, None, -1.0), term(h, neg(w)?, None, -1.0)];
                group(node, a, &terms, 0.0, 1.0)?
            }
        };
        surrogate(&z, &s)
    }
}

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
#[derive(Debug, Clone, Copy, Default)]
pub struct Proportional;

impl Rule for Proportional {
    fn name(&self) -> &str {
        "lrp_epsilon_linear"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let y = node.forward(inputs)?;
        let eps = opt(ctx, "epsilon", DEFAULT_EPSILON);
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

/// A composite from the rules for the first param layer (optional), convs and
/// dense layers, plus the shared treatment of activations, pools and sums.
pub fn lrp_composite(name: &str, first: Option<LrpRule>, conv: LrpRule, dense: LrpRule) -> RuleMap {
    let mut m = RuleMap::new(name);
    if let Some(f) = first {
        m = m.with(Matcher::FirstParam, f);
    }
    m.with(Matcher::Conv, conv)
        .with(Matcher::Linear, dense)
        .with(Matcher::Activation, Pass)
        .with(Matcher::Types(MAX_POOLS.to_vec()), MaxRoute(MaxRouting::Winner))
        .with(Matcher::Types(LINEAR_OPS.to_vec()), Proportional)
}

const AB21: LrpRule = LrpRule::AlphaBeta { alpha: 2.0, beta: 1.0 };
const AB10: LrpRule = LrpRule::AlphaBeta { alpha: 1.0, beta: 0.0 };

macro_rules! preset {
    ($name:literal, $summary:literal, $first:expr, $conv:expr, $dense:expr) => {
        inventory::submit! {
            CompositeEntry {
                name: $name,
                pack: "lumen-core",
                summary: $summary,
                build: || lrp_composite($name, $first, $conv, $dense),
            }
        }
    };
}

preset!("lrp_zero", "LRP-0 on every conv/linear layer (equals gradient × input on ReLU nets)", None, LrpRule::Zero, LrpRule::Zero);
preset!("lrp_epsilon", "LRP-ε on every conv/linear layer", None, LrpRule::Epsilon, LrpRule::Epsilon);
preset!("lrp_gamma", "LRP-γ on every conv/linear layer", None, LrpRule::Gamma, LrpRule::Gamma);
preset!("lrp_zplus", "z⁺ on every conv/linear layer", None, LrpRule::ZPlus, LrpRule::ZPlus);
preset!("lrp_alpha1beta0", "αβ with α=1, β=0 on every conv/linear layer", None, AB10, AB10);
preset!("lrp_alpha2beta1", "αβ with α=2, β=1 on every conv/linear layer", None, AB21, AB21);
preset!("lrp_flat", "flat on every conv/linear layer", None, LrpRule::Flat, LrpRule::Flat);
preset!("lrp_composite_epsilon_plus", "z⁺ on convs, ε on dense layers", None, LrpRule::ZPlus, LrpRule::Epsilon);
preset!("lrp_composite_epsilon_plus_flat", "flat on the first layer, z⁺ on convs, ε on dense layers", Some(LrpRule::Flat), LrpRule::ZPlus, LrpRule::Epsilon);
preset!("lrp_composite_epsilon_gamma_box", "z^B on the first layer, γ on convs, ε on dense layers", Some(LrpRule::ZBox), LrpRule::Gamma, LrpRule::Epsilon);
preset!("lrp_composite_epsilon_alpha2beta1", "αβ (2, 1) on convs, ε on dense layers", None, AB21, LrpRule::Epsilon);
preset!("lrp_composite_epsilon_alpha2beta1_flat", "flat on the first layer, αβ (2, 1) on convs, ε on dense layers", Some(LrpRule::Flat), AB21, LrpRule::Epsilon);
