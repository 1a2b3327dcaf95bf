//! Models: the [`Classifier`] trait that every method can use, and the explainable
//! [`Network`] that rule-based methods need.

pub mod card;
pub mod network;
pub mod pool;
pub mod reverse;
pub mod rule;
pub mod spec;

pub use card::{ModelCard, Normalization};
pub use network::{Forward, ForwardOptions, Network, Node, Taps, INPUT};
pub use reverse::{with_autograd, Reverse};
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

    /// The output and the input gradient of `Σ seed ⊙ output` (`seed` of the
    /// output's shape) by the model's own reverse pass, or `None` where it has none
    /// for these options; [`crate::method::gradient`] then uses candle's autograd
    /// through [`Classifier::forward_with`]. Both must agree. Under a reference split
    /// only the inputs' rows carry a gradient ([`Network::reverse`]).
    fn input_gradient(&self, xs: &Tensor, seed: &Tensor, opts: &ForwardOptions) -> Result<Option<Reverse>> {
        let _ = (xs, seed, opts);
        Ok(None)
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

    /// Loads a model from its card and the safetensors weights it names. The card is
    /// validated (shapes through every layer) before the weights are read, and the
    /// weights must be a regular file inside the card's directory or an allowed one
    /// (see [`card::allow_weights_dir`]).
    pub fn load(card_path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let card_path = card_path.as_ref();
        let card = ModelCard::load(card_path)?;
        let wpath = card.checked_weights_path(card_path)?;
        Self::from_card_and_weights(card, &wpath, device)
    }

    /// Builds the model from a card and the weights at `weights`; a weight with a
    /// NaN or infinite value is an error that names it.
    pub fn from_card_and_weights(card: ModelCard, weights: &Path, device: &Device) -> Result<Self> {
        let tensors = load_safetensors(weights, device)?;
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for name in names {
            if !all_finite(&tensors[name])? {
                return Err(Error::Weights {
                    path: weights.into(),
                    reason: format!("tensor '{name}' has NaN or infinite values"),
                });
            }
        }
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
        let logits = self.network.forward(&self.normalize(xs)?)?;
        if !all_finite(&logits)? {
            return Err(Error::msg(format!(
                "model '{}': the logits are NaN or infinite for an input of shape {:?}",
                self.info.name,
                xs.dims()
            )));
        }
        Ok(logits)
    }
    fn network(&self) -> Option<&Network> {
        Some(&self.network)
    }
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        self.network.forward_with(&self.normalize(xs)?, opts)
    }
    fn input_gradient(&self, xs: &Tensor, seed: &Tensor, opts: &ForwardOptions) -> Result<Option<Reverse>> {
        let Some(r) = self.network.reverse(&self.normalize(xs)?, seed, opts)? else { return Ok(None) };
        // x ↦ (x − mean) / std: the chain rule divides by std.
        let grad = match &self.norm {
            Some((_, s)) => r.grad.broadcast_div(s)?,
            None => r.grad,
        };
        Ok(Some(Reverse { output: r.output, grad }))
    }
}

/// Whether every value of `t` is finite (`t − t` is 0 exactly then, NaN otherwise).
fn all_finite(t: &Tensor) -> Result<bool> {
    let t = t.detach();
    Ok((&t - &t)?.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? == 0.0)
}

/// Loads a model from a card ([`NetworkModel::load`]), with the load and every later
/// call under a panic guard that blames the card ([`Error::CardPanicked`]), as
/// registry models are guarded.
pub fn load_card_model(card_path: impl AsRef<Path>, device: &Device) -> Result<std::sync::Arc<dyn Classifier>> {
    let card = card_path.as_ref().to_path_buf();
    let blamed = card.clone();
    let inner = crate::guard::guard_with(
        move |message| Error::CardPanicked { card: blamed, message },
        || NetworkModel::load(&card, device),
    )?;
    Ok(std::sync::Arc::new(CardModel { inner, card }))
}

