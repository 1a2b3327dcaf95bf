//! Training the VAE: Adam on the negative ELBO, seeded shuffling and noise, a
//! progress bar, and atomic output of weights and card.

use crate::card::GeneratorCard;
use crate::vae::{normal, Vae};
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::{Device, Tensor};
use lumen_core::candle_nn::{AdamW, Optimizer, ParamsAdamW};
use lumen_core::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// The training recipe.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub latent: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Weight of the KL term (1 = the plain ELBO).
    pub beta: f64,
    pub seed: u64,
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { latent: 32, epochs: 30, batch_size: 64, lr: 1e-3, beta: 1.0, seed: 0, progress: true }
    }
}

impl TrainConfig {
    pub fn recipe(&self) -> BTreeMap<String, toml::Value> {
        let mut m = BTreeMap::new();
        m.insert("optimizer".into(), toml::Value::String("adam".into()));
        m.insert("lr".into(), toml::Value::Float(self.lr));
        m.insert("epochs".into(), toml::Value::Integer(self.epochs as i64));
        m.insert("batch_size".into(), toml::Value::Integer(self.batch_size as i64));
        m.insert("beta".into(), toml::Value::Float(self.beta));
        m.insert("seed".into(), toml::Value::Integer(self.seed as i64));
        m
    }
}

/// Per-epoch mean losses.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub total: Vec<f64>,
    pub reconstruction: Vec<f64>,
    pub kl: Vec<f64>,
}

/// Trains a VAE on `data` (`[N, 1, 28, 28]` in [0, 1]).
pub fn train_vae(data: &Tensor, cfg: &TrainConfig, device: &Device) -> Result<(Vae, History)> {
    let n = data.dim(0)?;
    if data.dims()[1..] != [1, 28, 28] || n == 0 {
        return Err(Error::shape("[N, 1, 28, 28] with N ≥ 1", format!("{:?}", data.dims())));
    }
    if cfg.batch_size == 0 || cfg.latent == 0 {
        return Err(Error::msg("train-generator: batch size and latent size must be ≥ 1"));
    }
    let (vae, vars) = Vae::init_vars(cfg.latent, cfg.seed, device)?;
    let mut opt = AdamW::new(vars, ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() })?;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let steps = cfg.epochs * n.div_ceil(cfg.batch_size);
    let pb = if cfg.progress { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| Error::msg(e.to_string()))?,
    );
    let mut hist = History::default();
    let mut order: Vec<u32> = (0..n as u32).collect();
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let (mut st, mut sr, mut sk, mut cnt) = (0f64, 0f64, 0f64, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), device)?;
            let x = data.index_select(&idx, 0)?;
            let eps = normal(&mut rng, chunk.len(), cfg.latent, device)?;
            let (total, rec, kl) = vae.loss(&x, &eps, cfg.beta)?;
            opt.backward_step(&total)?;
            let w = chunk.len();
            st += total.to_scalar::<f32>()? as f64 * w as f64;
            sr += rec.to_scalar::<f32>()? as f64 * w as f64;
            sk += kl.to_scalar::<f32>()? as f64 * w as f64;
            cnt += w;
            pb.inc(1);
        }
        let (t, r, k) = (st / cnt as f64, sr / cnt as f64, sk / cnt as f64);
        if !t.is_finite() {
            return Err(Error::Solver(format!("VAE training diverged at epoch {}", epoch + 1)));
        }
        pb.set_message(format!("epoch {} -ELBO {t:.1} (rec {r:.1}, KL {k:.1})", epoch + 1));
        hist.total.push(t);
        hist.reconstruction.push(r);
        hist.kl.push(k);
    }
    pb.finish_and_clear();
    // Detach the trained values from the optimiser's variables.
    let params = vae.params.iter().map(|(k, v)| (k.clone(), v.detach())).collect();
    Ok((Vae::new(cfg.latent, params)?, hist))
}

/// Writes `NAME.safetensors` and `NAME.toml` into `dir`, atomically.
pub fn save(vae: &Vae, card: &GeneratorCard, dir: &std::path::Path) -> Result<()> {
    let weights = dir.join(&card.weights);
    let map = vae.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    lumen_core::io::save_safetensors(&weights, &map)?;
    card.save(dir.join(format!("{}.toml", card.name)))
}
