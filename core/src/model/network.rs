//! The explainable network: a small DAG of named layers from the vocabulary in
//! [`LayerKind`], whose forward pass asks a rule map for each layer.

use super::spec::{LayerKind, LayerSpec};
use super::rule::{Composite, NodeInfo, RuleCtx};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// Name of the network input when wiring `inputs`.
pub const INPUT: &str = "input";

/// One layer with its weights. `inputs` index the value list, where 0 is the
/// network input and `i + 1` is the output of node `i`.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: LayerKind,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    /// BatchNorm running mean and variance.
    pub running_mean: Option<Tensor>,
    pub running_var: Option<Tensor>,
    pub inputs: Vec<usize>,
}

fn req<'a>(t: &'a Option<Tensor>, node: &str, what: &str) -> Result<&'a Tensor> {
    t.as_ref().ok_or_else(|| Error::msg(format!("layer '{node}' has no {what}")))
}

/// Broadcast a per-channel vector `[C]` against `[B, C, ...]`.
pub fn per_channel(v: &Tensor, rank: usize) -> Result<Tensor> {
    let c = v.dim(0)?;
    let mut shape = vec![1, c];
    shape.resize(rank.max(2), 1);
    Ok(v.reshape(shape)?)
}

impl Node {
    /// The plain forward pass of this layer.
    pub fn forward(&self, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        Ok(match &self.kind {
            LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. } | LayerKind::Linear { .. } => {
                self.affine(x, req(&self.weight, &self.name, "weight")?, self.bias.as_ref())?
            }
            LayerKind::Relu => crate::kernels::relu(x)?,
            LayerKind::Prelu { .. } => {
                let a = per_channel(req(&self.weight, &self.name, "weight")?, x.rank())?;
                (crate::kernels::relu(x)? - crate::kernels::relu(&x.neg()?)?.broadcast_mul(&a)?)?
            }
            LayerKind::Sigmoid => candle_nn::ops::sigmoid(x)?,
            LayerKind::Tanh => x.tanh()?,
            LayerKind::MaxPool1d { kernel, stride } => {
                super::pool::max_pool2d(&x.unsqueeze(2)?, (1, *kernel), (1, *stride))?.squeeze(2)?
            }
            LayerKind::MaxPool2d { kernel, stride } => {
                super::pool::max_pool2d(x, (*kernel, *kernel), (*stride, *stride))?
            }
            LayerKind::AvgPool2d { kernel, stride } => {
                crate::kernels::avg_pool2d(x, crate::kernels::PoolParams::square(*kernel, *stride))?
            }
            LayerKind::GlobalAvgPool => {
                let (b, c) = (x.dim(0)?, x.dim(1)?);
                x.reshape((b, c, ()))?.mean(D::Minus1)?
            }
            LayerKind::Flatten => x.flatten_from(1)?,
            LayerKind::BatchNorm { eps, .. } => {
                let (scale, shift) = self.batch_norm_affine(*eps)?;
                x.broadcast_mul(&per_channel(&scale, x.rank())?)?
                    .broadcast_add(&per_channel(&shift, x.rank())?)?
            }
            LayerKind::Softmax => candle_nn::ops::softmax(x, D::Minus1)?,
            LayerKind::Add => {
                let mut acc = x.clone();
                for y in &xs[1..] {
                    acc = (acc + *y)?;
                }
                acc
            }
            LayerKind::Mul => {
                if xs.len() != 2 {
                    return Err(Error::msg(format!("mul layer '{}' needs exactly two inputs", self.name)));
                }
                (x * xs[1])?
            }
        })
    }

    /// Conv or linear with the given (possibly modified) weight and bias. LRP and
    /// DeepLIFT rules call this with w⁺, w − γw⁺ and so on.
    pub fn affine(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        // lumen's kernels (crate::kernels): on the CPU they compute only the gradients
        // of tracked arguments, elsewhere they are candle's ops.
        match &self.kind {
            LayerKind::Conv1d { stride, padding, .. } => crate::kernels::conv1d(x, w, b, *stride, *padding),
            LayerKind::Conv2d { stride, padding, .. } => crate::kernels::conv2d(
                x,
                w,
                b,
                crate::kernels::ConvParams { stride: (*stride, *stride), padding: (*padding, *padding) },
            ),
            LayerKind::Linear { .. } => crate::kernels::linear(x, w, b),
            other => Err(Error::msg(format!(
                "layer '{}' ({}) is not an affine layer",
                self.name,
                other.type_name()
            ))),
        }
    }

    /// BatchNorm as a per-channel affine map `x * scale + shift`.
    pub fn batch_norm_affine(&self, eps: f64) -> Result<(Tensor, Tensor)> {
        let w = req(&self.weight, &self.name, "weight")?;
        let b = req(&self.bias, &self.name, "bias")?;
        let m = req(&self.running_mean, &self.name, "running_mean")?;
        let v = req(&self.running_var, &self.name, "running_var")?;
        let scale = w.div(&(v + eps)?.sqrt()?)?;
        let shift = (b - m.mul(&scale)?)?;
        Ok((scale, shift))
    }
}