/// A card model whose calls run under `catch_unwind`.
struct CardModel {
    inner: NetworkModel,
    card: std::path::PathBuf,
}

impl CardModel {
    fn guard<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        crate::guard::guard_with(|message| Error::CardPanicked { card: self.card.clone(), message }, f)
    }
}

impl Classifier for CardModel {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.guard(|| self.inner.forward(xs))
    }
    fn network(&self) -> Option<&Network> {
        self.inner.network()
    }
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        self.guard(|| self.inner.forward_with(xs, opts))
    }
    fn input_gradient(&self, xs: &Tensor, seed: &Tensor, opts: &ForwardOptions) -> Result<Option<Reverse>> {
        self.guard(|| self.inner.input_gradient(xs, seed, opts))
    }
}

/// Reads a safetensors file, turning truncation and corruption into a clear error.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<std::collections::HashMap<String, Tensor>> {
    let path = &crate::paths::check_read(path)?;
    crate::data::check_regular_file(path, card::MAX_WEIGHTS_BYTES)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped card passes validation (shapes, labels, normalisation).
    #[test]
    fn shipped_cards_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/weights");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if p.extension().is_some_and(|x| x == "toml") && text.contains("[[layers]]") {
                ModelCard::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "{n} cards");
    }

    /// A panic in a card model's layers is reported against the card, and the model
    /// keeps working for the next call.
    #[test]
    fn card_model_panics_blame_the_card() {
        let d = Device::Cpu;
        let pool = |stride| Node {
            name: "p".into(),
            kind: LayerKind::MaxPool2d { kernel: 2, stride },
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            inputs: vec![0],
        };
        let info = ModelInfo {
            name: "hand".into(),
            input_shape: vec![1, 4, 4],
            labels: vec!["0".into()],
            input_range: (0.0, 1.0),
            card: None,
        };
        // Stride 0 is what validation refuses; built by hand it divides by zero in candle
        // (lumen's own kernel refuses it with an error, so candle's op is used here).
        let inner = NetworkModel::new(info, Network::from_nodes(vec![pool(0)]), &d).unwrap();
        let m = CardModel { inner, card: "cards/hand.toml".into() };
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &d).unwrap();
        let e = crate::kernels::with_candle_ops(|| m.forward(&x)).unwrap_err();
        assert!(matches!(e, Error::CardPanicked { .. }), "{e}");
        let e = e.to_string();
        assert!(e.starts_with("model card cards/hand.toml panicked: ") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn card_checks_labels_normalisation_and_range() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/weights/mnist-cnn.toml"))
            .unwrap();
        let base: ModelCard = toml::from_str(&text).unwrap();
        let check = |edit: &dyn Fn(&mut ModelCard)| {
            let mut c = base.clone();
            edit(&mut c);
            let p = std::env::temp_dir().join(format!("lumen-card-{}-{}.toml", std::process::id(), rand::random::<u32>()));
            c.save(&p).unwrap();
            let r = ModelCard::load(&p).map(|_| ()).map_err(|e| e.to_string());
            std::fs::remove_file(&p).unwrap();
            r
        };
        assert!(check(&|_| {}).is_ok());
        let e = check(&|c| c.labels.truncate(3)).unwrap_err();
        assert!(e.contains("3 labels") && e.contains("[10]"), "{e}");
        let e = check(&|c| c.input_range = [0.0, f32::INFINITY]).unwrap_err();
        assert!(e.contains("input_range"), "{e}");
        let e = check(&|c| c.normalization = Some(Normalization { mean: vec![0.0], std: vec![0.0] })).unwrap_err();
        assert!(e.contains("std 0"), "{e}");
        let e = check(&|c| c.normalization = Some(Normalization { mean: vec![f32::NAN], std: vec![1.0] })).unwrap_err();
        assert!(e.contains("mean NaN"), "{e}");
    }
}
