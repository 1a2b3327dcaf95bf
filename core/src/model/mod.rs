//! Models: the [`Classifier`] trait that every method can use, and the explainable
//! [`Network`] that rule-based methods need.

pub mod card;
pub mod network;
pub mod pool;
pub mod spec;

pub use card::{ModelCard, Normalization};
pub use network::{Forward, ForwardOptions, Network, Node, Taps, INPUT};
pub use spec::{LayerKind, LayerSpec};

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// What a host needs to know about a classifier.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    /// Input shape without the batch dimension.
    pub input_shape: Vec<usize>,
    pub labels: Vec<String>,
    pub input_range: (f32, f32),
    pub card: Option<ModelCard>,
}

impl ModelInfo {
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Checks that `xs` is `[B, ...input_shape]`.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let dims = xs.dims();
        if dims.len() != self.input_shape.len() + 1 || dims[1..] != self.input_shape[..] {
            return Err(Error::shape(
                format!("[batch, {}] for model '{}'", join(&self.input_shape), self.name),
                format!("{dims:?}"),
            ));
        }
        Ok(())
    }
}

fn join(v: &[usize]) -> String {
    v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// Anything that maps a batch of inputs to a batch of logits `[B, K]`.
///
/// Gradient and perturbation methods need only this. Rule-based methods also need
/// [`Classifier::forward_with`] to honour rules and taps, which explainable models do.
pub trait Classifier: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn device(&self) -> &Device;
    /// Logits for a batch.
    fn forward(&self, xs: &Tensor) -> Result<Tensor>;

    /// The explainable network, for methods that inspect its structure.
    fn network(&self) -> Option<&Network> {
        None
    }

    /// Forward pass with rules and taps. Black-box models support only the plain pass.
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        if opts.composite.is_some() || !matches!(opts.taps, Taps::None) || opts.stop_after.is_some() {
            return Err(Error::unsupported(
                "rule-based or layer method",
                format!("model '{}' is not built from the explainable layer vocabulary", self.info().name),
            ));
        }
        Ok(Forward { output: self.forward(xs)?, taps: Default::default() })
    }
}

/// A classifier built from a [`Network`], with optional input normalisation.
#[derive(Debug, Clone)]
pub struct NetworkModel {
    info: ModelInfo,
    network: Network,
    device: Device,
    norm: Option<(Tensor, Tensor)>,
}

impl NetworkModel {
    pub fn new(info: ModelInfo, network: Network, device: &Device) -> Result<Self> {
        let norm = match info.card.as_ref().and_then(|c| c.normalization.clone()) {
            Some(n) => {
                let c = n.mean.len();
                let mut shape = vec![1, c];
                shape.resize(info.input_shape.len() + 1, 1);
                Some((
                    Tensor::from_vec(n.mean, shape.clone(), device)?,
                    Tensor::from_vec(n.std, shape, device)?,
                ))
            }
            None => None,
        };
        Ok(NetworkModel { info, network, device: device.clone(), norm })
    }

    /// Loads a model from its card and the safetensors weights it names.
    pub fn load(card_path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let card_path = card_path.as_ref();
        let card = ModelCard::load(card_path)?;
        let wpath = card.weights_path(card_path);
        Self::from_card_and_weights(card, &wpath, device)
    }

    pub fn from_card_and_weights(card: ModelCard, weights: &Path, device: &Device) -> Result<Self> {
        let tensors = load_safetensors(weights, device)?;
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
        let network = Network::from_spec(&card.layers, vb).map_err(|e| match e {
            Error::Weights { reason, .. } => Error::Weights { path: weights.into(), reason },
            other => other,
        })?;
        let info = ModelInfo {
            name: card.name.clone(),
            input_shape: card.input_shape.clone(),
            labels: card.labels.clone(),
            input_range: (card.input_range[0], card.input_range[1]),
            card: Some(card),
        };
        Self::new(info, network, device)
    }

    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    fn normalize(&self, xs: &Tensor) -> Result<Tensor> {
        self.info.check_input(xs)?;
        Ok(match &self.norm {
            Some((m, s)) => xs.broadcast_sub(m)?.broadcast_div(s)?,
            None => xs.clone(),
        })
    }
}

impl Classifier for NetworkModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.network.forward(&self.normalize(xs)?)
    }
    fn network(&self) -> Option<&Network> {
        Some(&self.network)
    }
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        self.network.forward_with(&self.normalize(xs)?, opts)
    }
}

/// Reads a safetensors file, turning truncation and corruption into a clear error.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<std::collections::HashMap<String, Tensor>> {
    let path = &crate::paths::check_read(path)?;
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "file not found")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Weights {
        path: path.into(),
        reason: format!("not a valid safetensors file ({e})"),
    })?;
    tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
        .collect()
}
