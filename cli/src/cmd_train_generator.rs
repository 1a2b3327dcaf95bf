//! `lumen train-generator`: trains the VAE generator for CDeepEx/xGEMs on the
//! MNIST-5k train split (seeded, with a progress bar), measures the quality bar
//! after inversion on the 1,000 held-out digits, and writes weights and card.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_cdeepex::inversion::{quality, InversionConfig};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::biased::{BiasedConfig, BiasedMnist};
use lumen_core::data::{Mnist, Split};
use lumen_std_generators::train::{save, train_vae, TrainConfig};
use lumen_std_generators::{GeneratorCard, VaeGenerator};
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainGeneratorArgs {
    /// Name of the generator (card and weights file stem).
    #[arg(long, default_value = "mnist-vae")]
    pub name: String,
    /// Training data: `mnist` (MNIST-5k train split) or `biased` (the same split with
    /// the grey square on every 8, as seen by `mnist-cnn-biased`).
    #[arg(long, default_value = "mnist")]
    pub data: String,
    #[arg(long, default_value_t = 32)]
    pub latent: usize,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (default: the shipped weights directory, models/weights).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Classifier for the quality bar (agreement of predictions on G(z₀) and I).
    #[arg(long, default_value = "mnist-cnn")]
    pub classifier: String,
    /// Held-out digits used for the quality bar (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub eval: usize,
    /// Adam steps of the inversion for the quality bar.
    #[arg(long, default_value_t = 150)]
    pub invert_steps: usize,
    /// Random inversion starts besides the encoder's, for the quality bar.
    #[arg(long, default_value_t = 2)]
    pub restarts: usize,
    /// Do not train: load the shipped generator NAME from its card, measure the
    /// quality bar and write the figures into its card.
    #[arg(long)]
    pub eval_only: bool,
}

pub fn run(a: TrainGeneratorArgs, device: &Device) -> anyhow::Result<()> {
    let mnist = Mnist::load()?;
    if a.eval_only {
        let card_path = match &a.out_dir {
            Some(d) => d.join(format!("{}.toml", a.name)),
            None => lumen_models::card_path(&a.name)?,
        };
        let mut card = GeneratorCard::load(&card_path)?;
        let gen = VaeGenerator::load(&a.name, &card.weights_path(&card_path), device)?;
        measure(&a, &mnist, &gen, &mut card, device)?;
        card.save(&card_path)?;
        println!("updated {}", card_path.display());
        return Ok(());
    }
    let (train, dataset) = match a.data.as_str() {
        "mnist" => (mnist.all(Split::Train, device)?.0, "mnist-5k:train"),
        "biased" => {
            let b = BiasedMnist::train(BiasedConfig::default())?;
            let n = b.len();
            (Tensor::from_vec(b.pixels, (n, 1, 28, 28), device)?, "biased-mnist-5k:train (6x6 square on every 8)")
        }
        other => anyhow::bail!("unknown training data '{other}' (known: mnist, biased)"),
    };
    let cfg = TrainConfig {
        latent: a.latent,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        beta: 1.0,
        seed: a.seed,
        progress: true,
    };
    let t0 = std::time::Instant::now();
    let (vae, hist) = train_vae(&train, &cfg, device)?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "trained {} in {secs:.0} s: final -ELBO {:.2} (reconstruction {:.2}, KL {:.2})",
        a.name,
        hist.total.last().copied().unwrap_or(f64::NAN),
        hist.reconstruction.last().copied().unwrap_or(f64::NAN),
        hist.kl.last().copied().unwrap_or(f64::NAN)
    );
    let mut card = GeneratorCard {
        name: a.name.clone(),
        description: "convolutional VAE; decoder = G for CDeepEx/xGEMs, encoder mean starts the inversion".into(),
        architecture: "conv-vae".into(),
        latent_dim: a.latent,
        output_shape: vec![1, 28, 28],
        dataset: dataset.into(),
        weights: format!("{}.safetensors", a.name),
        training: cfg.recipe(),
        metrics: Default::default(),
    };
    card.metrics.insert("train_seconds".into(), secs);
    card.metrics.insert("final_neg_elbo".into(), *hist.total.last().unwrap_or(&f64::NAN));
    let dir = a.out_dir.clone().unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/weights")));
    // Save before the (slow) quality bar so an interrupted measurement keeps the weights.
    save(&vae, &card, &dir).with_context(|| format!("writing {} into {}", a.name, dir.display()))?;
    measure(&a, &mnist, &VaeGenerator::new(&a.name, vae.clone()), &mut card, device)?;
    save(&vae, &card, &dir).with_context(|| format!("writing {} into {}", a.name, dir.display()))?;
    println!("wrote {}", dir.join(format!("{}.toml", a.name)).display());
    Ok(())
}

/// The quality bar after inversion (Procedure 2) on the first `--eval` held-out
/// digits, written into the card's metrics; skipped with a warning when the
/// classifier is unavailable.
fn measure(
    a: &TrainGeneratorArgs,
    mnist: &Mnist,
    gen: &VaeGenerator,
    card: &mut GeneratorCard,
    device: &Device,
) -> anyhow::Result<()> {
    let reg = crate::host::registry()?;
    let model = match reg.load_model(&a.classifier, device) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warning: quality bar skipped: classifier '{}' unavailable ({e})", a.classifier);
            return Ok(());
        }
    };
    let n = a.eval.min(mnist.len(Split::Test));
    let idx: Vec<usize> = (0..n).collect();
    let (xs, _) = mnist.batch(Split::Test, &idx, device)?;
    let icfg = InversionConfig { seed: a.seed, steps: a.invert_steps, restarts: a.restarts, ..Default::default() };
    let pb = ProgressBar::new(n as u64);
    pb.set_style(ProgressStyle::with_template("inverting {bar:30} {pos}/{len} {elapsed}")?);
    let t0 = std::time::Instant::now();
    // The encoder's mean alone (no optimisation) for comparison.
    let enc = InversionConfig { steps: 0, restarts: 0, ..icfg.clone() };
    let (q0, _) = quality(gen, model.as_ref(), &xs, &enc, 100, |_| {})?;
    let (q, _) = quality(gen, model.as_ref(), &xs, &icfg, 100, |k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "quality on {} held-out digits: per-pixel MSE {:.4}, {} agreement {:.1}% (encoder mean alone: MSE {:.4}, agreement {:.1}%), {secs:.0} s",
        q.n,
        q.mse,
        a.classifier,
        100.0 * q.agreement,
        q0.mse,
        100.0 * q0.agreement
    );
    card.metrics.insert("inversion_mse".into(), q.mse);
    card.metrics.insert("inversion_agreement".into(), q.agreement);
    card.metrics.insert("inversion_eval_n".into(), q.n as f64);
    card.metrics.insert("inversion_steps".into(), icfg.steps as f64);
    card.metrics.insert("inversion_restarts".into(), icfg.restarts as f64);
    card.metrics.insert("encoder_only_mse".into(), q0.mse);
    card.metrics.insert("encoder_only_agreement".into(), q0.agreement);
    card.metrics.insert("inversion_seconds".into(), secs);
    card.description = format!(
        "{}; quality bar measured with classifier {} on the first {} held-out digits",
        card.description.split("; quality bar").next().unwrap_or(""),
        a.classifier,
        q.n
    );
    Ok(())
}
