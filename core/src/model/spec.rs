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

#[cfg(test)]
mod tests {
    use super::*;
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