/// Which intermediate outputs a forward pass records.
#[derive(Debug, Clone, Default)]
pub enum Taps {
    #[default]
    None,
    Names(Vec<String>),
    All,
}

/// Options of [`Network::forward_with`].
#[derive(Default)]
pub struct ForwardOptions<'a> {
    /// The rule map; `None` is the plain forward pass.
    pub composite: Option<&'a dyn Composite>,
    pub taps: Taps,
    /// Stop after this layer (its output becomes `Forward::output`).
    pub stop_after: Option<String>,
    pub ctx: RuleCtx,
}

/// The result of [`Network::forward_with`].
#[derive(Debug, Clone)]
pub struct Forward {
    pub output: Tensor,
    pub taps: HashMap<String, Tensor>,
}

impl Forward {
    pub fn tap(&self, name: &str) -> Result<&Tensor> {
        self.taps.get(name).ok_or_else(|| Error::Unknown {
            kind: "tap",
            name: name.to_string(),
            known: self.taps.keys().cloned().collect(),
        })
    }
}

/// A network built from the layer vocabulary.
#[derive(Debug, Clone)]
pub struct Network {
    nodes: Vec<Node>,
}

impl Network {
    /// Builds a network from its spec, taking weights from `vb` with PyTorch
    /// `state_dict` names (`conv1.weight`, `fc2.bias`, `bn.running_mean`).
    pub fn from_spec(specs: &[LayerSpec], vb: VarBuilder) -> Result<Self> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        index.insert(INPUT, 0);
        let mut nodes = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if index.contains_key(spec.name.as_str()) {
                return Err(Error::msg(format!("layer name '{}' is used twice", spec.name)));
            }
            let inputs = if spec.inputs.is_empty() {
                vec![i]
            } else {
                spec.inputs
                    .iter()
                    .map(|n| {
                        index.get(n.as_str()).copied().ok_or_else(|| {
                            Error::msg(format!("layer '{}' reads '{}', which is not an earlier layer", spec.name, n))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let mut node = Node {
                name: spec.name.clone(),
                kind: spec.kind.clone(),
                weight: None,
                bias: None,
                running_mean: None,
                running_var: None,
                inputs,
            };
            for (pname, shape) in param_shapes(&spec.kind) {
                let t = vb.pp(&spec.name).get(shape.as_slice(), pname).map_err(|e| {
                    Error::Weights { path: "<weights>".into(), reason: format!("{}.{pname}: {e}", spec.name) }
                })?;
                match pname {
                    "weight" => node.weight = Some(t),
                    "bias" => node.bias = Some(t),
                    "running_mean" => node.running_mean = Some(t),
                    "running_var" => node.running_var = Some(t),
                    _ => unreachable!("param_shapes only yields known names"),
                }
            }
            index.insert(&spec.name, i + 1);
            nodes.push(node);
        }
        Ok(Network { nodes })
    }

    /// Builds a network directly from nodes (tests and hand-made nets).
    pub fn from_nodes(nodes: Vec<Node>) -> Self {
        Network { nodes }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Mutable access, e.g. for the randomisation sanity check.
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    pub fn node(&self, name: &str) -> Result<(usize, &Node)> {
        self.nodes.iter().enumerate().find(|(_, n)| n.name == name).ok_or_else(|| Error::Unknown {
            kind: "layer",
            name: name.to_string(),
            known: self.nodes.iter().map(|n| n.name.clone()).collect(),
        })
    }

    pub fn device(&self) -> Device {
        self.nodes.iter().find_map(|n| n.weight.as_ref()).map(|w| w.device().clone()).unwrap_or(Device::Cpu)
    }

    pub fn dtype(&self) -> DType {
        self.nodes.iter().find_map(|n| n.weight.as_ref()).map(|w| w.dtype()).unwrap_or(DType::F32)
    }

    /// What a composite sees of layer `i`.
    pub fn node_info(&self, i: usize) -> NodeInfo<'_> {
        let node = &self.nodes[i];
        NodeInfo {
            index: i,
            name: &node.name,
            kind: &node.kind,
            is_first_param: self.nodes.iter().position(|n| n.kind.is_affine_param()) == Some(i),
            is_last_param: self.nodes.iter().rposition(|n| n.kind.is_affine_param()) == Some(i),
            num_nodes: self.nodes.len(),
        }
    }

    /// Plain forward pass.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with(xs, &ForwardOptions::default())?.output)
    }

    /// Forward pass with a rule map and taps.
    pub fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        if let Some(stop) = &opts.stop_after {
            self.node(stop)?;
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        values[0] = Some(xs.clone());
        let mut uses = vec![0usize; self.nodes.len() + 1];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i] += 1;
            }
        }
        let mut taps = HashMap::new();
        let mut last = xs.clone();
        let mut skip_to = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if i < skip_to {
                continue;
            }
            if let Some((out, end)) = self.fused_block(i, &values, &uses, opts)? {
                for j in i..end {
                    for &k in &self.nodes[j].inputs {
                        uses[k] -= 1;
                        if uses[k] == 0 && k != 0 {
                            values[k] = None;
                        }
                    }
                }
                if let Taps::Names(ns) = &opts.taps {
                    if ns.iter().any(|n| n == &self.nodes[end - 1].name) {
                        taps.insert(self.nodes[end - 1].name.clone(), out.clone());
                    }
                }
                last = out.clone();
                values[end] = Some(out);
                skip_to = end;
                if opts.stop_after.as_deref() == Some(self.nodes[end - 1].name.as_str()) {
                    break;
                }
                continue;
            }
            let inputs: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|&j| values[j].clone().ok_or_else(|| Error::msg("internal: value dropped too early")))
                .collect::<Result<_>>()?;
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let rule = opts.composite.and_then(|c| c.rule_for(&self.node_info(i)));
            let out = match rule {
                Some(r) => r.forward(node, &refs, &opts.ctx)?,
                None => node.forward(&refs).map_err(|e| layer_err(node, &refs, e))?,
            };
            let keep = match &opts.taps {
                Taps::None => false,
                Taps::All => true,
                Taps::Names(ns) => ns.iter().any(|n| n == &node.name),
            };
            if keep {
                taps.insert(node.name.clone(), out.clone());
            }
            // Free intermediate values as soon as no later layer needs them.
            for &j in &node.inputs {
                uses[j] -= 1;
                if uses[j] == 0 && j != 0 {
                    values[j] = None;
                }
            }
            last = out.clone();
            values[i + 1] = Some(out);
            if opts.stop_after.as_deref() == Some(node.name.as_str()) {
                break;
            }
        }
        if let Taps::Names(ns) = &opts.taps {
            for n in ns {
                if !taps.contains_key(n) {
                    self.node(n)?;
                }
            }
        }
        Ok(Forward { output: last, taps })
    }
}

