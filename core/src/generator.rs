//! Generative models, for contrastive explanations in a latent space.

use crate::Result;
use candle_core::Tensor;

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
