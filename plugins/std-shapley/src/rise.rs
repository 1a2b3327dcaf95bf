//! RISE (Petsiuk et al. 2018): the saliency of a pixel is the expected target over
//! random soft masks, weighted by the pixel's mask value:
//!
//! `S(x)_p = 1/(N·P) Σ_n f(x ⊙ M_n + b ⊙ (1 − M_n)) · M_n(p)`
//!
//! Each mask is an s×s grid of Bernoulli(P) cells, upsampled bilinearly to
//! `(s+1)·⌈H/s⌉ × (s+1)·⌈W/s⌉` and cropped at a random shift below one cell. The same
//! masks serve every example (seeded by `seed` alone). The standard error of each
//! pixel's mean is reported; `tolerance=` stops once the largest falls below it.

use crate::game::{Features, Game};
use crate::shapley::{check_tolerance, Moments};
use lumen_core::candle::{Device, Tensor};
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Configuration of [`Rise`].
#[derive(Debug, Clone, Config)]
pub struct RiseConfig {
    /// random masks (the most, with tolerance=)
    #[param(positive, max = 1_000_000)]
    pub samples: usize,
    /// side s of the low-resolution mask grid
    #[param(positive, max = 1024)]
    pub cells: usize,
    /// probability P that a cell is kept
    pub p_keep: f64,
    /// what masked pixels fade to: zero, constant, blur or tensor
    #[param(name = "baseline", with = lumen_core::baseline::param)]
    pub baselines: Vec<lumen_core::baseline::Baseline>,
    /// stop once every pixel's standard error is below this (absent: run all samples)
    pub tolerance: Option<f64>,
    /// seed of the masks
    pub seed: u64,
    /// masked inputs per forward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for RiseConfig {
    fn default() -> Self {
        RiseConfig {
            samples: 2000,
            cells: 7,
            p_keep: 0.5,
            baselines: vec![lumen_core::baseline::Baseline::Zero],
            tolerance: None,
            seed: 0,
            batch_size: 256,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rise {
    pub config: RiseConfig,
}

/// One RISE mask `[h·w]`, values in [0, 1].
pub fn rise_mask(rng: &mut StdRng, s: usize, p: f64, h: usize, w: usize) -> Vec<f32> {
    let grid: Vec<f32> = (0..s * s).map(|_| (rng.gen::<f64>() < p) as u8 as f32).collect();
    let (ch, cw) = (h.div_ceil(s), w.div_ceil(s));
    let (uh, uw) = ((s + 1) * ch, (s + 1) * cw);
    let (dy, dx) = (rng.gen_range(0..ch), rng.gen_range(0..cw));
    // Bilinear sampling of the s×s grid stretched over uh×uw (half-pixel centres).
    let coord = |o: usize, up: usize| {
        let u = ((o as f64 + 0.5) * s as f64 / up as f64 - 0.5).clamp(0.0, (s - 1) as f64);
        let i = (u.floor() as usize).min(s.saturating_sub(2));
        (i, (u - i as f64) as f32)
    };
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let (iy, fy) = coord(y + dy, uh);
        for x in 0..w {
            let (ix, fx) = coord(x + dx, uw);
            let at = |a: usize, b: usize| grid[a.min(s - 1) * s + b.min(s - 1)];
            let top = at(iy, ix) * (1.0 - fx) + at(iy, ix + 1) * fx;
            let bot = at(iy + 1, ix) * (1.0 - fx) + at(iy + 1, ix + 1) * fx;
            out.push(top * (1.0 - fy) + bot * fy);
        }
    }
    out
}

impl Method for Rise {
    const NAME: &'static str = "rise";
    const SUMMARY: &'static str = "RISE: the target averaged over random upsampled masks, weighted per pixel";
    type Config = RiseConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: RiseConfig) -> Result<Self> {
        check_tolerance(Self::NAME, config.tolerance)?;
        crate::game::one_baseline(Self::NAME, &config.baselines)?;
        if !(config.p_keep > 0.0 && config.p_keep <= 1.0) {
            return Err(Error::bad_param(Self::NAME, "p_keep", format!("must be in (0, 1], got {}", config.p_keep)));
        }
        Ok(Rise { config })
    }
    fn config(&self) -> &RiseConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let c = &self.config;
        let (_, ch, h, w) = inputs.dims4().map_err(|_| {
            Error::unsupported(Self::NAME, format!("inputs must be images [B, C, H, W], got {:?}", inputs.dims()))
        })?;
        let features = Features { baselines: c.baselines.clone(), batch_size: c.batch_size, ..Features::default() };
        let mut game = Game::new(Self::NAME, model, inputs, target, &features)?;
        let b = game.len();
        let d = ch * h * w;
        let mut rng = StdRng::seed_from_u64(c.seed ^ 0x5249_5345);
        let mut moments: Vec<Moments> = (0..b).map(|_| Moments::new(h * w)).collect();
        let mut done = vec![false; b];
        game.show_progress(b * c.samples, Self::NAME);
        let per_round = (c.batch_size / b.max(1)).clamp(8, 512);
        let mut used = 0;
        while used < c.samples {
            let k = per_round.min(c.samples - used);
            let masks: Vec<Vec<f32>> = (0..k).map(|_| rise_mask(&mut rng, c.cells, c.p_keep, h, w)).collect();
            let live: Vec<usize> = (0..b).filter(|&e| !done[e]).collect();
            let rows: Vec<(usize, usize)> = live.iter().flat_map(|&e| (0..k).map(move |n| (e, n))).collect();
            let mut scores = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(c.batch_size) {
                let mut data = Vec::with_capacity(chunk.len() * d);
                for &(e, n) in chunk {
                    let (x, base, m) = (&game.xs[e], &game.bases[e], &masks[n]);
                    data.extend((0..d).map(|j| {
                        let mv = m[j % (h * w)];
                        x[j] * mv + base[j] * (1.0 - mv)
                    }));
                }
                let exs: Vec<usize> = chunk.iter().map(|r| r.0).collect();
                scores.extend(game.eval_rows(&exs, data)?);
            }
            let mut sample = vec![0.0; h * w];
            for (&(e, n), f) in rows.iter().zip(&scores) {
                for (s, mv) in sample.iter_mut().zip(&masks[n]) {
                    *s = f * *mv as f64 / c.p_keep;
                }
                moments[e].push(&sample);
            }
            used += k;
            let worst = live.iter().map(|&e| moments[e].max_std_err()).fold(0.0, f64::max);
            game.progress().set_message(format!("max std err {worst:.3e}"));
            if let Some(tol) = c.tolerance {
                for e in live {
                    done[e] = moments[e].max_std_err() < tol;
                }
                if done.iter().all(|d| *d) {
                    break;
                }
            }
        }
        game.progress().finish_and_clear();
        let mut attr = Vec::with_capacity(b * d);
        for m in &moments {
            for _ in 0..ch {
                attr.extend(m.mean.iter().map(|v| *v as f32));
            }
        }
        let attr = Tensor::from_vec(attr, inputs.shape(), &Device::Cpu)?.to_device(inputs.device())?;
        let mut e = Explanation::new(Self::NAME, attr, game.target.clone())
            .with_params(self.params())
            .with_diag("samples", moments.iter().map(|m| m.n).collect::<Vec<_>>())
            .with_diag("max_std_err", moments.iter().map(|m| m.max_std_err()).collect::<Vec<_>>())
            .with_diag("evaluations", game.evaluations());
        let se: Vec<f32> = moments.iter().flat_map(|m| m.std_err()).map(|v| v as f32).collect();
        e = e.with_tensor("std_err", Tensor::from_vec(se, (b, h, w), &Device::Cpu)?);
        e.seed = Some(c.seed);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_soft_shifted_grids() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = rise_mask(&mut rng, 7, 0.5, 28, 28);
        assert_eq!(m.len(), 784);
        assert!(m.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(m.iter().any(|v| *v > 0.0 && *v < 1.0), "bilinear upsampling gives soft edges");
        // The mean keep rate over many masks is close to P.
        let mean: f64 = (0..400).map(|_| rise_mask(&mut rng, 7, 0.5, 28, 28).iter().map(|v| *v as f64).sum::<f64>() / 784.0).sum::<f64>() / 400.0;
        assert!((mean - 0.5).abs() < 0.03, "{mean}");
        let all = rise_mask(&mut rng, 3, 1.0, 10, 10);
        assert!(all.iter().all(|v| *v == 1.0));
    }
}
