//! Layer-wise relevance propagation through a named composite of this pack's LRP
//! rules ([`crate::rules::lrp`]).
//! The relevance starts at the target's output value (`∂obj/∂out ⊙ out`, so a class
//! target starts from its logit) and the attribution is the relevance that reaches
//! the input.

use lumen_core::candle::{Tensor, Var};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::network::per_channel;
use lumen_core::model::{ForwardOptions, LayerKind, Network, Node};
use lumen_core::params::{ParamKind, ParamSpec};
use crate::rules::lrp::{self as rules, Bound, LrpSettings};
use lumen_core::rules::{grad_hook, Composite, NodeInfo, Rule, RuleCtx, RuleMap};
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Result, Target};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct LrpConfig {
    /// A registered composite preset (`lrp_epsilon`, `lrp_composite_epsilon_gamma_box`, ...).
    pub composite: String,
    pub epsilon: f64,
    pub gamma: f64,
    /// z^B bounds in raw input units; `None` takes the model's input range.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub batch_size: usize,
}

impl Default for LrpConfig {
    fn default() -> Self {
        LrpConfig {
            composite: "lrp_epsilon".into(),
            epsilon: rules::DEFAULT_EPSILON,
            gamma: rules::DEFAULT_GAMMA,
            low: None,
            high: None,
            batch_size: 32,
        }
    }
}

pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("composite", ParamKind::Str, "lrp_epsilon", "composite preset (lrp_* in `lumen list`)"),
    ParamSpec::new("epsilon", ParamKind::Float, "1e-6", "ε of LRP-ε"),
    ParamSpec::new("gamma", ParamKind::Float, "0.25", "γ of LRP-γ"),
    ParamSpec::new("low", ParamKind::Float, "", "z^B lower bound (default: the model's input range)"),
    ParamSpec::new("high", ParamKind::Float, "", "z^B upper bound (default: the model's input range)"),
    ParamSpec::new("batch_size", ParamKind::Int, "32", "examples per pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

#[derive(Debug, Clone, Default)]
pub struct Lrp {
    pub config: LrpConfig,
}

/// Wraps a composite so that the output layer's gradient is scaled by its own value:
/// the backward pass then starts from the relevance `∂obj/∂out ⊙ out`.
struct StartAtOutput<'a> {
    inner: &'a RuleMap,
    layer: String,
}

struct ScaleByValue(Option<Arc<dyn Rule>>);

impl Rule for ScaleByValue {
    fn name(&self) -> &str {
        "relevance_start"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor> {
        let y = match &self.0 {
            Some(r) => r.forward(node, inputs, ctx)?,
            None => node.forward(inputs)?,
        };
        let v = y.detach();
        grad_hook(&y, move |g| g.mul(&v))
    }
}

impl Composite for StartAtOutput<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn rule_for(&self, node: &NodeInfo) -> Option<Arc<dyn Rule>> {
        let r = self.inner.rule_for(node);
        if node.name == self.layer {
            Some(Arc::new(ScaleByValue(r)))
        } else {
            r
        }
    }
}

impl Lrp {
    pub fn new(config: LrpConfig) -> Self {
        Lrp { config }
    }

    pub fn from_args(a: &Args) -> Result<Self> {
        let composite = a.string("composite")?;
        rules::preset(&composite).map_err(|e| Error::bad_param("lrp", "composite", e.to_string()))?;
        let epsilon = a.f64("epsilon")?;
        let gamma = a.f64("gamma")?;
        if epsilon < 0.0 {
            return Err(Error::bad_param("lrp", "epsilon", "must be ≥ 0"));
        }
        if gamma < 0.0 {
            return Err(Error::bad_param("lrp", "gamma", "must be ≥ 0"));
        }
        let opt = |n: &str| -> Result<Option<f64>> { if a.is_set(n) { Ok(Some(a.f64(n)?)) } else { Ok(None) } };
        Ok(Lrp::new(LrpConfig {
            composite,
            epsilon,
            gamma,
            low: opt("low")?,
            high: opt("high")?,
            batch_size: a.positive("batch_size")?,
        }))
    }

    /// The rules' numbers, with the z^B bounds mapped into the network's (normalised)
    /// input space, per channel.
    fn settings(&self, model: &dyn Classifier) -> LrpSettings {
        let (lo, hi) = model.info().input_range;
        let (lo, hi) = (self.config.low.unwrap_or(lo as f64), self.config.high.unwrap_or(hi as f64));
        let (mut low, mut high) = (Bound::uniform(lo), Bound::uniform(hi));
        if let Some(n) = model.info().card.as_ref().and_then(|c| c.normalization.as_ref()) {
            for (m, s) in n.mean.iter().zip(&n.std) {
                low.channels.push((lo - *m as f64) / *s as f64);
                high.channels.push((hi - *m as f64) / *s as f64);
            }
        }
        LrpSettings { epsilon: self.config.epsilon, gamma: self.config.gamma, low, high }
    }
}

