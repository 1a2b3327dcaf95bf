//! Model cards: the TOML file next to the weights that says what a model is, how it
//! was trained and how well it does.

use super::spec::LayerSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Per-channel input normalisation applied by the model before its first layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Architecture family, e.g. `mnist-cnn`.
    #[serde(default)]
    pub architecture: String,
    /// Input shape without the batch dimension, e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    /// Range of the raw inputs the model expects, before normalisation.
    #[serde(default = "unit_range")]
    pub input_range: [f32; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
    pub labels: Vec<String>,
    /// Weights file, relative to the card.
    pub weights: String,
    /// Number of training examples (N in PDA's Laplace correction).
    #[serde(default)]
    pub num_train: usize,
    /// The training recipe: free-form key/values (optimizer, epochs, seed, ...).
    #[serde(default)]
    pub training: BTreeMap<String, toml::Value>,
    /// Measured figures, e.g. `test_accuracy`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub layers: Vec<LayerSpec>,
}

fn unit_range() -> [f32; 2] {
    [0.0, 1.0]
}

impl ModelCard {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = &crate::paths::check_read(path.as_ref())?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let card: ModelCard =
            toml::from_str(&text).map_err(|e| Error::Card { path: path.into(), reason: e.to_string() })?;
        card.validate().map_err(|reason| Error::Card { path: path.into(), reason })?;
        Ok(card)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::msg(format!("card serialisation: {e}")))?;
        crate::io::write_atomic(path, text.as_bytes())
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// The weights path, resolved against the card's directory.
    pub fn weights_path(&self, card_path: &Path) -> PathBuf {
        card_path.parent().unwrap_or(Path::new(".")).join(&self.weights)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.input_shape.is_empty() {
            return Err("input_shape is empty".into());
        }
        if self.labels.is_empty() {
            return Err("labels is empty".into());
        }
        if self.layers.is_empty() {
            return Err("no layers".into());
        }
        if let Some(n) = &self.normalization {
            let c = self.input_shape[0];
            if n.mean.len() != c || n.std.len() != c || n.std.iter().any(|s| *s <= 0.0) {
                return Err(format!("normalization needs {c} means and {c} positive stds"));
            }
        }
        Ok(())
    }
}
