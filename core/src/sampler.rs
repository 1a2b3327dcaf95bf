//! Patch samplers, for prediction difference analysis.
//!
//! A sampler draws replacement values for image windows, given the rest of the
//! image. PDA asks for many windows at once (one forward batch's worth), so the
//! trait is batched and works on host memory: sampling is host work, and the
//! forward passes that follow are the part that runs on the device.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use std::path::Path;

/// A rectangular window over all channels: rows `y..y+h`, columns `x..x+w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

impl Window {
    pub fn square(y: usize, x: usize, k: usize) -> Window {
        Window { y, x, h: k, w: k }
    }
    /// Whether the window lies fully inside an `h × w` image.
    pub fn fits(&self, h: usize, w: usize) -> bool {
        self.h > 0 && self.w > 0 && self.y + self.h <= h && self.x + self.w <= w
    }
}

/// One image `[C, H, W]` in host memory, row-major.
#[derive(Debug, Clone, Copy)]
pub struct HostImage<'a> {
    pub data: &'a [f32],
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl<'a> HostImage<'a> {
    pub fn new(data: &'a [f32], c: usize, h: usize, w: usize) -> Result<Self> {
        if data.len() != c * h * w {
            return Err(Error::shape(format!("{} values for [{c}, {h}, {w}]", c * h * w), data.len().to_string()));
        }
        Ok(HostImage { data, c, h, w })
    }
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.h + y) * self.w + x]
    }
    /// Checks that every window fits and that all share one size.
    pub fn check_windows(&self, wins: &[Window]) -> Result<()> {
        if let Some(first) = wins.first() {
            for win in wins {
                if !win.fits(self.h, self.w) || (win.h, win.w) != (first.h, first.w) {
                    return Err(Error::shape(
                        format!("windows of one size inside a {}×{} image", self.h, self.w),
                        format!("{win:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Draws replacement values for windows, given the rest of the image.
pub trait Sampler: Send + Sync {
    fn name(&self) -> &str;

    /// Draws `n` samples for each window of `wins` (all of one size `h × w`) and
    /// appends them to `out`, laid out `[wins.len(), n, C, h, w]`. Draws are taken
    /// from `rng` in that order, so a seed fixes the result.
    fn sample_windows(
        &self,
        image: &HostImage,
        wins: &[Window],
        n: usize,
        rng: &mut StdRng,
        out: &mut Vec<f32>,
    ) -> Result<()>;

    /// Writes the fitted model, so that it is fitted once per data set.
    fn save(&self, path: &Path) -> Result<()>;

    /// `n` samples of one window of `image` (`[C, H, W]`), as `[n, C, h, w]`.
    fn sample(&self, image: &Tensor, win: Window, n: usize, rng: &mut StdRng) -> Result<Tensor> {
        let (c, h, w) = image.dims3()?;
        let data = image.flatten_all()?.to_vec1::<f32>()?;
        let img = HostImage::new(&data, c, h, w)?;
        let mut out = Vec::with_capacity(n * c * win.h * win.w);
        self.sample_windows(&img, &[win], n, rng, &mut out)?;
        Ok(Tensor::from_vec(out, (n, c, win.h, win.w), &Device::Cpu)?.to_device(image.device())?)
    }
}
