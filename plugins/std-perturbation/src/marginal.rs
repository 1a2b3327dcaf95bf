//! The marginal sampler (Robnik-Šikonja & Kononenko; Zintgraf et al. §2): a
//! window's values are copied from the same location of a random training image.

use lumen_core::candle::{Device, Tensor};
use lumen_core::params::ParamSpec;
use lumen_core::sampler::{HostImage, Sampler, Window};
use lumen_core::{Args, Error, Result};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;

pub static PARAMS: &[ParamSpec] = &[];

/// The training images, kept on the host.
#[derive(Debug, Clone)]
pub struct Marginal {
    images: Vec<f32>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Marginal {
    /// Keeps `train` (`[N, C, H, W]`).
    pub fn fit(train: &Tensor) -> Result<Self> {
        let (n, c, h, w) = train.dims4().map_err(|_| {
            Error::shape("training data [N, C, H, W]", format!("{:?}", train.dims()))
        })?;
        if n == 0 {
            return Err(Error::Data("the marginal sampler needs at least one training image".into()));
        }
        let images = train.flatten_all()?.to_vec1::<f32>()?;
        Ok(Marginal { images, n, c, h, w })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut m = lumen_core::model::load_safetensors(path, &Device::Cpu)?;
        let t = m
            .remove("images")
            .ok_or_else(|| Error::Data(format!("{}: not a marginal sampler (no 'images')", path.display())))?;
        Self::fit(&t)
    }
}

impl Sampler for Marginal {
    fn name(&self) -> &str {
        "marginal"
    }

    fn sample_windows(
        &self,
        image: &HostImage,
        wins: &[Window],
        n: usize,
        rng: &mut StdRng,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if (image.c, image.h, image.w) != (self.c, self.h, self.w) {
            return Err(Error::shape(
                format!("images of [{}, {}, {}] like the training data", self.c, self.h, self.w),
                format!("[{}, {}, {}]", image.c, image.h, image.w),
            ));
        }
        image.check_windows(wins)?;
        let plane = self.h * self.w;
        for win in wins {
            for _ in 0..n {
                let j = rng.gen_range(0..self.n);
                let src = &self.images[j * self.c * plane..(j + 1) * self.c * plane];
                for ch in 0..self.c {
                    for y in win.y..win.y + win.h {
                        let row = ch * plane + y * self.w;
                        out.extend_from_slice(&src[row + win.x..row + win.x + win.w]);
                    }
                }
            }
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        let t = Tensor::from_vec(self.images.clone(), (self.n, self.c, self.h, self.w), &Device::Cpu)?;
        lumen_core::io::save_safetensors(path, &HashMap::from([("images".to_string(), t)]))
    }
}

lumen_core::submit_sampler!(
    "marginal",
    "window values copied from the same location of a random training image",
    PARAMS,
    |_a: &Args, train: &Tensor| Ok(Box::new(Marginal::fit(train)?)),
    |_a: &Args, path: &Path| Ok(Box::new(Marginal::load(path)?)),
);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn copies_the_same_location_and_round_trips() {
        // Two training images whose pixel values encode (image, position).
        let data: Vec<f32> = (0..2 * 16).map(|v| v as f32).collect();
        let train = Tensor::from_vec(data, (2, 1, 4, 4), &Device::Cpu).unwrap();
        let m = Marginal::fit(&train).unwrap();
        let img = vec![0f32; 16];
        let hi = HostImage::new(&img, 1, 4, 4).unwrap();
        let win = Window { y: 1, x: 2, h: 2, w: 2 };
        let mut out = vec![];
        m.sample_windows(&hi, &[win], 20, &mut StdRng::seed_from_u64(1), &mut out).unwrap();
        assert_eq!(out.len(), 20 * 4);
        let mut seen = [false; 2];
        for s in out.chunks(4) {
            let j = if s[0] >= 16.0 { 1 } else { 0 };
            seen[j] = true;
            let b = (j * 16) as f32;
            assert_eq!(s, &[b + 6., b + 7., b + 10., b + 11.]);
        }
        assert!(seen[0] && seen[1]);
        let p = std::env::temp_dir().join(format!("lumen-marginal-{}.safetensors", std::process::id()));
        m.save(&p).unwrap();
        let l = Marginal::load(&p).unwrap();
        assert_eq!(l.images, m.images);
        std::fs::remove_file(&p).unwrap();
        let bad = vec![0f32; 25];
        let e = m.sample_windows(&HostImage::new(&bad, 1, 5, 5).unwrap(), &[win], 1, &mut StdRng::seed_from_u64(1), &mut out);
        assert!(e.is_err());
    }
}
