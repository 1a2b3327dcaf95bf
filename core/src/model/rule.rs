//! The graph's extension point: a [`Rule`] replaces one layer's forward call (same
//! value, another backward) and a [`Composite`] chooses the rule for each layer.
//! [`RuleMap`] is the usual composite, matching by layer type, name and position.
//!
//! These types live inside `model` because the network's forward pass asks for them;
//! the rules themselves (LRP, DeepLIFT, Guided Backprop) live in the packs that own
//! the methods, built from the blocks in [`crate::autograd`].

use super::{LayerKind, Node};
use crate::Result;
use candle_core::Tensor;
use std::fmt;
use std::sync::Arc;

/// What a composite sees about a layer when choosing its rule.
#[derive(Debug, Clone, Copy)]
pub struct NodeInfo<'a> {
    pub index: usize,
    pub name: &'a str,
    pub kind: &'a LayerKind,
    /// The first conv/linear layer (LRP's z^B usually goes here).
    pub is_first_param: bool,
    /// The last conv/linear layer.
    pub is_last_param: bool,
    pub num_nodes: usize,
}

/// Context shared by all rules during one forward pass.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct RuleCtx {
    /// For reference-based rules (DeepLIFT): the batch holds the inputs in its first
    /// `n` rows and their references in the next `n`. (A rule's own numbers, such as
    /// LRP's ε, are fields of the rule, set when its composite is built.)
    pub reference_split: Option<usize>,
}

impl RuleCtx {
    pub fn with_reference_split(n: usize) -> Self {
        RuleCtx { reference_split: Some(n), ..Default::default() }
    }
}

/// A modified backward for one layer. `forward` must return the same value as
/// `node.forward(inputs)`; only its gradient differs.
///
/// A rule may also state its backward directly ([`Rule::vjp`]). Gradient methods
/// then run lumen's native reverse pass ([`crate::model::Network::reverse`]) instead
/// of candle's autograd through `forward`; both must give the same gradient.
pub trait Rule: Send + Sync {
    fn name(&self) -> &str;
    fn forward(&self, node: &Node, inputs: &[&Tensor], ctx: &RuleCtx) -> Result<Tensor>;
    /// Whether [`Rule::vjp`] is implemented for this layer.
    fn has_vjp(&self, node: &Node) -> bool {
        let _ = node;
        false
    }
    /// The gradients at the layer's inputs, given the inputs, the layer's (plain)
    /// output and the gradient at that output. Under a reference split (`ctx`) the
    /// inputs and output have all `2n` rows, and the gradients only the first `n`
    /// (see [`crate::model::Network::reverse`]).
    fn vjp(&self, node: &Node, inputs: &[&Tensor], output: &Tensor, grad: &Tensor, ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        let _ = (inputs, output, grad, ctx);
        Err(crate::Error::msg(format!("rule '{}' on layer '{}' has no direct backward", self.name(), node.name)))
    }
}

impl fmt::Debug for dyn Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({})", self.name())
    }
}

/// Chooses a rule for each layer (`None`: the plain forward and gradient).
pub trait Composite: Send + Sync {
    fn name(&self) -> &str;
    fn rule_for(&self, node: &NodeInfo) -> Option<Arc<dyn Rule>>;
}

/// Which layers a [`RuleMap`] entry applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// Any layer of these types (`LayerKind::type_name`).
    Types(Vec<&'static str>),
    /// Layers with exactly this name.
    Name(String),
    /// The first conv/linear layer.
    FirstParam,
    /// The last conv/linear layer.
    LastParam,
    /// Every conv layer (1d or 2d).
    Conv,
    /// Every linear layer.
    Linear,
    /// Every element-wise activation.
    Activation,
    Any,
}

impl Matcher {
    pub fn matches(&self, n: &NodeInfo) -> bool {
        match self {
            Matcher::Types(ts) => ts.contains(&n.kind.type_name()),
            Matcher::Name(s) => s == n.name,
            Matcher::FirstParam => n.is_first_param,
            Matcher::LastParam => n.is_last_param,
            Matcher::Conv => matches!(n.kind, LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. }),
            Matcher::Linear => matches!(n.kind, LayerKind::Linear { .. }),
            Matcher::Activation => n.kind.is_activation(),
            Matcher::Any => true,
        }
    }
}

/// An ordered list of (matcher, rule); the first match wins.
#[derive(Clone, Default)]
pub struct RuleMap {
    name: String,
    entries: Vec<(Matcher, Arc<dyn Rule>)>,
}

impl RuleMap {
    pub fn new(name: impl Into<String>) -> Self {
        RuleMap { name: name.into(), entries: vec![] }
    }
    /// Adds an entry after the existing ones.
    pub fn with(mut self, m: Matcher, rule: impl Rule + 'static) -> Self {
        self.entries.push((m, Arc::new(rule)));
        self
    }
    pub fn with_arc(mut self, m: Matcher, rule: Arc<dyn Rule>) -> Self {
        self.entries.push((m, rule));
        self
    }
    /// Adds an entry that takes precedence over the existing ones.
    pub fn prepend(mut self, m: Matcher, rule: Arc<dyn Rule>) -> Self {
        self.entries.insert(0, (m, rule));
        self
    }
    pub fn entries(&self) -> &[(Matcher, Arc<dyn Rule>)] {
        &self.entries
    }
}

impl fmt::Debug for RuleMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let es: Vec<String> = self.entries.iter().map(|(m, r)| format!("{m:?} => {}", r.name())).collect();
        write!(f, "RuleMap({}: {})", self.name, es.join(", "))
    }
}

impl Composite for RuleMap {
    fn name(&self) -> &str {
        &self.name
    }
    fn rule_for(&self, node: &NodeInfo) -> Option<Arc<dyn Rule>> {
        self.entries.iter().find(|(m, _)| m.matches(node)).map(|(_, r)| r.clone())
    }
}
