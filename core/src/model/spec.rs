//! Serializable architecture descriptions. A model card's `[[layers]]` list is a
//! `Vec<LayerSpec>`; `Network::from_spec` turns it into a runnable network.

use serde::{Deserialize, Serialize};

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_eps() -> f64 {
    1e-5
}

/// The explainable layer vocabulary.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayerKind {
    Conv1d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Linear {
        in_features: usize,
        out_features: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Relu,
    /// PReLU with one slope per channel (dim 1), PyTorch's `weight`.
    Prelu { channels: usize },
    Sigmoid,
    Tanh,
    /// Max pooling over the last dim of a `[B, C, L]` tensor.
    MaxPool1d { kernel: usize, stride: usize },
    MaxPool2d { kernel: usize, stride: usize },
    AvgPool2d { kernel: usize, stride: usize },
    /// Mean over all spatial positions: `[B, C, ...] -> [B, C]`.
    GlobalAvgPool,
    Flatten,
    /// Batch normalisation in inference mode (running statistics).
    BatchNorm {
        channels: usize,
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    Softmax,
    /// Element-wise sum of the node's inputs (residual connections).
    Add,
    /// Element-wise product of exactly two inputs (gating).
    Mul,
}

impl LayerKind {
    /// Short snake_case name, as used in specs and rule maps.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Conv1d { .. } => "conv1d",
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::Linear { .. } => "linear",
            LayerKind::Relu => "relu",
            LayerKind::Prelu { .. } => "prelu",
            LayerKind::Sigmoid => "sigmoid",
            LayerKind::Tanh => "tanh",
            LayerKind::MaxPool1d { .. } => "max_pool1d",
            LayerKind::MaxPool2d { .. } => "max_pool2d",
            LayerKind::AvgPool2d { .. } => "avg_pool2d",
            LayerKind::GlobalAvgPool => "global_avg_pool",
            LayerKind::Flatten => "flatten",
            LayerKind::BatchNorm { .. } => "batch_norm",
            LayerKind::Softmax => "softmax",
            LayerKind::Add => "add",
            LayerKind::Mul => "mul",
        }
    }

    /// Layers with weights that compute an affine map of their input.
    pub fn is_affine_param(&self) -> bool {
        matches!(self, LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. } | LayerKind::Linear { .. })
    }

    /// Element-wise activation functions.
    pub fn is_activation(&self) -> bool {
        matches!(self, LayerKind::Relu | LayerKind::Prelu { .. } | LayerKind::Sigmoid | LayerKind::Tanh)
    }
}

/// One named layer. `inputs` names earlier layers (or `input`); empty means the
/// previous layer, so plain sequential nets need no wiring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: LayerKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

