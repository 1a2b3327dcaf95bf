//! `lumen`: the host binary. Each subcommand lives in its own module.

mod cmd_list;
mod host;
mod reproduce;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lumen", version, about = "Explain why a neural network made a decision")]
struct Cli {
    /// Device: cpu or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every method, model, generator and sampler with its parameters.
    List(cmd_list::ListArgs),
    /// Regenerate a paper's experiment on our models (figures and tables in docs/).
    Reproduce(reproduce::ReproduceArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let device = lumen_core::device::parse_device(&cli.device)?;
        match cli.command {
            Command::List(a) => cmd_list::run(a, &device),
            Command::Reproduce(a) => reproduce::run(a, &device),
        }
    })();
    if let Err(e) = result {
        // One line per cause, never a backtrace.
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
