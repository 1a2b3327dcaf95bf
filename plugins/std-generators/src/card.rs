//! The generator card: the TOML file next to a generator's weights.

use lumen_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorCard {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Architecture family, e.g. `conv-vae`.
    pub architecture: String,
    pub latent_dim: usize,
    pub output_shape: Vec<usize>,
    /// Training data, e.g. `mnist-5k:train`.
    #[serde(default)]
    pub dataset: String,
    /// Weights file, relative to the card.
    pub weights: String,
    #[serde(default)]
    pub training: BTreeMap<String, toml::Value>,
    /// Measured figures (inversion MSE, classifier agreement, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl GeneratorCard {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = &lumen_core::paths::check_read(path.as_ref())?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let card: GeneratorCard =
            toml::from_str(&text).map_err(|e| Error::Card { path: path.into(), reason: e.to_string() })?;
        if card.latent_dim == 0 || card.output_shape.is_empty() {
            return Err(Error::Card { path: path.into(), reason: "latent_dim and output_shape must be set".into() });
        }
        Ok(card)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::msg(format!("card serialisation: {e}")))?;
        lumen_core::io::write_atomic(path, text.as_bytes())
    }

    pub fn weights_path(&self, card_path: &Path) -> PathBuf {
        card_path.parent().unwrap_or(Path::new(".")).join(&self.weights)
    }
}
