//! lumen's native reverse pass: the input gradient of an explainable network
//! without candle's autograd.
//!
//! Why: candle's backward allocates a zeroed buffer and adds into it for every node,
//! and goes through the generic op graph. Here each layer's adjoint is one call of
//! lumen's kernels ([`crate::kernels`]) and a gradient is moved, not added, where a
//! value has one consumer. The pass runs where the kernels run (CPU, f32/f64); it
//! covers the layers and rules with a direct backward, and returns `None` for the
//! rest, where [`crate::method::gradient`] falls back to autograd. Both paths give
//! the same gradients (the tests compare them on every layer kind and model).

use super::network::{layer_err, per_channel, ForwardOptions, Network, Node, Taps};
use super::spec::LayerKind;
use crate::kernels::{self, ConvParams, PoolParams};
use crate::{Error, Result};
use candle_core::{Tensor, D};
use std::cell::Cell;

thread_local! {
    static AUTOGRAD_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the native reverse pass switched off on this thread, so gradients go
/// through candle's autograd (the reference path for tests and comparisons).
pub fn with_autograd<R>(f: impl FnOnce() -> R) -> R {
    kernels::with_flag(&AUTOGRAD_ONLY, f)
}

/// The result of [`Network::reverse`].
#[derive(Debug, Clone)]
pub struct Reverse {
    /// The network output (`Forward::output` of the same pass).
    pub output: Tensor,
    /// `d Σ(seed ⊙ output) / d input`, the shape of the input.
    pub grad: Tensor,
}

impl Node {
    /// Whether [`Node::vjp`] handles this layer kind.
    pub fn has_vjp(&self) -> bool {
        !matches!(self.kind, LayerKind::Softmax)
    }

    /// The gradients at this layer's inputs from the gradient `g` at its output, with
    /// the ordinary (unmodified) derivative; `None` for a case it does not cover.
    pub fn vjp(&self, xs: &[&Tensor], y: &Tensor, g: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let x = xs[0];
        let weight = || self.weight.as_ref().ok_or_else(|| Error::msg(format!("layer '{}' has no weight", self.name)));
        let one = |t: Tensor| Ok(Some(vec![t]));
        match &self.kind {
            LayerKind::Conv2d { stride, padding, .. } => {
                let (_, _, h, w) = x.dims4()?;
                let p = ConvParams { stride: (*stride, *stride), padding: (*padding, *padding) };
                one(kernels::conv2d_input_grad(g, weight()?, (h, w), p)?)
            }
            LayerKind::Conv1d { stride, padding, .. } => {
                let len = x.dim(D::Minus1)?;
                let p = ConvParams { stride: (1, *stride), padding: (0, *padding) };
                let w = weight()?.unsqueeze(2)?;
                one(kernels::conv2d_input_grad(&g.unsqueeze(2)?, &w, (1, len), p)?.squeeze(2)?)
            }
            LayerKind::Linear { .. } if x.rank() == 2 => one(g.matmul(weight()?)?),
            LayerKind::Relu => one(kernels::relu_grad(x, g)?),
            LayerKind::Prelu { .. } => {
                // y = relu(x) − a·relu(−x): autograd's g·[x ≥ 0] + a·g·[x ≤ 0].
                let a = per_channel(weight()?, x.rank())?;
                one((kernels::relu_grad(x, g)? + kernels::relu_grad(&x.neg()?, &g.broadcast_mul(&a)?)?)?)
            }
            LayerKind::Sigmoid => one((g * (y * (1.0 - y)?)?)?),
            LayerKind::Tanh => one((g * (1.0 - y.sqr()?)?)?),
            LayerKind::MaxPool2d { kernel, stride } => one(kernels::max_pool2d_grad(x, g, PoolParams::square(*kernel, *stride))?),
            LayerKind::MaxPool1d { kernel, stride } => {
                let p = PoolParams { kernel: (1, *kernel), stride: (1, *stride), padding: (0, 0), ceil_mode: false };
                one(kernels::max_pool2d_grad(&x.unsqueeze(2)?, &g.unsqueeze(2)?, p)?.squeeze(2)?)
            }
            LayerKind::AvgPool2d { kernel, stride } => {
                let (_, _, h, w) = x.dims4()?;
                one(kernels::avg_pool2d_grad(g, (h, w), PoolParams::square(*kernel, *stride))?)
            }
            LayerKind::GlobalAvgPool => {
                let n = x.elem_count() / (x.dim(0)? * x.dim(1)?).max(1);
                let mut shape = g.dims().to_vec();
                shape.resize(x.rank(), 1);
                one((g.reshape(shape)?.broadcast_as(x.shape())? / n as f64)?.contiguous()?)
            }
            LayerKind::Flatten => one(g.reshape(x.shape())?),
            LayerKind::BatchNorm { eps, .. } => {
                let (scale, _) = self.batch_norm_affine(*eps)?;
                one(g.broadcast_mul(&per_channel(&scale, x.rank())?)?)
            }
            LayerKind::Add if xs.iter().all(|t| t.shape() == g.shape()) => Ok(Some(vec![g.clone(); xs.len()])),
            LayerKind::Mul if xs.len() == 2 && xs[0].shape() == xs[1].shape() => {
                Ok(Some(vec![(g * xs[1])?, (g * xs[0])?]))
            }
            _ => Ok(None),
        }
    }
}

impl Network {
    /// The forward pass and the input gradient of `Σ seed ⊙ output` by the native
    /// reverse pass, or `None` where it does not apply: taps or a stop layer in
    /// `opts`, tensors the kernels do not take, or a layer (or its rule) without a
    /// direct backward. Rules contribute their [`super::Rule::vjp`]; their forward
    /// value is the plain one by the rule contract.
    ///
    /// Under a reference split (`opts.ctx.reference_split = Some(n)`, the batch's
    /// first `n` rows are inputs and the next `n` their references) only the inputs'
    /// rows carry a gradient: `seed` and the returned gradient have `n` rows, and
    /// every backward gets the gradient of the first `n` rows. This is sound because
    /// the reference-based rules keep each row's backward inside its row (the
    /// references take their inputs' multipliers), and it halves the backward.
    pub fn reverse(&self, xs: &Tensor, seed: &Tensor, opts: &ForwardOptions) -> Result<Option<Reverse>> {
        if AUTOGRAD_ONLY.with(|c| c.get())
            || opts.stop_after.is_some()
            || !matches!(opts.taps, Taps::None)
            || self.nodes().is_empty()
            || !kernels::takes(&[xs, seed])
        {
            return Ok(None);
        }
        let nodes = self.nodes();
        let rules: Vec<_> = (0..nodes.len()).map(|i| opts.composite.and_then(|c| c.rule_for(&self.node_info(i)))).collect();
        let covered = nodes.iter().zip(&rules).all(|(n, r)| match r {
            Some(r) => r.has_vjp(n),
            None => n.has_vjp(),
        });
        let params = nodes.iter().flat_map(|n| [&n.weight, &n.bias]).flatten();
        if !covered || !params.into_iter().all(|t| kernels::takes(&[xs, t])) {
            return Ok(None);
        }
        // Forward, keeping every value: the adjoints read their layer's inputs and output.
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(nodes.len() + 1);
        values.push(Some(xs.detach()));
        for node in nodes {
            let ins = inputs(&values, node)?;
            let refs: Vec<&Tensor> = ins.iter().collect();
            values.push(Some(node.forward(&refs).map_err(|e| layer_err(node, &refs, e))?));
        }
        let output = values[nodes.len()].clone().ok_or_else(|| Error::msg("internal: no network output"))?;
        let split = opts.ctx.reference_split;
        let carried = match split {
            Some(n) if n > 0 && 2 * n == xs.dim(0)? => output.narrow(0, 0, n)?,
            Some(n) => return Err(Error::shape(format!("a batch of {} rows (inputs then references)", 2 * n), format!("{:?}", xs.dims()))),
            None => output.clone(),
        };
        if seed.shape() != carried.shape() {
            return Err(Error::shape(format!("a seed of shape {:?}", carried.dims()), format!("{:?}", seed.dims())));
        }
        // The rows a plain layer's backward sees (rules see the whole batch).
        let rows = |t: &Tensor| -> Result<Tensor> {
            Ok(match split {
                Some(n) => t.narrow(0, 0, n)?,
                None => t.clone(),
            })
        };
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len() + 1];
        grads[nodes.len()] = Some(seed.clone());
        let mut uses = vec![0usize; nodes.len() + 1];
        for n in nodes {
            for &j in &n.inputs {
                uses[j] += 1;
            }
        }
        for (i, node) in nodes.iter().enumerate().rev() {
            // Every consumer of this output comes later, so its gradient is complete.
            let out = values[i + 1].take();
            let Some(g) = grads[i + 1].take() else { continue };
            let out = out.ok_or_else(|| Error::msg("internal: value dropped too early"))?;
            // A max-pool over a ReLU that nothing else reads: both backwards in one
            // pass, straight to the ReLU's input (the ReLU node then has no gradient
            // to pass on and is skipped).
            if let (LayerKind::MaxPool2d { kernel, stride }, None, &[j]) = (&node.kind, &rules[i], &node.inputs[..]) {
                let relu = j.checked_sub(1).map(|r| (r, &nodes[r]));
                if let Some((r, relu)) = relu.filter(|(r, n)| matches!(n.kind, LayerKind::Relu) && rules[*r].is_none() && uses[j] == 1 && n.inputs.len() == 1) {
                    let k = relu.inputs[0];
                    let (pre, x) = (rows(&inputs(&values, relu)?[0])?, rows(&inputs(&values, node)?[0])?);
                    let gk = kernels::max_pool2d_relu_grad(&pre, &x, &g, PoolParams::square(*kernel, *stride))?;
                    debug_assert_eq!(r + 1, j);
                    grads[k] = Some(match grads[k].take() {
                        Some(acc) => (acc + gk)?,
                        None => gk,
                    });
                    continue;
                }
            }
            let ins = inputs(&values, node)?;
            let refs: Vec<&Tensor> = ins.iter().collect();
            let gin = match &rules[i] {
                Some(r) => r.vjp(node, &refs, &out, &g, &opts.ctx)?,
                None => {
                    let ins = ins.iter().map(&rows).collect::<Result<Vec<_>>>()?;
                    let refs: Vec<&Tensor> = ins.iter().collect();
                    match node.vjp(&refs, &rows(&out)?, &g)? {
                        Some(v) => v,
                        None => return Ok(None),
                    }
                }
            };
            if gin.len() != node.inputs.len() {
                return Err(Error::msg(format!(
                    "the backward of layer '{}' gave {} gradients for {} inputs",
                    node.name,
                    gin.len(),
                    node.inputs.len()
                )));
            }
            for (&j, gj) in node.inputs.iter().zip(gin) {
                grads[j] = Some(match grads[j].take() {
                    Some(acc) => (acc + gj)?,
                    None => gj,
                });
            }
        }
        let grad = match grads[0].take() {
            Some(g) => g,
            None => rows(xs)?.zeros_like()?,
        };
        Ok(Some(Reverse { output, grad }))
    }
}

