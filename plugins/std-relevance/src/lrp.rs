//! Layer-wise relevance propagation through a named composite of this pack's LRP
//! rules ([`crate::rules::lrp`]).
//! The relevance starts at the target's output value (`∂obj/∂out ⊙ out`, so a class
//! target starts from its logit; Zennit starts from a one-hot output, so its maps are
//! lumen's divided by the logit) and the attribution is the relevance that reaches
//! the input. The rules follow Zennit 0.5 by default; `zplus_bias`, `gamma_sign_aware`
//! and `wsquare_bias` = false select the classic forms of Montavon et al. (2017, 2019).

use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, prepare};
use lumen_core::model::network::per_channel;
use lumen_core::model::{ForwardOptions, LayerKind, Network, Node};
use crate::rules::lrp::{self as rules, Bound, Conventions, LrpSettings};
use lumen_core::rules::{grad_hook, Composite, NodeInfo, Rule, RuleCtx, RuleMap};
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use std::sync::Arc;

#[derive(Debug, Clone, Config)]
pub struct LrpConfig {
    /// composite preset (lrp_* under composites in `lumen list`, with each one's first/conv/dense rules)
    pub composite: String,
    /// ε of LRP-ε
    pub epsilon: f64,
    /// γ of LRP-γ
    pub gamma: f64,
    /// stabiliser of every rule but ε, and of Norm on pools/sums (Zennit: 1e-6)
    pub stabilizer: f64,
    /// z⁺ keeps b⁺ in its denominator (Zennit); false: no bias (Montavon 2019)
    pub zplus_bias: bool,
    /// γ swaps w⁺/w⁻ on negative outputs (Zennit); false: w+γw⁺ (Montavon 2019)
    pub gamma_sign_aware: bool,
    /// w² adds b² to its denominator (Zennit); false: weights only (Montavon 2017)
    pub wsquare_bias: bool,
    /// z^B lower bound (default: the model's input range)
    pub low: Option<f64>,
    /// z^B upper bound (default: the model's input range)
    pub high: Option<f64>,
    /// examples per pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for LrpConfig {
    fn default() -> Self {
        LrpConfig {
            composite: "lrp_epsilon".into(),
            epsilon: rules::DEFAULT_EPSILON,
            gamma: rules::DEFAULT_GAMMA,
            stabilizer: rules::DEFAULT_STABILIZER,
            zplus_bias: true,
            gamma_sign_aware: true,
            wsquare_bias: true,
            low: None,
            high: None,
            batch_size: 32,
        }
    }
}

pub const PROPS: MethodProps =
    MethodProps { multiplies_input: true, completeness: false, needs_rules: true, stochastic: false, wrapper: false };

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
    fn has_vjp(&self, node: &Node) -> bool {
        self.0.as_ref().map_or(node.has_vjp(), |r| r.has_vjp(node))
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], y: &Tensor, g: &Tensor, ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        let g = (g * y)?;
        match &self.0 {
            Some(r) => r.vjp(node, inputs, y, &g, ctx),
            None => node.vjp(inputs, y, &g)?.ok_or_else(|| Error::msg(format!("layer '{}' has no direct backward", node.name))),
        }
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
        let c = &self.config;
        let conventions =
            Conventions { zplus_bias: c.zplus_bias, gamma_sign_aware: c.gamma_sign_aware, wsquare_bias: c.wsquare_bias };
        LrpSettings { epsilon: c.epsilon, gamma: c.gamma, stabilizer: c.stabilizer, low, high, conventions }
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

impl Method for Lrp {
    const NAME: &'static str = "lrp";
    const SUMMARY: &'static str =
        "layer-wise relevance propagation with a composite of LRP rules (ε, γ, z⁺, αβ, flat, w², z^B), Zennit's conventions by default";
    type Config = LrpConfig;
    const PROPS: MethodProps = PROPS;
    fn new(config: LrpConfig) -> Result<Self> {
        rules::preset(&config.composite).map_err(|e| Error::bad_param("lrp", "composite", e.to_string()))?;
        if config.epsilon < 0.0 {
            return Err(Error::bad_param("lrp", "epsilon", "must be ≥ 0"));
        }
        if config.gamma < 0.0 {
            return Err(Error::bad_param("lrp", "gamma", "must be ≥ 0"));
        }
        if !(config.stabilizer >= 0.0) {
            return Err(Error::bad_param("lrp", "stabilizer", "must be ≥ 0"));
        }
        Ok(Lrp { config })
    }
    fn config(&self) -> &LrpConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
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
    let opts = ForwardOptions { composite: Some(&composite), stop_after, ctx, ..Default::default() };
    // The gradient through the rules (lumen's native reverse pass where every rule
    // states its backward, else candle's autograd).
    let g = lumen_core::method::gradient(model, x, target, opts)?;
    let (mut rel, obj) = (g.grad, g.objective);
    // The backward pass crosses the model's input normalisation as a gradient
    // (÷ std); relevance is conserved through it, so undo the scaling.
    if let Some(n) = model.info().card.as_ref().and_then(|c| c.normalization.as_ref()) {
        let std = Tensor::from_vec(n.std.clone(), n.std.len(), x.device())?;
        rel = rel.broadcast_mul(&per_channel(&std, rel.rank())?)?;
    }
    Ok((rel, obj.detach().to_vec1::<f32>()?))
}

lumen_core::submit_method!(Lrp);
