//! lumen's model zoo: the shipped MNIST classifiers (architectures, cards, weights),
//! registered as ordinary pack items.

pub mod adapter;
pub mod arch;
pub mod train;

pub use adapter::ModuleClassifier;
pub use train::{recipe, train, Dataset, TrainConfig, TrainReport, Trained};

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

use lumen_core::{Classifier, Error, Result};
use lumen_core::candle::Device;
use std::path::PathBuf;
use std::sync::Arc;

/// Where shipped weights and cards live: `$LUMEN_MODELS_DIR`, then `models/` next to
/// the binary, then `../share/lumen/models` (the relocatable `dist` layout), then this
/// crate's `weights/` (a build run from the source tree). An installed layout never
/// falls back to the source tree it was built from.
pub fn models_dirs() -> Vec<PathBuf> {
    let mut v = vec![];
    if let Ok(d) = std::env::var("LUMEN_MODELS_DIR") {
        v.extend(std::env::split_paths(&d));
    }
    let mut installed = false;
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(|p| p.to_path_buf())) {
        v.push(exe_dir.join("models"));
        if let Some(prefix) = exe_dir.parent() {
            let share = prefix.join("share").join("lumen").join("models");
            installed = share.is_dir();
            v.push(share);
        }
    }
    if !installed {
        v.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/weights")));
    }
    v
}

/// This crate's `weights/` directory in the source tree, where `lumen train` writes
/// by default.
pub fn source_weights_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/weights"))
}

/// Path of the card `NAME.toml` in the first models directory that has it.
pub fn card_path(name: &str) -> Result<PathBuf> {
    let dirs = models_dirs();
    dirs.iter().map(|d| d.join(format!("{name}.toml"))).find(|p| p.exists()).ok_or_else(|| {
        Error::Data(format!(
            "no model card '{name}.toml' in {}; set LUMEN_MODELS_DIR or train it with `lumen train --model {name}`",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Loads a shipped model by name.
pub fn load_shipped(name: &str, device: &Device) -> Result<Arc<dyn Classifier>> {
    // Guarded as a card: a panic in its layers blames the card, not this pack.
    lumen_core::model::load_card_model(card_path(name)?, device)
}

lumen_core::submit_model!("mnist-cnn", "MNIST CNN: two 5×5 conv blocks, fc 3136→128→10", |d| load_shipped(
    "mnist-cnn",
    d
));
lumen_core::submit_model!(
    "mnist-allcnn",
    "MNIST all-convolutional net with one 1×1 class kernel per digit (CLEAR)",
    |d| load_shipped("mnist-allcnn", d)
);
lumen_core::submit_model!(
    "mnist-cnn-noise",
    "mnist-cnn trained with Gaussian input noise (SmoothGrad §4.2)",
    |d| load_shipped("mnist-cnn-noise", d)
);
lumen_core::submit_model!(
    "mnist-cnn-biased",
    "mnist-cnn trained on biased MNIST (a grey square on every training 8; CDeepEx Fig. 6)",
    |d| load_shipped("mnist-cnn-biased", d)
);
