//! Generative models, for contrastive explanations in a latent space.

use crate::Result;
use candle_core::{Device, Tensor};
use std::sync::{Arc, Mutex};

/// A decoder `G: z -> x`, optionally with an encoder that gives a starting latent.
pub trait Generator: Send + Sync {
    fn name(&self) -> &str;
    fn latent_dim(&self) -> usize;
    /// Output shape without the batch dimension.
    fn output_shape(&self) -> &[usize];
    /// `[B, latent_dim] -> [B, ...output_shape]`, differentiable in `z`.
    fn generate(&self, z: &Tensor) -> Result<Tensor>;
    /// An encoder's latent for `x`, when the model has one.
    fn encode(&self, _x: &Tensor) -> Option<Result<Tensor>> {
        None
    }
}

type Load = dyn Fn(&Device) -> Result<Arc<dyn Generator>> + Send + Sync;

/// A generator named when a config is parsed and loaded on first use (the device
/// is the model's, known only then); later uses share the loaded one.
#[derive(Clone)]
pub struct GeneratorRef {
    name: String,
    load: Arc<Load>,
    loaded: Arc<Mutex<Option<Arc<dyn Generator>>>>,
}

impl GeneratorRef {
    pub fn new(name: &str, load: impl Fn(&Device) -> Result<Arc<dyn Generator>> + Send + Sync + 'static) -> Self {
        GeneratorRef { name: name.to_string(), load: Arc::new(load), loaded: Arc::default() }
    }
    /// An already loaded generator (library use and tests).
    pub fn given(gen: Arc<dyn Generator>) -> Self {
        let name = gen.name().to_string();
        let slot = Arc::new(Mutex::new(Some(gen.clone())));
        GeneratorRef { name, load: Arc::new(move |_: &Device| Ok(gen.clone())), loaded: slot }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The generator, loaded on `device` the first time.
    pub fn get(&self, device: &Device) -> Result<Arc<dyn Generator>> {
        let mut slot = self.loaded.lock().map_err(|_| crate::Error::msg("generator cache poisoned"))?;
        if let Some(g) = slot.as_ref() {
            return Ok(g.clone());
        }
        let g = (self.load)(device)?;
        *slot = Some(g.clone());
        Ok(g)
    }
}

impl std::fmt::Debug for GeneratorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneratorRef({})", self.name)
    }
}