impl Network {
    /// A conv2d → ReLU (→ max-pool) chain starting at node `i` that the plain forward
    /// may compute in one fused kernel pass ([`crate::kernels::conv2d_relu_pool`]):
    /// its output and the index after its last node. Only where nothing else sees the
    /// intermediate maps: no rule map, no tap or stop on them, one consumer each.
    fn fused_block(
        &self,
        i: usize,
        values: &[Option<Tensor>],
        uses: &[usize],
        opts: &ForwardOptions,
    ) -> Result<Option<(Tensor, usize)>> {
        let node = &self.nodes[i];
        let LayerKind::Conv2d { stride, padding, .. } = node.kind else { return Ok(None) };
        if opts.composite.is_some() || matches!(opts.taps, Taps::All) || node.inputs.len() != 1 {
            return Ok(None);
        }
        // Node j (its value is values[j + 1]) reads only node j - 1's value.
        let chained = |j: usize| self.nodes.get(j).is_some_and(|n| n.inputs == [j]) && uses[j] == 1;
        let hidden = |j: usize| {
            let name = self.nodes[j].name.as_str();
            opts.stop_after.as_deref() != Some(name)
                && !matches!(&opts.taps, Taps::Names(ns) if ns.iter().any(|n| n == name))
        };
        if !(chained(i + 1) && matches!(self.nodes[i + 1].kind, LayerKind::Relu) && hidden(i)) {
            return Ok(None);
        }
        let pool = match self.nodes.get(i + 2).map(|n| &n.kind) {
            Some(LayerKind::MaxPool2d { kernel, stride }) if chained(i + 2) && hidden(i + 1) => {
                Some(crate::kernels::PoolParams::square(*kernel, *stride))
            }
            _ => None,
        };
        let Some(x) = values[node.inputs[0]].as_ref() else { return Ok(None) };
        let p = crate::kernels::ConvParams { stride: (stride, stride), padding: (padding, padding) };
        let w = req(&node.weight, &node.name, "weight")?;
        let end = i + if pool.is_some() { 3 } else { 2 };
        let out = crate::kernels::conv2d_relu_pool(x, w, node.bias.as_ref(), p, pool)
            .map_err(|e| layer_err(node, &[x], e))?;
        Ok(out.map(|o| (o, end)))
    }
}