/// The layer whose output the class targets read: the last one, or the one that
/// feeds a final softmax.
fn output_layer(net: &Network) -> Result<(String, Option<String>)> {
    let nodes = net.nodes();
    let last = nodes.last().ok_or_else(|| Error::msg("empty network"))?;
    if last.kind == LayerKind::Softmax {
        if let Some(&src) = last.inputs.first().filter(|&&s| s > 0) {
            let name = nodes[src - 1].name.clone();
            return Ok((name.clone(), Some(name)));
        }
    }
    Ok((last.name.clone(), None))
}

impl Attributor for Lrp {
    fn name(&self) -> &str {
        "lrp"
    }
    fn props(&self) -> MethodProps {
        MethodProps { multiplies_input: true, completeness: false, needs_rules: true, stochastic: false, wrapper: false }
    }
    fn params(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut p = BTreeMap::from([
            ("composite".to_string(), c.composite.clone()),
            ("epsilon".to_string(), c.epsilon.to_string()),
            ("gamma".to_string(), c.gamma.to_string()),
            ("batch_size".to_string(), c.batch_size.to_string()),
        ]);
        if let Some(l) = c.low {
            p.insert("low".into(), l.to_string());
        }
        if let Some(h) = c.high {
            p.insert("high".into(), h.to_string());
        }
        p
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        model.network().ok_or_else(|| {
            Error::unsupported("lrp", format!("model '{}' is not built from the explainable layer vocabulary", model.info().name))
        })?;
        let target = prepare(model, inputs, target)?;
        let preset = rules::preset(&self.config.composite)?;
        let map = preset.composite.build(preset.name, &self.settings(model));
        let (mut parts, mut sums, mut objs) = (vec![], vec![], vec![]);
        for r in chunks(inputs.dim(0)?, self.config.batch_size) {
            let x = inputs.narrow(0, r.start, r.len())?;
            let (rel, obj) = relevance_with_objective(model, &x, &target.select(r), &map, RuleCtx::default())?;
            sums.extend(rel.flatten_from(1)?.sum(1)?.to_vec1::<f32>()?);
            objs.extend(obj);
            parts.push(rel);
        }
        Ok(Explanation::new("lrp", Tensor::cat(&parts, 0)?, target)
            .with_params(self.params())
            .with_diag("relevance_sum", sums)
            .with_diag("objective", objs))
    }
}

/// The input relevance of `xs` for a resolved `target` under any LRP rule map and
/// rule context (the building block of [`Lrp`]).
pub fn relevance(model: &dyn Classifier, xs: &Tensor, target: &Target, map: &RuleMap, ctx: RuleCtx) -> Result<Tensor> {
    let target = prepare(model, xs, target)?;
    Ok(relevance_with_objective(model, xs, &target, map, ctx)?.0)
}

fn relevance_with_objective(
    model: &dyn Classifier,
    x: &Tensor,
    target: &Target,
    map: &RuleMap,
    ctx: RuleCtx,
) -> Result<(Tensor, Vec<f32>)> {
    let net = model.network().ok_or_else(|| {
        Error::unsupported("lrp", format!("model '{}' is not built from the explainable layer vocabulary", model.info().name))
    })?;
    let (out_layer, stop_after) = output_layer(net)?;
    let layer = match target {
        Target::Hidden { layer, .. } => layer.clone(),
        _ => out_layer,
    };
    let composite = StartAtOutput { inner: map, layer };
    let var = Var::from_tensor(&x.detach())?;
    let opts = ForwardOptions { composite: Some(&composite), stop_after, ctx, ..Default::default() };
    let (obj, _) = lumen_core::target::objective(model, var.as_tensor(), target, opts)?;
    let grads = obj.sum_all()?.backward()?;
    let mut rel = match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    };
    // The backward pass crosses the model's input normalisation as a gradient
    // (÷ std); relevance is conserved through it, so undo the scaling.
    if let Some(n) = model.info().card.as_ref().and_then(|c| c.normalization.as_ref()) {
        let std = Tensor::from_vec(n.std.clone(), n.std.len(), x.device())?;
        rel = rel.broadcast_mul(&per_channel(&std, rel.rank())?)?;
    }
    Ok((rel, obj.detach().to_vec1::<f32>()?))
}

lumen_core::submit_method!(
    "lrp",
    "layer-wise relevance propagation with a composite of LRP rules (ε, γ, z⁺, αβ, flat, z^B)",
    PARAMS,
    MethodProps { multiplies_input: true, completeness: false, needs_rules: true, stochastic: false, wrapper: false },
    |a, _| Ok(Box::new(Lrp::from_args(a)?)),
);
