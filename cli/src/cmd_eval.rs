//! `lumen eval`: the command line of [`lumen_eval`]. It parses the flags into an
//! [`EvalConfig`], calls the library (a run, a shard, `--plan`, `--emit-slurm` or
//! `merge`) and prints what it reports, with a progress bar.

use crate::cmd_explain::ModelArgs;
use crate::host;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::Device;
use lumen_eval::shard::Shard;
use lumen_eval::slurm::{self, SlurmOptions};
use lumen_eval::{run, EvalConfig, Output};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub action: Option<EvalAction>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated methods, or `all` (every registered method, with its defaults).
    #[arg(long, default_value = "all")]
    pub methods: String,
    /// Comma-separated metrics, or `all` (every registered metric that applies).
    #[arg(long, default_value = "all")]
    pub metrics: String,
    /// Number of examples to evaluate.
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Output directory; a rerun with the same arguments resumes it.
    #[arg(long, default_value = "out/eval")]
    pub out: PathBuf,
    /// Seed: example selection, stochastic methods without their own seed, metric noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Examples per chunk (the unit of resumption and of each method call).
    #[arg(long, default_value_t = 20)]
    pub batch_size: usize,
    /// Parameter of a method or a metric: NAME.PARAM=VALUE (repeatable), e.g.
    /// smoothgrad.n=20 or deletion.fill=blur.
    #[arg(long = "param", value_name = "NAME.PARAM=VALUE")]
    pub params: Vec<String>,
    /// Data: mnist (test digits, predicted class), biased (test digits other than 8
    /// with the bias square, class 8; masks = the square), genomics (positive test
    /// sequences, class 1; masks = the planted motifs).
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Use the gallery's lighter settings for the slow methods (PDA, CDeepEx, xGEMs).
    #[arg(long)]
    pub light: bool,
    /// Example maps per method in the report.
    #[arg(long, default_value_t = 4)]
    pub examples: usize,
    /// Compute only shard K of N (0 ≤ K < N): a deterministic, cost-balanced share of
    /// the (method, chunk) units. Shards may share --out or use one each; join them
    /// with `lumen eval merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Relative cost per example of a method (saliency = 1), for balancing shards:
    /// METHOD=WEIGHT, repeatable or comma-separated. `--plan` measures them.
    #[arg(long = "cost", value_name = "METHOD=WEIGHT")]
    pub costs: Vec<String>,
    /// Print the measured cost of every method and metric on a small sample and the
    /// shard assignment for N shards (without N: the balance for several N); computes nothing else.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0", conflicts_with_all = ["shard", "emit_slurm"])]
    pub plan: Option<usize>,
    /// Write a Slurm job array of N shards plus a dependent merge job into OUT/slurm/
    /// (submit with OUT/slurm/submit.sh); computes nothing.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub emit_slurm: Option<usize>,
    /// Slurm partition of the emitted jobs.
    #[arg(long, requires = "emit_slurm")]
    pub partition: Option<String>,
    /// Slurm generic resources of each shard job, e.g. gpu:1.
    #[arg(long, requires = "emit_slurm")]
    pub gres: Option<String>,
    /// Slurm time limit of each shard job, e.g. 2:00:00.
    #[arg(long, requires = "emit_slurm")]
    pub time: Option<String>,
    /// Another directory whose files method parameters may read (repeatable); they
    /// may always read under the working directory and --out, and write under --out.
    #[arg(long = "allow-read", value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// Stop after computing this many (method, chunk) units (to test resuming).
    #[arg(long, hide = true)]
    pub stop_after_chunks: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum EvalAction {
    /// Check that the shards' directories hold every chunk of one run exactly once,
    /// then write the report of the whole run (the same files as a one-machine run).
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Run directories of the shards (one shared directory, or one per shard).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run and its report go (may be one of the DIRs).
    #[arg(long)]
    pub out: PathBuf,
}

impl EvalArgs {
    /// The library's configuration of these flags.
    pub fn config(&self) -> EvalConfig {
        EvalConfig {
            model: self.model.model.clone(),
            model_card: self.model.model_card.clone(),
            methods: self.methods.clone(),
            metrics: self.metrics.clone(),
            n: self.n,
            out: self.out.clone(),
            seed: self.seed,
            batch_size: self.batch_size,
            params: self.params.clone(),
            data: self.data.clone(),
            light: self.light,
            examples: self.examples,
            costs: self.costs.clone(),
            allow_read: self.allow_read.clone(),
            stop_after_chunks: self.stop_after_chunks,
        }
    }
}

/// Prints the library's lines above an indicatif progress bar.
#[derive(Default)]
struct Console {
    bar: Mutex<Option<ProgressBar>>,
}

impl Output for Console {
    fn line(&self, s: &str) {
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref().cloned()) {
            Some(pb) => pb.suspend(|| println!("{s}")),
            None => println!("{s}"),
        }
    }
    fn start(&self, total: usize, done: usize) {
        let pb = ProgressBar::new(total as u64);
        pb.set_style(
            ProgressStyle::with_template("{spinner} eval [{bar:30}] {pos}/{len} {msg} ({elapsed}, ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_position(done as u64);
        pb.reset_eta();
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
    fn message(&self, s: &str) {
        if let Some(pb) = self.bar.lock().ok().as_ref().and_then(|b| b.as_ref().cloned()) {
            pb.set_message(s.to_string());
        }
    }
    fn advance(&self) {
        if let Some(pb) = self.bar.lock().ok().as_ref().and_then(|b| b.as_ref().cloned()) {
            pb.inc(1);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            pb.finish_and_clear();
        }
    }
}

/// The host's plugin packs, for the run key.
fn plugins() -> Vec<lumen_eval::PluginPack> {
    host::loaded_packs()
        .iter()
        .map(|p| lumen_eval::PluginPack {
            name: p.name.clone(),
            crate_name: p.crate_name.clone(),
            version: p.version.clone(),
            fingerprint: p.fingerprint.clone(),
        })
        .collect()
}

pub fn run(a: EvalArgs, device: &Device) -> anyhow::Result<()> {
    let out = Console::default();
    let reg = host::registry()?;
    if let Some(EvalAction::Merge(m)) = &a.action {
        return Ok(run::merge(&m.dirs, &m.out, &reg, &plugins(), device, &out)?);
    }
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let started = Instant::now();
    let cfg = a.config();
    let p = run::prepare(&cfg, &reg, &plugins(), device)?;
    let costs = run::shard_costs(&p, &cfg)?;
    if let Some(n) = a.plan {
        return Ok(run::plan(&cfg, &p, &costs, n, &out)?);
    }
    if let Some(n) = a.emit_slurm {
        let units = p.units().len();
        let opts = SlurmOptions { partition: a.partition.clone(), gres: a.gres.clone(), time: a.time.clone() };
        let lumen = std::env::current_exe().context("locating the lumen binary")?;
        let dir = slurm::emit(&cfg, &opts, &lumen, &run::saved_args(&cfg), device, n, units, &out)?;
        println!("submit with: sh {}", dir.join("submit.sh").display());
        return Ok(());
    }
    Ok(run::compute(&cfg, &p, shard, &costs, started, &out)?)
}
