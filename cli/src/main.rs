//! `lumen`: the host binary. Each subcommand lives in its own module.

mod cmd_bench;
mod cmd_eval;
mod cmd_explain;
mod cmd_gallery;
mod cmd_list;
mod cmd_plugins;
mod cmd_run;
mod cmd_train_generator;
mod cmd_train;
mod host;
mod interrupt;
mod reproduce;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lumen", version, about = "Explain why a neural network made a decision")]
struct Cli {
    /// Device: cpu or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// A directory (besides each card's own) that model cards may take their weights
    /// from (repeatable; also LUMEN_WEIGHTS_DIRS, a path list).
    #[arg(long = "weights-dir", value_name = "DIR", global = true)]
    weights_dirs: Vec<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every method, model, generator and sampler with its parameters.
    List(cmd_list::ListArgs),
    /// List plugin packs: search path, origin, version, fingerprint status, items.
    Plugins(cmd_plugins::PluginsArgs),
    /// Explain one input with one method: writes the map (PNG), tensors (safetensors) and a JSON sidecar.
    Explain(cmd_explain::ExplainArgs),
    /// Evaluate methods with metrics on many examples: CSV, JSON, plots and an HTML report (resumable).
    Eval(cmd_eval::EvalArgs),
    /// Run every method on one test digit per class: a PNG grid plus an HTML page.
    Gallery(cmd_gallery::GalleryArgs),
    /// Run a Rhai pipeline script: `lumen run scripts/X.rhai [-- args]`.
    Run(cmd_run::RunArgs),
    /// Regenerate a paper's experiment on our models (figures and tables in docs/).
    Reproduce(reproduce::ReproduceArgs),
    /// Train a generator (VAE) for CDeepEx/xGEMs (seeded) and write its weights and card.
    TrainGenerator(cmd_train_generator::TrainGeneratorArgs),
    /// Train a zoo model (seeded) and write its weights and model card.
    Train(cmd_train::TrainArgs),
    /// Time methods on a batch of test digits: median, minimum and peak memory per method.
    Bench(cmd_bench::BenchArgs),
    /// The child process of `lumen plugins --check`: loads one pack file, reports as JSON.
    #[command(name = "__check-pack", hide = true)]
    CheckPack(cmd_plugins::CheckPackArgs),
}

/// Keeps freed memory in the process instead of returning it to the kernel. The
/// tensor ops allocate and free buffers of the same few sizes on every call; with
/// glibc's defaults large ones are mmap'd and unmapped, or trimmed off the heap, so
/// each call pays for fresh zeroed pages (the profile of saliency at batch 64 spent
/// about 15% in page faults). The peak footprint is unchanged.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn main() {
    // Errors are one line: keep candle/anyhow from appending library backtraces
    // when RUST_BACKTRACE is set (panic backtraces are unaffected).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    quiet_panics();
    keep_freed_memory();
    interrupt::install();
    let cli = Cli::parse();
    for d in &cli.weights_dirs {
        lumen_core::model::card::allow_weights_dir(d);
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    let result = match run {
        Ok(r) => r,
        Err(payload) => {
            // A bug in lumen itself (packs and cards have their own guards).
            let at = LAST_PANIC.lock().ok().and_then(|m| m.clone()).unwrap_or_default();
            eprintln!("error: internal error: {}{at}", lumen_core::registry::panic_message(&*payload));
            std::process::exit(101);
        }
    };
    if let Err(e) = result {
        // One line per cause, never a backtrace.
        eprintln!("error: {e}");
        let mut said = e.to_string();
        for cause in e.chain().skip(1) {
            // Our errors often quote their source already; don't repeat it.
            let c = cause.to_string();
            if !said.contains(&c) {
                eprintln!("  caused by: {c}");
                said.push_str(&c);
            }
        }
        std::process::exit(1);
    }
}

/// Where the last panic happened, for the one-line report of an uncaught one.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Panics that a guard catches become one-line errors, so the default hook's
/// message and backtrace are printed only when RUST_BACKTRACE asks for them.
fn quiet_panics() {
    let verbose = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = LAST_PANIC.lock() {
            *m = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line()));
        }
        if verbose {
            default(info);
        }
    }));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let device = lumen_core::device::parse_device(&cli.device)?;
    match cli.command {
        Command::List(a) => cmd_list::run(a, &device),
        Command::Plugins(a) => cmd_plugins::run(a, &device),
        Command::Explain(a) => cmd_explain::run(a, &device),
        Command::Eval(a) => cmd_eval::run(a, &device),
        Command::Gallery(a) => cmd_gallery::run(a, &device),
        Command::Run(a) => cmd_run::run(a, &device),
        Command::Reproduce(a) => reproduce::run(a, &device),
        Command::TrainGenerator(a) => cmd_train_generator::run(a, &device),
        Command::Train(a) => cmd_train::run(a, &device),
        Command::Bench(a) => cmd_bench::run(a, &cli.device, &cli.weights_dirs, &device),
        Command::CheckPack(a) => cmd_plugins::check_pack(a),
    }
}
