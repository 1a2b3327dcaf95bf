//! Generative models for contrastive explanations (CDeepEx, xGEMs). Each shipped
//! generator registers itself with `inventory`; weights and cards live with the
//! classifiers in `models/weights/`.

pub mod card;
pub mod train;
pub mod vae;

pub use card::GeneratorCard;
pub use vae::{Vae, VaeGenerator};

use lumen_core::candle::Device;
use lumen_core::generator::Generator;
use lumen_core::Result;
use std::sync::Arc;

/// Loads a shipped VAE generator by card name.
pub fn load_vae(name: &str, device: &Device) -> Result<Arc<dyn Generator>> {
    let card_path = lumen_models::card_path(name)?;
    let card = GeneratorCard::load(&card_path)?;
    Ok(Arc::new(VaeGenerator::load(name, &card.weights_path(&card_path), device)?))
}

lumen_core::submit_generator!(
    "mnist-vae",
    "convolutional VAE trained on the MNIST-5k train split (decoder = G, encoder starts inversion)",
    |d| load_vae("mnist-vae", d),
);

lumen_core::submit_generator!(
    "mnist-vae-biased",
    "convolutional VAE trained on biased MNIST (grey square on every training 8), for the biased-8 experiment",
    |d| load_vae("mnist-vae-biased", d),
);

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();
