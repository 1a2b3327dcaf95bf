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

    /// Checks the card before any weight is read: the normalisation and input range
    /// are finite and ordered, the shapes propagate through the layers, and the
    /// output has one value per label.
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
        let [lo, hi] = self.input_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(format!("input_range must be two finite numbers, low < high, got [{lo}, {hi}]"));
        }
        if let Some(n) = &self.normalization {
            let c = self.input_shape[0];
            if n.mean.len() != c || n.std.len() != c {
                return Err(format!("normalization needs {c} means and {c} stds"));
            }
            if let Some(m) = n.mean.iter().find(|m| !m.is_finite()) {
                return Err(format!("normalization mean {m} is not finite"));
            }
            if let Some(s) = n.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(format!("normalization std {s} is not a finite positive number"));
            }
        }
        let out = super::spec::infer_shapes(&self.input_shape, &self.layers)?;
        if out != [self.labels.len()] {
            return Err(format!(
                "the layers output shape {out:?}, but the card has {} labels (expected [{}])",
                self.labels.len(),
                self.labels.len()
            ));
        }
        Ok(())
    }
}

/// The largest weights file a card may name (checked before reading): 4 GiB.
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// Directories besides a card's own that may hold the weights it names: those added
/// with [`allow_weights_dir`] (the CLI's `--weights-dir`) and those listed in
/// `LUMEN_WEIGHTS_DIRS` (a path list).
static WEIGHTS_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Lets cards name weights under `dir` (and its subdirectories).
pub fn allow_weights_dir(dir: impl Into<PathBuf>) {
    WEIGHTS_DIRS.lock().unwrap_or_else(|p| p.into_inner()).push(dir.into());
}

fn weights_dirs(card_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![card_dir.to_path_buf()];
    v.extend(WEIGHTS_DIRS.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
    if let Some(d) = std::env::var_os("LUMEN_WEIGHTS_DIRS") {
        v.extend(std::env::split_paths(&d).filter(|p| !p.as_os_str().is_empty()));
    }
    v
}

impl ModelCard {
    /// The weights path, checked: a regular file (symlinks resolved) inside the
    /// card's directory or an allowed weights directory, of at most
    /// [`MAX_WEIGHTS_BYTES`].
    pub fn checked_weights_path(&self, card_path: &Path) -> Result<PathBuf> {
        let card_err = |reason: String| Error::Card { path: card_path.into(), reason };
        let wpath = self.weights_path(card_path);
        if !wpath.exists() {
            return Err(Error::io(&wpath, std::io::Error::new(std::io::ErrorKind::NotFound, "file not found")));
        }
        let real = std::fs::canonicalize(&wpath).map_err(|e| Error::io(&wpath, e))?;
        let card_dir = card_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let inside = weights_dirs(card_dir)
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .any(|d| real.starts_with(d));
        if !inside {
            return Err(card_err(format!(
                "weights '{}' resolve to {}, outside the card's directory (allow a directory with --weights-dir or LUMEN_WEIGHTS_DIRS)",
                self.weights,
                real.display()
            )));
        }
        let meta = std::fs::metadata(&real).map_err(|e| Error::io(&real, e))?;
        if !meta.is_file() {
            return Err(card_err(format!("weights '{}' are not a regular file", self.weights)));
        }
        if meta.len() > MAX_WEIGHTS_BYTES {
            return Err(card_err(format!(
                "weights '{}' are {} bytes, more than the limit of {MAX_WEIGHTS_BYTES}",
                self.weights,
                meta.len()
            )));
        }
        Ok(wpath)
    }
}
