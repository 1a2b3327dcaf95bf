//! Procedure 2 of CDeepEx: find the latent `z₀` whose image `G(z₀)` is closest to
//! the input, starting from the encoder (when the generator has one) and from
//! seeded random restarts, and keep the best.
//!
//! All examples and restarts are optimised in one batch: the loss is a sum of
//! independent per-row terms and Adam works coordinate-wise, so this is the same as
//! running each one alone, only faster.

use lumen_core::candle::{DType, Device, Tensor, Var, D};
use lumen_core::candle_nn::{AdamW, Optimizer, ParamsAdamW};
use lumen_core::generator::Generator;
use lumen_core::{Config, Error, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// How to invert (the `invert_*`, `restarts` and `seed` parameters).
#[derive(Debug, Clone, Config)]
pub struct InversionConfig {
    /// Adam steps of the inversion (Procedure 2)
    #[param(name = "invert_steps", max = 100_000)]
    pub steps: usize,
    /// Adam step size of the inversion
    #[param(name = "invert_lr")]
    pub lr: f64,
    /// random inversion starts besides the encoder's
    #[param(max = 100)]
    pub restarts: usize,
    /// seed of the random inversion starts
    pub seed: u64,
    /// Start from the encoder's mean when the generator has an encoder.
    #[param(skip)]
    pub use_encoder: bool,
}

impl Default for InversionConfig {
    fn default() -> Self {
        InversionConfig { steps: 150, lr: 0.05, restarts: 2, seed: 0, use_encoder: true }
    }
}

/// The inverted latents and their images.
#[derive(Debug, Clone)]
pub struct Inversion {
    /// `[B, d]`.
    pub z0: Tensor,
    /// `G(z₀)`, shaped like the input.
    pub generated: Tensor,
    /// Per-example mean squared error per pixel of `G(z₀)` against the input.
    pub mse: Vec<f32>,
}

/// Inverts a batch `xs` (`[B, ...output_shape]`).
pub fn invert(gen: &dyn Generator, xs: &Tensor, cfg: &InversionConfig) -> Result<Inversion> {
    let dims = xs.dims();
    if dims.len() != gen.output_shape().len() + 1 || dims[1..] != *gen.output_shape() {
        return Err(Error::shape(
            format!("[batch, {:?}] (the output of generator '{}')", gen.output_shape(), gen.name()),
            format!("{dims:?}"),
        ));
    }
    let b = dims[0];
    let d = gen.latent_dim();
    let dev = xs.device();
    let xs = xs.to_dtype(DType::F32)?;
    // Starts: [encoder?, random × restarts], each a [B, d] block.
    let mut starts = vec![];
    if cfg.use_encoder {
        if let Some(z) = gen.encode(&xs) {
            starts.push(z?.detach().to_dtype(DType::F32)?);
        }
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    for _ in 0..cfg.restarts {
        starts.push(normal(&mut rng, b, d, dev)?);
    }
    if starts.is_empty() {
        starts.push(Tensor::zeros((b, d), DType::F32, dev)?);
    }
    let k = starts.len();
    let z = Var::from_tensor(&Tensor::cat(&starts, 0)?)?;
    let target = Tensor::cat(&vec![xs.clone(); k], 0)?;
    let mut opt = AdamW::new(vec![z.clone()], ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() })?;
    for _ in 0..cfg.steps {
        let g = gen.generate(z.as_tensor())?;
        // Sum over rows of per-row mean errors: rows do not interact.
        let loss = (&g - &target)?.sqr()?.flatten_from(1)?.mean(D::Minus1)?.sum_all()?;
        opt.backward_step(&loss)?;
    }
    let zs = z.as_tensor().detach();
    let g = gen.generate(&zs)?;
    let err = (&g - &target)?.sqr()?.flatten_from(1)?.mean(D::Minus1)?.reshape((k, b))?;
    let best = err.argmin(0)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let errs = err.to_vec2::<f32>()?;
    let rows: Vec<u32> = best.iter().enumerate().map(|(i, &r)| r * b as u32 + i as u32).collect();
    let idx = Tensor::from_vec(rows, b, dev)?;
    let z0 = zs.index_select(&idx, 0)?;
    let generated = g.index_select(&idx, 0)?;
    let mse = best.iter().enumerate().map(|(i, &r)| errs[r as usize][i]).collect();
    Ok(Inversion { z0, generated, mse })
}

/// Standard normal `[n, d]` from a seeded host rng (candle's CPU rng has no seed).
pub fn normal(rng: &mut StdRng, n: usize, d: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..n * d).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, (n, d), device)?)
}

/// The quality bar of a generator for CDeepEx, measured after inversion.
#[derive(Debug, Clone, Default)]
pub struct Quality {
    pub n: usize,
    /// Mean over examples of the per-pixel MSE of `G(z₀)` against `I`.
    pub mse: f64,
    /// Fraction of examples where the classifier predicts the same class on `G(z₀)`
    /// as on `I`.
    pub agreement: f64,
}

/// Inverts `xs` in batches of `batch` and measures [`Quality`] with `model`.
pub fn quality(
    gen: &dyn Generator,
    model: &dyn lumen_core::Classifier,
    xs: &Tensor,
    cfg: &InversionConfig,
    batch: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<(Quality, Tensor)> {
    let n = xs.dim(0)?;
    let (mut se, mut agree) = (0f64, 0usize);
    let mut gens = vec![];
    for r in lumen_core::method::chunks(n, batch) {
        let x = xs.narrow(0, r.start, r.len())?;
        let inv = invert(gen, &x, cfg)?;
        se += inv.mse.iter().map(|v| *v as f64).sum::<f64>();
        let p = lumen_core::target::predict(model, &x)?;
        let q = lumen_core::target::predict(model, &inv.generated)?;
        agree += p.iter().zip(&q).filter(|(a, b)| a == b).count();
        gens.push(inv.generated);
        on_batch(r.len());
    }
    Ok((Quality { n, mse: se / n as f64, agreement: agree as f64 / n as f64 }, Tensor::cat(&gens, 0)?))
}
