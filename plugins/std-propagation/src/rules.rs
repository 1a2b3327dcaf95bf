//! Guided Backprop (Springenberg et al. 2015) and Deconvnet (Zeiler & Fergus 2014)
//! as ReLU rules, and their presets.
//!
//! Both keep every layer's forward value and change only the backward signal through
//! ReLUs; convolutions, linear layers and max-pools keep their ordinary gradient
//! (the transposed convolution and unpooling through the forward switches, in
//! Zeiler's terms).
//!
//! * Guided: `g_in = 1[x > 0] · max(g_out, 0)`, the ReLU mask of the forward pass and
//!   the ReLU of the backward signal.
//! * Deconvnet: `g_in = max(g_out, 0)`, ignoring the forward mask.
//!
//! A preset is a [`Rule`] type, a `fn` that builds the [`RuleMap`], and a
//! `submit_composite!` that registers it as this pack's item. The presets take no
//! numbers, so they ignore the settings they are built with.

use lumen_core::candle::Tensor;
use lumen_core::model::{LayerKind, Node};
use lumen_core::rules::{grad_hook, surrogate, Matcher, Rule, RuleCtx, RuleMap};
use lumen_core::{Error, Result};

fn relu_input<'a>(rule: &str, node: &Node, inputs: &[&'a Tensor]) -> Result<&'a Tensor> {
    if node.kind != LayerKind::Relu {
        return Err(Error::msg(format!(
            "rule '{rule}' applies to ReLU layers, but layer '{}' is {}",
            node.name,
            node.kind.type_name()
        )));
    }
    inputs.first().copied().ok_or_else(|| Error::msg(format!("layer '{}' has no input", node.name)))
}

/// Guided Backprop's ReLU: the forward mask and the ReLU of the incoming gradient.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuidedRelu;

impl Rule for GuidedRelu {
    fn name(&self) -> &str {
        "guided_relu"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        let x = relu_input(self.name(), node, inputs)?;
        // relu's own backward applies the forward mask; the hook on its output
        // zeroes the negative part of the signal first. lumen's relu: one pass
        // backward (candle's takes five), the same numbers.
        let y = lumen_core::kernels::relu(x)?;
        grad_hook(&y, |g| g.relu())
    }
    fn has_vjp(&self, _node: &Node) -> bool {
        true
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], _y: &Tensor, g: &Tensor, _ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        let x = relu_input(self.name(), node, inputs)?;
        Ok(vec![lumen_core::kernels::relu_grad(x, &g.relu()?)?])
    }
}

/// Deconvnet's ReLU: the ReLU of the incoming gradient, whatever the forward input.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeconvRelu;

impl Rule for DeconvRelu {
    fn name(&self) -> &str {
        "deconv_relu"
    }
    fn forward(&self, node: &Node, inputs: &[&Tensor], _ctx: &RuleCtx) -> Result<Tensor> {
        let x = relu_input(self.name(), node, inputs)?;
        // Value of relu(x); the gradient of an identity whose backward is relu(g),
        // so the forward mask never touches the signal.
        let s = grad_hook(x, |g| g.relu())?;
        surrogate(&x.relu()?, &s)
    }
    fn has_vjp(&self, _node: &Node) -> bool {
        true
    }
    fn vjp(&self, node: &Node, inputs: &[&Tensor], _y: &Tensor, g: &Tensor, _ctx: &RuleCtx) -> Result<Vec<Tensor>> {
        relu_input(self.name(), node, inputs)?;
        Ok(vec![g.relu()?])
    }
}

/// This pack's preset called `name`, or an error listing them.
pub fn preset(name: &str) -> Result<RuleMap> {
    match name {
        "guided_backprop" => Ok(guided_backprop()),
        "deconvnet" => Ok(deconvnet()),
        _ => Err(Error::Unknown {
            kind: "composite",
            name: name.to_string(),
            known: vec!["deconvnet".into(), "guided_backprop".into()],
        }),
    }
}

/// The `guided_backprop` preset: [`GuidedRelu`] on every ReLU.
pub fn guided_backprop() -> RuleMap {
    RuleMap::new("guided_backprop").with(Matcher::Types(vec!["relu"]), GuidedRelu)
}

/// The `deconvnet` preset: [`DeconvRelu`] on every ReLU.
pub fn deconvnet() -> RuleMap {
    RuleMap::new("deconvnet").with(Matcher::Types(vec!["relu"]), DeconvRelu)
}

lumen_core::submit_composite!(
    "guided_backprop",
    "Guided Backprop: ReLU backward keeps the forward mask and positive gradients only",
    |_| Ok(guided_backprop()),
);

lumen_core::submit_composite!(
    "deconvnet",
    "Deconvnet (Zeiler & Fergus): ReLU backward is relu(gradient), ignoring the forward mask",
    |_| Ok(deconvnet()),
);

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::{Device, Var};
    use lumen_core::model::{ForwardOptions, Network};

    fn relu_net() -> Network {
        Network::from_nodes(vec![Node {
            name: "r".into(),
            kind: LayerKind::Relu,
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            inputs: vec![0],
        }])
    }

    /// y = Σ c_i relu(x_i) with signed c: the three backward rules by hand.
    #[test]
    fn relu_rules_by_hand() {
        let d = Device::Cpu;
        let x = Var::new(&[2f32, -1., 3., -4.], &d).unwrap();
        let c = Tensor::new(&[1f32, 1., -1., -1.], &d).unwrap();
        let net = relu_net();
        let grad_with = |name: &str| {
            let comp = preset(name).unwrap();
            let opts = ForwardOptions { composite: Some(&comp), ..Default::default() };
            let y = net.forward_with(x.as_tensor(), &opts).unwrap().output;
            assert_eq!(y.to_vec1::<f32>().unwrap(), vec![2.0, 0.0, 3.0, 0.0], "{name}: value kept");
            let g = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
        };
        // plain: c · 1[x>0] = (1, 0, -1, 0)
        // guided: 1[x>0] · relu(c) = (1, 0, 0, 0)
        // deconv: relu(c) = (1, 1, 0, 0)
        assert_eq!(grad_with("guided_backprop"), vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(grad_with("deconvnet"), vec![1.0, 1.0, 0.0, 0.0]);
        let y = net.forward(x.as_tensor()).unwrap();
        let g = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![1.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn rules_refuse_non_relu_layers() {
        let mut n = relu_net().nodes()[0].clone();
        n.kind = LayerKind::Tanh;
        let x = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        let e = GuidedRelu.forward(&n, &[&x], &RuleCtx::default()).unwrap_err().to_string();
        assert!(e.contains("ReLU") && e.contains("tanh"), "{e}");
    }
}
