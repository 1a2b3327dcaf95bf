//! lumen-script: Rhai pipelines over lumen's models, data, methods and output.
//!
//! Scripts see typed values (models, data sets, tensors, method specifications,
//! explanations), never stringly-typed handles. Methods are built through the host's
//! [`Registry`], so plugin methods work and parameter errors are those of the CLI.
//! A script writes only under its output directory and runs under operation and
//! call-depth limits. Errors carry the script's line and column.

pub mod api;
pub mod convert;
pub mod metrics;
pub mod output;
pub mod render;
pub mod sandbox;
pub mod types;

pub use api::{explain, top_mask, Host};
pub use metrics::MetricSpec;
pub use sandbox::OutDir;
pub use types::{Dataset, ExplanationValue, MethodSpec, ModelValue, Sample, TensorValue};

use lumen_core::candle::Device;
use lumen_core::{Error, Registry, Result};
use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// Resource limits for one script run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rhai operations (roughly, evaluated expressions); native calls count as one.
    pub max_operations: u64,
    /// Depth of script function calls (recursion).
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 10_000_000,
            max_array_size: 1_000_000,
            max_map_size: 100_000,
        }
    }
}

/// How to run a script.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// The only directory the script may write under (created if missing).
    pub out_dir: PathBuf,
    /// The script's arguments, visible as `ARGS`.
    pub args: Vec<String>,
    pub device: Device,
    pub limits: Limits,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions { out_dir: PathBuf::from("out"), args: vec![], device: Device::Cpu, limits: Limits::default() }
    }
}

/// The default output directory of a script: `out/<script name>`.
pub fn default_out_dir(script: &Path) -> PathBuf {
    let stem = script.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "script".into());
    PathBuf::from("out").join(stem)
}

/// An engine with lumen's API and the limits applied.
pub fn engine(host: &Rc<Host>, limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        // A typo in a variable name is an error at compile time, with its position.
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    api::register_all(&mut engine, host);
    engine
}

/// Formats a Rhai error as `NAME:LINE:COLUMN: message`.
pub fn format_error(name: &str, mut err: EvalAltResult) -> String {
    let pos = err.take_position();
    let msg = match &err {
        EvalAltResult::ErrorRuntime(d, _) => d.to_string(),
        other => other.to_string(),
    };
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}: {msg}"),
        (Some(l), None) => format!("{name}:{l}: {msg}"),
        _ => format!("{name}: {msg}"),
    }
}

/// Compiles and runs `source` (called `name` in messages); returns the value of
/// its last statement.
pub fn eval_source(name: &str, source: &str, registry: Arc<Registry>, opts: &ScriptOptions) -> Result<Dynamic> {
    let out = OutDir::new(&opts.out_dir)?;
    let host = Rc::new(Host::new(registry, opts.device.clone(), out, opts.args.clone()));
    let engine = engine(&host, &opts.limits);
    let mut scope = Scope::new();
    scope.push_constant("ARGS", api::string_list(&opts.args));
    scope.push_constant("OUT", host.out.root().display().to_string());
    let ast = engine
        .compile_with_scope(&scope, source)
        .map_err(|e| Error::Script(format_error(name, EvalAltResult::from(e))))?;
    engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast).map_err(|e| Error::Script(format_error(name, *e)))
}

/// Runs a script file.
pub fn run_file(path: &Path, registry: Arc<Registry>, opts: &ScriptOptions) -> Result<Dynamic> {
    let source = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    eval_source(&path.display().to_string(), &source, registry, opts)
}

#[cfg(test)]
mod tests;