pub(super) fn layer_err(node: &Node, xs: &[&Tensor], e: Error) -> Error {
    match e {
        Error::Candle(c) => Error::msg(format!(
            "layer '{}' ({}) failed on input of shape {:?}: {c}",
            node.name,
            node.kind.type_name(),
            xs[0].dims()
        )),
        other => other,
    }
}

/// Parameter names and shapes of a layer, as PyTorch names them.
pub fn param_shapes(kind: &LayerKind) -> Vec<(&'static str, Vec<usize>)> {
    match *kind {
        LayerKind::Conv1d { in_channels, out_channels, kernel, bias, .. } => {
            let mut v = vec![("weight", vec![out_channels, in_channels, kernel])];
            if bias {
                v.push(("bias", vec![out_channels]));
            }
            v
        }
        LayerKind::Conv2d { in_channels, out_channels, kernel, bias, .. } => {
            let mut v = vec![("weight", vec![out_channels, in_channels, kernel, kernel])];
            if bias {
                v.push(("bias", vec![out_channels]));
            }
            v
        }
        LayerKind::Linear { in_features, out_features, bias } => {
            let mut v = vec![("weight", vec![out_features, in_features])];
            if bias {
                v.push(("bias", vec![out_features]));
            }
            v
        }
        LayerKind::Prelu { channels } => vec![("weight", vec![channels])],
        LayerKind::BatchNorm { channels, .. } => vec![
            ("weight", vec![channels]),
            ("bias", vec![channels]),
            ("running_mean", vec![channels]),
            ("running_var", vec![channels]),
        ],
        _ => vec![],
    }
}

/// Fan-in of a parametric layer (for initialisation).
pub fn fan_in(kind: &LayerKind) -> usize {
    match *kind {
        LayerKind::Conv1d { in_channels, kernel, .. } => in_channels * kernel,
        LayerKind::Conv2d { in_channels, kernel, .. } => in_channels * kernel * kernel,
        LayerKind::Linear { in_features, .. } => in_features,
        _ => 1,
    }
}

