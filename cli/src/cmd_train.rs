//! `lumen train`: trains a zoo model with its recipe (overridable) and writes its
//! weights and model card.

use clap::Args;
use lumen_core::candle::Device;
use lumen_models::train;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// Which model (its architecture, data and default recipe): mnist-cnn,
    /// mnist-allcnn, mnist-cnn-noise or mnist-cnn-biased.
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate (AdamW, cosine decay).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Gaussian input noise during training, as a fraction of the input range.
    #[arg(long)]
    pub noise_sigma: Option<f32>,
    /// Random shift augmentation in pixels (0 disables it).
    #[arg(long)]
    pub shift: Option<usize>,
    /// Random rotation augmentation in degrees (0 disables it).
    #[arg(long)]
    pub rotate: Option<f32>,
    /// Random zoom augmentation: factor in [1 − S, 1 + S] (0 disables it).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Train on only the first N images (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Stop after this many optimiser steps (quick runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Save under this name instead of the model's (e.g. to keep shipped weights).
    #[arg(long)]
    pub name: Option<String>,
    /// Output directory (default: the source tree's models/weights).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: TrainArgs, device: &Device) -> anyhow::Result<()> {
    let r = train::recipe(&a.model)?;
    let mut cfg = r.config.clone();
    cfg.epochs = a.epochs.unwrap_or(cfg.epochs);
    cfg.seed = a.seed.unwrap_or(cfg.seed);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.batch_size = a.batch_size.unwrap_or(cfg.batch_size);
    cfg.noise_sigma = a.noise_sigma.unwrap_or(cfg.noise_sigma);
    cfg.shift = a.shift.unwrap_or(cfg.shift);
    cfg.rotate_deg = a.rotate.unwrap_or(cfg.rotate_deg);
    cfg.scale = a.scale.unwrap_or(cfg.scale);
    cfg.limit = a.limit.or(cfg.limit);
    cfg.max_steps = a.max_steps.or(cfg.max_steps);
    let name = a.name.clone().unwrap_or_else(|| a.model.clone());
    let out = a.out.clone().unwrap_or_else(lumen_models::source_weights_dir);
    eprintln!(
        "training {name} ({}): {} epochs, batch {}, lr {}, seed {}, shift ±{} px, rotate ±{}°, zoom ±{}, noise σ {}",
        a.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.shift, cfg.rotate_deg, cfg.scale, cfg.noise_sigma
    );
    let t = train::train(&r.layers, &cfg, device)?;
    let card = t.save(&out, &name, &r.description)?;
    let rep = &t.report;
    println!(
        "{name}: {} steps in {:.0} s, final train loss {:.4}, train accuracy {:.2}%",
        rep.steps,
        rep.seconds,
        rep.train_loss,
        100.0 * rep.train_accuracy
    );
    if let Some(acc) = rep.test_accuracy {
        println!("{name}: test accuracy {:.2}% on the 1,000 held-out images", 100.0 * acc);
    }
    println!("wrote {} and its weights", card.display());
    Ok(())
}