fn inputs(values: &[Option<Tensor>], node: &Node) -> Result<Vec<Tensor>> {
    node.inputs
        .iter()
        .map(|&j| values[j].clone().ok_or_else(|| Error::msg("internal: value dropped too early")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::LayerSpec;
    use crate::model::network::init_params;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarBuilder;
    use rand::{Rng, SeedableRng};

    fn net(specs: &[LayerSpec], seed: u64) -> Network {
        let params = init_params(specs, seed, &Device::Cpu).unwrap();
        Network::from_spec(specs, VarBuilder::from_tensors(params, DType::F32, &Device::Cpu)).unwrap()
    }

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.gen_range(-1f32..1.)).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    }

    /// The native pass against candle's autograd through the same forward.
    fn check(net: &Network, x: &Tensor, seed: u64) {
        let out = net.forward(x).unwrap();
        let s = rand(out.dims(), seed);
        let r = net.reverse(x, &s, &ForwardOptions::default()).unwrap().expect("the native pass applies");
        let v = Var::from_tensor(x).unwrap();
        let g = (net.forward(v.as_tensor()).unwrap() * &s).unwrap().sum_all().unwrap().backward().unwrap();
        let want = g.get(v.as_tensor()).unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        let diff = (&r.grad - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-5 * scale, "gradient off by {diff} (scale {scale})");
        let dout = (&r.output - &out).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(dout, 0.0, "the output differs from the plain forward");
    }

    #[test]
    fn matches_autograd_on_every_layer_kind() {
        use LayerKind as K;
        let conv = |c, o, k, s, p| K::Conv2d { in_channels: c, out_channels: o, kernel: k, stride: s, padding: p, bias: true };
        // A residual CNN: conv (stride, padding), batchnorm, relu, max/avg pools, a
        // skip Add and a gating Mul, global pooling, sigmoid and tanh heads.
        let specs = vec![
            LayerSpec::new("c1", conv(2, 4, 3, 1, 1)),
            LayerSpec::new("bn", K::BatchNorm { channels: 4, eps: 1e-5 }),
            LayerSpec::new("r1", K::Relu),
            LayerSpec::new("c2", conv(4, 4, 3, 1, 1)),
            LayerSpec::new("skip", K::Add).with_inputs(&["r1", "c2"]),
            LayerSpec::new("sg", K::Sigmoid),
            LayerSpec::new("gate", K::Mul).with_inputs(&["skip", "sg"]),
            LayerSpec::new("mp", K::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("c3", conv(4, 6, 3, 2, 1)),
            LayerSpec::new("ap", K::AvgPool2d { kernel: 2, stride: 1 }),
            LayerSpec::new("th", K::Tanh),
            LayerSpec::new("gap", K::GlobalAvgPool),
            LayerSpec::new("fc", K::Linear { in_features: 6, out_features: 3, bias: true }),
        ];
        let mut n = net(&specs, 3);
        // A non-trivial batchnorm, so its scale shows in the gradient.
        let bn = &mut n.nodes_mut()[1];
        bn.weight = Some(rand(&[4], 7).affine(1.0, 1.5).unwrap());
        bn.running_var = Some(rand(&[4], 8).affine(0.5, 1.0).unwrap());
        check(&n, &rand(&[3, 2, 12, 12], 1), 2);
    }

    /// A max-pool over a ReLU takes the one-pass backward of both; where the ReLU's
    /// output has a second reader it does not. Both match autograd.
    #[test]
    fn pool_over_relu_backward_matches_autograd() {
        use LayerKind as K;
        let conv = |c, o| K::Conv2d { in_channels: c, out_channels: o, kernel: 3, stride: 1, padding: 1, bias: true };
        let specs = vec![
            LayerSpec::new("c1", conv(1, 4)),
            LayerSpec::new("r1", K::Relu),
            LayerSpec::new("p1", K::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("c2", conv(4, 4)),
            LayerSpec::new("r2", K::Relu),
            LayerSpec::new("p2", K::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("up", K::Conv2d { in_channels: 4, out_channels: 4, kernel: 1, stride: 1, padding: 0, bias: false }),
            LayerSpec::new("r3", K::Relu),
            LayerSpec::new("p3", K::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("mix", K::Add).with_inputs(&["p3", "p3"]),
            LayerSpec::new("gap", K::GlobalAvgPool),
            LayerSpec::new("fc", K::Linear { in_features: 4, out_features: 3, bias: true }),
        ];
        check(&net(&specs, 5), &rand(&[3, 1, 17, 16], 2), 2);
        // r1's output read by two pools: the plain backwards.
        let specs = vec![
            LayerSpec::new("c1", conv(1, 4)),
            LayerSpec::new("r1", K::Relu),
            LayerSpec::new("p1", K::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("q1", K::MaxPool2d { kernel: 2, stride: 2 }).with_inputs(&["r1"]),
            LayerSpec::new("mix", K::Add).with_inputs(&["p1", "q1"]),
            LayerSpec::new("gap", K::GlobalAvgPool),
            LayerSpec::new("fc", K::Linear { in_features: 4, out_features: 3, bias: true }),
        ];
        check(&net(&specs, 6), &rand(&[2, 1, 16, 16], 3), 2);
    }

    #[test]
    fn matches_autograd_on_1d_and_flatten() {
        use LayerKind as K;
        let specs = vec![
            LayerSpec::new("c", K::Conv1d { in_channels: 4, out_channels: 3, kernel: 5, stride: 2, padding: 1, bias: true }),
            LayerSpec::new("r", K::Prelu { channels: 3 }),
            LayerSpec::new("mp", K::MaxPool1d { kernel: 2, stride: 2 }),
            LayerSpec::new("f", K::Flatten),
            LayerSpec::new("fc", K::Linear { in_features: 12, out_features: 2, bias: false }),
        ];
        let mut n = net(&specs, 5);
        n.nodes_mut()[1].weight = Some(rand(&[3], 6)); // slopes of both signs
        check(&n, &rand(&[4, 4, 17], 9), 4);
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        use LayerKind as K;
        let specs = vec![
            LayerSpec::new("fc", K::Linear { in_features: 3, out_features: 2, bias: true }),
            LayerSpec::new("sm", K::Softmax),
        ];
        let n = net(&specs, 1);
        let x = rand(&[2, 3], 1);
        let s = rand(&[2, 2], 2);
        assert!(n.reverse(&x, &s, &ForwardOptions::default()).unwrap().is_none());
        let n = net(&specs[..1], 1);
        assert!(n.reverse(&x, &s, &ForwardOptions::default()).unwrap().is_some());
        // Taps, a stop layer and the autograd switch all decline.
        let taps = ForwardOptions { taps: Taps::All, ..Default::default() };
        assert!(n.reverse(&x, &s, &taps).unwrap().is_none());
        assert!(with_autograd(|| n.reverse(&x, &s, &ForwardOptions::default())).unwrap().is_none());
        // A seed of the wrong shape is an error, not a wrong gradient.
        let e = n.reverse(&x, &rand(&[2, 3], 3), &ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains("seed"), "{e}");
    }
}