/// Seeded PyTorch-style initial parameters (Kaiming-uniform weights with a=√5, i.e.
/// U(±1/√fan_in), for weights and biases; PReLU 0.25; BatchNorm identity).
pub fn init_params(specs: &[LayerSpec], seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for spec in specs {
        for (pname, shape) in param_shapes(&spec.kind) {
            let n: usize = shape.iter().product();
            let bound = 1.0 / (fan_in(&spec.kind) as f32).sqrt();
            let data: Vec<f32> = match (&spec.kind, pname) {
                (LayerKind::Prelu { .. }, _) => vec![0.25; n],
                (LayerKind::BatchNorm { .. }, "weight" | "running_var") => vec![1.0; n],
                (LayerKind::BatchNorm { .. }, _) => vec![0.0; n],
                _ => (0..n).map(|_| rng.gen_range(-bound..bound)).collect(),
            };
            out.insert(format!("{}.{pname}", spec.name), Tensor::from_vec(data, shape, device)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn vb_from(map: HashMap<String, Tensor>) -> VarBuilder<'static> {
        VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
    }

    /// The plain forward fuses conv → ReLU (→ max-pool) blocks; every way of seeing
    /// an intermediate map (all taps, a named tap, a stop, a second consumer) turns
    /// the fusion off there, and the values stay bit for bit those of the layers.
    #[test]
    fn fused_conv_blocks_keep_values_taps_and_stops() {
        let conv = |c, o| LayerKind::Conv2d { in_channels: c, out_channels: o, kernel: 3, stride: 1, padding: 1, bias: true };
        let specs = vec![
            LayerSpec::new("c1", conv(1, 4)),
            LayerSpec::new("r1", LayerKind::Relu),
            LayerSpec::new("p1", LayerKind::MaxPool2d { kernel: 2, stride: 2 }),
            LayerSpec::new("c2", conv(4, 3)),
            LayerSpec::new("r2", LayerKind::Relu),
            LayerSpec::new("c3", conv(3, 3)),
            LayerSpec::new("r3", LayerKind::Relu),
            LayerSpec::new("res", LayerKind::Add).with_inputs(&["c3", "r3"]),
            LayerSpec::new("flat", LayerKind::Flatten),
            LayerSpec::new("fc", LayerKind::Linear { in_features: 48, out_features: 2, bias: true }),
        ];
        let net = Network::from_spec(&specs, vb_from(init_params(&specs, 3, &Device::Cpu).unwrap())).unwrap();
        let x = Tensor::rand(-1f32, 1., (3, 1, 8, 8), &Device::Cpu).unwrap();
        let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let all = net.forward_with(&x, &ForwardOptions { taps: Taps::All, ..Default::default() }).unwrap();
        assert_eq!(bits(&net.forward(&x).unwrap()), bits(&all.output));
        for (tap, stop) in [("p1", None), ("r1", None), ("c1", None), ("r2", Some("r2")), ("p1", Some("p1")), ("c3", None), ("r3", None)] {
            let opts = ForwardOptions { taps: Taps::Names(vec![tap.into()]), stop_after: stop.map(String::from), ..Default::default() };
            let f = net.forward_with(&x, &opts).unwrap();
            assert_eq!(bits(f.tap(tap).unwrap()), bits(all.tap(tap).unwrap()), "tap {tap}");
            assert_eq!(bits(&f.output), bits(all.tap(stop.unwrap_or("fc")).unwrap()), "stop {stop:?}");
        }
    }

    #[test]
    fn residual_graph_and_taps() {
        let specs = vec![
            LayerSpec::new("fc", LayerKind::Linear { in_features: 2, out_features: 2, bias: true }),
            LayerSpec::new("act", LayerKind::Relu),
            LayerSpec::new("sum", LayerKind::Add).with_inputs(&["input", "act"]),
        ];
        let mut m = HashMap::new();
        m.insert("fc.weight".into(), Tensor::new(&[[1f32, 0.], [0., -1.]], &Device::Cpu).unwrap());
        m.insert("fc.bias".into(), Tensor::new(&[0.5f32, 0.5], &Device::Cpu).unwrap());
        let net = Network::from_spec(&specs, vb_from(m)).unwrap();
        let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu).unwrap();
        let opts = ForwardOptions { taps: Taps::Names(vec!["fc".into()]), ..Default::default() };
        let f = net.forward_with(&x, &opts).unwrap();
        // fc = [1.5, -1.5]; relu = [1.5, 0]; sum = x + relu = [2.5, 2]
        assert_eq!(f.output.to_vec2::<f32>().unwrap(), vec![vec![2.5, 2.0]]);
        assert_eq!(f.tap("fc").unwrap().to_vec2::<f32>().unwrap(), vec![vec![1.5, -1.5]]);
        assert!(f.tap("nope").is_err());
    }

    #[test]
    fn wrong_weight_shape_names_the_parameter() {
        let specs = vec![LayerSpec::new("fc", LayerKind::Linear { in_features: 3, out_features: 2, bias: true })];
        let mut m = HashMap::new();
        m.insert("fc.weight".into(), Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap());
        m.insert("fc.bias".into(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap());
        let e = Network::from_spec(&specs, vb_from(m)).unwrap_err().to_string();
        assert!(e.contains("fc.weight"), "{e}");
    }

    /// Conv1d gradients of a batch equal those of each row alone (candle 0.11's own
    /// conv1d backward fails this for batches > 1).
    #[test]
    fn conv1d_gradients_are_per_row() {
        use candle_core::Var;
        use rand::{Rng, SeedableRng};
        let d = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut r = |n: usize| (0..n).map(|_| rng.gen_range(-1f32..1.)).collect::<Vec<_>>();
        let node = Node {
            name: "c".into(),
            kind: LayerKind::Conv1d { in_channels: 4, out_channels: 2, kernel: 5, stride: 2, padding: 1, bias: true },
            weight: Some(Var::from_vec(r(40), (2, 4, 5), &d).unwrap().as_tensor().clone()),
            bias: Some(Tensor::from_vec(r(2), 2, &d).unwrap()),
            running_mean: None,
            running_var: None,
            inputs: vec![0],
        };
        let w = node.weight.clone().unwrap();
        let x = Var::from_vec(r(3 * 4 * 12), (3, 4, 12), &d).unwrap();
        let c = Tensor::from_vec(r(3 * 2 * 5), (3, 2, 5), &d).unwrap();
        let y = node.forward(&[x.as_tensor()]).unwrap();
        assert_eq!(y.dims(), &[3, 2, 5]);
        let g = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let (gx, gw) = (g.get(x.as_tensor()).unwrap(), g.get(&w).unwrap());
        let mut gw_rows = w.zeros_like().unwrap();
        for b in 0..3 {
            let xb = Var::from_tensor(&x.as_tensor().narrow(0, b, 1).unwrap()).unwrap();
            let yb = node.forward(&[xb.as_tensor()]).unwrap();
            let gb = (yb * c.narrow(0, b, 1).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
            let d = (gx.narrow(0, b, 1).unwrap() - gb.get(xb.as_tensor()).unwrap()).unwrap();
            assert!(d.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5, "input gradient of row {b}");
            gw_rows = (gw_rows + gb.get(&w).unwrap()).unwrap();
        }
        let d = (gw - gw_rows).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "weight gradient off by {d}");
        // The value is the plain 1-D convolution: row 0, output 0, channel 0 by hand.
        let (xv, wv) = (x.as_tensor().to_vec3::<f32>().unwrap(), w.to_vec3::<f32>().unwrap());
        let mut v = node.bias.as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
        for ci in 0..4 {
            for k in 1..5 {
                v += wv[0][ci][k] * xv[0][ci][k - 1]; // position -1 is padding
            }
        }
        let y = node.forward(&[x.as_tensor()]).unwrap().to_vec3::<f32>().unwrap();
        assert!((y[0][0][0] - v).abs() < 1e-5, "{} vs {v}", y[0][0][0]);
    }

    #[test]
    fn prelu_batchnorm_and_pools() {
        let d = Device::Cpu;
        let node = |kind: LayerKind| Node {
            name: "n".into(),
            kind,
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            inputs: vec![0],
        };
        let mut p = node(LayerKind::Prelu { channels: 2 });
        p.weight = Some(Tensor::new(&[0.5f32, 0.1], &d).unwrap());
        let x = Tensor::new(&[[-2f32, -10.], [3., 4.]], &d).unwrap().reshape((1, 2, 2)).unwrap();
        let y = p.forward(&[&x]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![-1.0, -5.0, 3.0, 4.0]);
        let mp = node(LayerKind::MaxPool1d { kernel: 2, stride: 2 });
        let y = mp.forward(&[&x]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![-2.0, 4.0]);
        let mut bn = node(LayerKind::BatchNorm { channels: 2, eps: 0.0 });
        bn.weight = Some(Tensor::new(&[2f32, 1.], &d).unwrap());
        bn.bias = Some(Tensor::new(&[1f32, 0.], &d).unwrap());
        bn.running_mean = Some(Tensor::new(&[1f32, 0.], &d).unwrap());
        bn.running_var = Some(Tensor::new(&[4f32, 1.], &d).unwrap());
        let y = bn.forward(&[&x]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // channel 0: (x-1)/2*2+1 = x ; channel 1: x
        assert_eq!(y, vec![-2.0, -10.0, 3.0, 4.0]);
    }
}