impl LayerSpec {
    pub fn new(name: impl Into<String>, kind: LayerKind) -> Self {
        LayerSpec { name: name.into(), kind, inputs: vec![] }
    }
    pub fn with_inputs(mut self, inputs: &[&str]) -> Self {
        self.inputs = inputs.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// The largest number of elements of one activation or weight tensor a card may
/// declare (per example): 2³¹.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Propagates `input` (without the batch dimension) through the layers, checking
/// each layer's arguments and wiring without reading a weight. Returns the output
/// shape; the error names the layer.
pub fn infer_shapes(input: &[usize], layers: &[LayerSpec]) -> Result<Vec<usize>, String> {
    check_size(input).map_err(|e| format!("input_shape {input:?}: {e}"))?;
    let mut shapes: Vec<(&str, Vec<usize>)> = vec![(super::network::INPUT, input.to_vec())];
    for (i, spec) in layers.iter().enumerate() {
        let name = spec.name.as_str();
        let at = |e: String| format!("layer '{name}' ({}): {e}", spec.kind.type_name());
        if shapes.iter().any(|(n, _)| *n == name) {
            return Err(format!("layer name '{name}' is used twice"));
        }
        let ins: Vec<&[usize]> = if spec.inputs.is_empty() {
            vec![shapes[i].1.as_slice()]
        } else {
            spec.inputs
                .iter()
                .map(|n| {
                    shapes.iter().find(|(s, _)| *s == n.as_str()).map(|(_, sh)| sh.as_slice()).ok_or_else(|| {
                        format!("layer '{name}' reads '{n}', which is not an earlier layer")
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let out = layer_output(&spec.kind, &ins).map_err(at)?;
        check_size(&out).map_err(|e| at(format!("output {out:?}: {e}")))?;
        for (p, shape) in super::network::param_shapes(&spec.kind) {
            check_size(&shape).map_err(|e| at(format!("{p} {shape:?}: {e}")))?;
        }
        shapes.push((name, out));
    }
    Ok(shapes.pop().map(|(_, s)| s).unwrap_or_default())
}

fn check_size(shape: &[usize]) -> Result<(), String> {
    if shape.contains(&0) {
        return Err("has a zero dimension".into());
    }
    match shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(format!("more than {MAX_ELEMENTS} elements")),
    }
}

/// Output length of a window `kernel` sliding by `stride` over `len` (+ padding).
fn windowed(len: usize, kernel: usize, stride: usize, padding: usize, axis: &str) -> Result<usize, String> {
    if kernel == 0 || stride == 0 {
        return Err(format!("kernel and stride must be ≥ 1, got kernel {kernel}, stride {stride}"));
    }
    let padded = len.checked_add(padding.checked_mul(2).ok_or("padding is too large")?).ok_or("padding is too large")?;
    if kernel > padded {
        return Err(format!("kernel {kernel} (padding {padding}) does not fit its input {axis} of {len}"));
    }
    Ok((padded - kernel) / stride + 1)
}

fn layer_output(kind: &LayerKind, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
    let x = ins[0];
    let rank = |r: usize, what: &str| -> Result<(), String> {
        if x.len() != r {
            return Err(format!("expects {what} input, got shape {x:?}"));
        }
        Ok(())
    };
    let channels = |want: usize, what: &str| -> Result<(), String> {
        if x.first() != Some(&want) {
            return Err(format!("{what} is {want}, but its input has shape {x:?}"));
        }
        Ok(())
    };
    if !matches!(kind, LayerKind::Add | LayerKind::Mul) && ins.len() != 1 {
        return Err(format!("takes one input, got {}", ins.len()));
    }
    Ok(match *kind {
        LayerKind::Conv1d { in_channels, out_channels, kernel, stride, padding, .. } => {
            rank(2, "a [C, L]")?;
            channels(in_channels, "in_channels")?;
            if out_channels == 0 {
                return Err("out_channels must be ≥ 1".into());
            }
            vec![out_channels, windowed(x[1], kernel, stride, padding, "length")?]
        }
        LayerKind::Conv2d { in_channels, out_channels, kernel, stride, padding, .. } => {
            rank(3, "a [C, H, W]")?;
            channels(in_channels, "in_channels")?;
            if out_channels == 0 {
                return Err("out_channels must be ≥ 1".into());
            }
            let h = windowed(x[1], kernel, stride, padding, "height")?;
            vec![out_channels, h, windowed(x[2], kernel, stride, padding, "width")?]
        }
        LayerKind::Linear { in_features, out_features, .. } => {
            rank(1, "a flat [F]")?;
            channels(in_features, "in_features")?;
            if out_features == 0 {
                return Err("out_features must be ≥ 1".into());
            }
            vec![out_features]
        }
        LayerKind::Relu | LayerKind::Sigmoid | LayerKind::Tanh | LayerKind::Softmax => x.to_vec(),
        LayerKind::Prelu { channels: c } => {
            channels(c, "channels")?;
            x.to_vec()
        }
        LayerKind::BatchNorm { channels: c, eps } => {
            channels(c, "channels")?;
            if !(eps.is_finite() && eps > 0.0) {
                return Err(format!("eps must be finite and > 0, got {eps}"));
            }
            x.to_vec()
        }
        LayerKind::MaxPool1d { kernel, stride } => {
            rank(2, "a [C, L]")?;
            vec![x[0], windowed(x[1], kernel, stride, 0, "length")?]
        }
        LayerKind::MaxPool2d { kernel, stride } | LayerKind::AvgPool2d { kernel, stride } => {
            rank(3, "a [C, H, W]")?;
            let h = windowed(x[1], kernel, stride, 0, "height")?;
            vec![x[0], h, windowed(x[2], kernel, stride, 0, "width")?]
        }
        LayerKind::GlobalAvgPool => {
            if x.len() < 2 {
                return Err(format!("expects a [C, ...] input with spatial dims, got shape {x:?}"));
            }
            vec![x[0]]
        }
        LayerKind::Flatten => vec![x.iter().product()],
        LayerKind::Add | LayerKind::Mul => {
            if matches!(kind, LayerKind::Mul) && ins.len() != 2 {
                return Err(format!("needs exactly two inputs, got {}", ins.len()));
            }
            if let Some(other) = ins.iter().find(|s| *s != &x) {
                return Err(format!("its inputs have different shapes: {x:?} and {other:?}"));
            }
            x.to_vec()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(kernel: usize, stride: usize, padding: usize) -> LayerKind {
        LayerKind::Conv2d { in_channels: 1, out_channels: 4, kernel, stride, padding, bias: true }
    }

    #[test]
    fn shapes_propagate_and_bad_layers_are_named() {
        let net = |k: LayerKind| {
            vec![
                LayerSpec::new("c1", k),
                LayerSpec::new("p1", LayerKind::MaxPool2d { kernel: 2, stride: 2 }),
                LayerSpec::new("flat", LayerKind::Flatten),
            ]
        };
        assert_eq!(infer_shapes(&[1, 28, 28], &net(conv(5, 1, 2))).unwrap(), vec![4 * 14 * 14]);
        assert_eq!(infer_shapes(&[1, 28, 28], &net(conv(3, 2, 0))).unwrap(), vec![4 * 6 * 6]);
        let err = |k: LayerKind| infer_shapes(&[1, 28, 28], &net(k)).unwrap_err();
        let e = err(conv(5, 0, 0));
        assert!(e.contains("layer 'c1' (conv2d)") && e.contains("stride"), "{e}");
        let e = err(conv(40, 1, 0));
        assert!(e.contains("'c1'") && e.contains("kernel 40") && e.contains("28"), "{e}");
        assert!(infer_shapes(&[1, 28, 28], &net(conv(40, 1, 7))).is_ok(), "padding makes it fit");
        let e = err(LayerKind::Conv2d { in_channels: 3, out_channels: 4, kernel: 3, stride: 1, padding: 0, bias: true });
        assert!(e.contains("in_channels is 3"), "{e}");
        let mut bad_pool = net(conv(5, 1, 2));
        bad_pool[1].kind = LayerKind::AvgPool2d { kernel: 2, stride: 0 };
        let e = infer_shapes(&[1, 28, 28], &bad_pool).unwrap_err();
        assert!(e.contains("layer 'p1' (avg_pool2d)") && e.contains("stride"), "{e}");
        let e = infer_shapes(&[1, 1 << 20, 1 << 20], &[]).unwrap_err();
        assert!(e.contains("elements"), "{e}");
        let fc = [LayerSpec::new("fc", LayerKind::Linear { in_features: 785, out_features: 10, bias: true })];
        let e = infer_shapes(&[784], &fc).unwrap_err();
        assert!(e.contains("'fc'") && e.contains("in_features is 785"), "{e}");
        let wired = [
            LayerSpec::new("a", LayerKind::Relu),
            LayerSpec::new("s", LayerKind::Add).with_inputs(&["input", "nope"]),
        ];
        assert!(infer_shapes(&[3], &wired).unwrap_err().contains("'nope'"));
    }

    #[derive(Serialize, Deserialize)]
    struct Wrap {
        layers: Vec<LayerSpec>,
    }
    #[test]
    fn toml_round_trip() {
        let w = Wrap {
            layers: vec![
                LayerSpec::new(
                    "conv1",
                    LayerKind::Conv2d { in_channels: 1, out_channels: 2, kernel: 3, stride: 1, padding: 1, bias: true },
                ),
                LayerSpec::new("relu1", LayerKind::Relu),
                LayerSpec::new("sum", LayerKind::Add).with_inputs(&["conv1", "relu1"]),
            ],
        };
        let s = toml::to_string(&w).unwrap();
        let back: Wrap = toml::from_str(&s).unwrap();
        assert_eq!(back.layers, w.layers);
        let short: Wrap = toml::from_str("[[layers]]\nname='fc'\nkind='linear'\nin_features=3\nout_features=2\n").unwrap();
        assert_eq!(short.layers[0].kind, LayerKind::Linear { in_features: 3, out_features: 2, bias: true });
    }
}
