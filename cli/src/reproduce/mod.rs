//! `lumen reproduce EXPERIMENT`: regenerates a paper's experiment on our models and
//! writes its figures and tables (by default under `docs/`). Each experiment lives in
//! its own module; add a match arm and a line in `EXPERIMENTS` for a new one.

mod cdeepex;
mod clear;
mod pda;

mod genomics;
mod gradcam;
mod smoothgrad;
use clap::Args;
use lumen_core::candle::Device;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReproduceArgs {
    /// Which experiment (see `lumen reproduce list`).
    pub experiment: String,
    /// Output directory (default: docs/<experiment>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A smaller, faster run (used by the test suite).
    #[arg(long)]
    pub quick: bool,
    /// Seed for every stochastic step.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// (name, what it regenerates)
pub const EXPERIMENTS: &[(&str, &str)] = &[
    ("genomics", "DeepLIFT §3.2: motif recovery by DeepLIFT vs gradient × input (docs/genomics)"),
    ("genomics-train", "retrain genomics-cnn on the simulated sequences (models/weights)"),
    ("cdeepex", "CDeepEx: generator quality, Fig. 5 (third-class wins vs xGEMs, likelihood paths), biased-8 (docs/cdeepex)"),
    ("pda", "PDA: conditional vs marginal, window sweep, top-5% masks vs saliency, softmax vs logits (docs/pda)"),
    ("clear", "CLEAR Table 1 (accuracy with only / without strong features, threshold sweep), Fig. 3 maps (docs/clear)"),
    ("gradcam", "the CAM family side by side for close calls, class discrimination, Grad-CAM sanity check, ROAD (docs/gradcam)"),
    ("smoothgrad", "SmoothGrad: noise-level and sample-size sweeps, SG over IG and guided BP, training with noise (docs/smoothgrad)"),
];

pub fn run(a: ReproduceArgs, device: &Device) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("docs").join(&a.experiment));
    let _ = (&out, device);
    match a.experiment.as_str() {
        "list" => {
            for (n, d) in EXPERIMENTS {
                println!("{n:<20} {d}");
            }
            Ok(())
        }
        "pda" => pda::run(&a, &out, device),
        "cdeepex" => cdeepex::run(&a, &out, device),
        "genomics" => genomics::run(&a, &out, device),
        "genomics-train" => genomics::train(&a, device),
        "smoothgrad" => smoothgrad::run(&a, &out, device),
        "clear" => clear::run(&a, &out, device),
        "gradcam" => gradcam::run(&a, &out, device),
        other => anyhow::bail!(
            "unknown experiment '{other}' (known: {})",
            EXPERIMENTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    }
}
