//! `lumen run SCRIPT [-- ARGS]`: runs a Rhai pipeline (see scripts/README.md).

use crate::host;
use clap::Args;
use lumen_core::candle::Device;
use lumen_script::{default_out_dir, file_policy, run_file_isolated, Limits, ScriptOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct RunArgs {
    /// The script (`.rhai`).
    pub script: PathBuf,
    /// The only directory the script may write under (default: out/<script name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Another directory whose files the script may read (repeatable); it may
    /// always read under its own directory and its output directory.
    #[arg(long = "allow-read", value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// Stop the script after this many Rhai operations (at least 1).
    #[arg(long, default_value_t = Limits::default().max_operations)]
    pub max_operations: u64,
    /// Deepest nesting of script function calls (at most 1000, lumen_script::MAX_CALL_DEPTH).
    #[arg(long, default_value_t = Limits::default().max_call_levels)]
    pub max_call_depth: usize,
    /// Stop the script after this many seconds (checked between operations).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().timeout.as_secs_f64())]
    pub timeout: f64,
    /// The most elements one tensor made by the script may have.
    #[arg(long, default_value_t = Limits::default().max_tensor_elements)]
    pub max_tensor_elements: usize,
    /// Arguments for the script, after `--` (visible as ARGS; `arg("n", 5)` reads `n=7`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(a: RunArgs, device: &Device) -> anyhow::Result<()> {
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 1e9) {
        anyhow::bail!("--timeout must be a number of seconds above 0, got {}", a.timeout);
    }
    let limits = Limits {
        max_operations: a.max_operations,
        max_call_levels: a.max_call_depth,
        max_tensor_elements: a.max_tensor_elements,
        timeout: Duration::from_secs_f64(a.timeout),
        ..Limits::default()
    };
    limits.check()?;
    let registry = Arc::new(host::registry()?);
    let out_dir = a.out.clone().unwrap_or_else(|| default_out_dir(&a.script));
    // Paths that reach methods (sampler files, baselines, images, cards) obey the
    // same sandbox as the script's own output functions.
    let _policy = lumen_core::paths::install(file_policy(&a.script, &out_dir, &a.allow_read)?);
    let opts = ScriptOptions { out_dir, args: a.args, device: device.clone(), limits, script_dir: None };
    Ok(run_file_isolated(&a.script, registry, &opts)?)
}
