//! `lumen run SCRIPT [-- ARGS]`: runs a Rhai pipeline (see scripts/README.md).

use crate::host;
use clap::Args;
use lumen_core::candle::Device;
use lumen_script::{default_out_dir, run_file, Limits, ScriptOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct RunArgs {
    /// The script (`.rhai`).
    pub script: PathBuf,
    /// The only directory the script may write under (default: out/<script name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop the script after this many Rhai operations.
    #[arg(long, default_value_t = Limits::default().max_operations)]
    pub max_operations: u64,
    /// Deepest nesting of script function calls.
    #[arg(long, default_value_t = Limits::default().max_call_levels)]
    pub max_call_depth: usize,
    /// Arguments for the script, after `--` (visible as ARGS; `arg("n", 5)` reads `n=7`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(a: RunArgs, device: &Device) -> anyhow::Result<()> {
    let registry = Arc::new(host::registry()?);
    let opts = ScriptOptions {
        out_dir: a.out.clone().unwrap_or_else(|| default_out_dir(&a.script)),
        args: a.args,
        device: device.clone(),
        limits: Limits { max_operations: a.max_operations, max_call_levels: a.max_call_depth, ..Limits::default() },
    };
    // The value of the script's last statement is not an output.
    let _ = run_file(&a.script, registry, &opts)?;
    Ok(())
}
