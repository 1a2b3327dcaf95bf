//! Patch samplers, for prediction difference analysis.

use crate::Result;
use candle_core::Tensor;
use rand::rngs::StdRng;

/// A rectangular window over all channels: rows `y..y+h`, columns `x..x+w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

/// Draws replacement values for a window, given the rest of the image.
pub trait Sampler: Send + Sync {
    fn name(&self) -> &str;
    /// `n` samples of the window's values for `image` (`[C, H, W]`), as `[n, C, h, w]`.
    fn sample(&self, image: &Tensor, win: Window, n: usize, rng: &mut StdRng) -> Result<Tensor>;
}
