//! lumen-script: Rhai pipelines over lumen's models, data, methods and output.
//!
//! Scripts see typed values (models, data sets, tensors, method specifications,
//! explanations), never stringly-typed handles. Methods are built through the host's
//! [`Registry`], so plugin methods work and parameter errors are those of the CLI.
//! A script writes only under its output directory, imports only from its own
//! directory, and runs under operation, call-depth, tensor-size and wall-clock
//! limits ([`Limits`]). The host also installs a file policy for the run
//! ([`file_policy`]), so that paths handed to methods obey the same sandbox.
//! Errors carry the script's line and column.

pub mod api;
pub mod convert;
pub mod metrics;
pub mod output;
pub mod render;
pub mod sandbox;
pub mod types;

pub use api::{explain, top_mask, Host};
pub use metrics::MetricSpec;
pub use sandbox::{ImportResolver, OutDir};
pub use types::{Dataset, ExplanationValue, MethodSpec, ModelValue, Sample, TensorValue};

use lumen_core::candle::Device;
use lumen_core::{Error, Registry, Result};
use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The deepest nesting of script function calls a run may ask for. Each level
/// costs native stack, more with deep expressions in the function body; at this
/// depth the deepest body Rhai compiles still fits in [`SCRIPT_STACK`].
pub const MAX_CALL_DEPTH: usize = 1000;

/// The stack [`run_file_isolated`] gives a script (reserved, touched only as used).
pub const SCRIPT_STACK: usize = 512 << 20;

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
    /// Elements of one tensor that a script function may create (zeros, ones,
    /// random, tensor, reshape, broadcasting arithmetic).
    pub max_tensor_elements: usize,
    /// Wall-clock time, checked between Rhai operations: a method call that is
    /// running is not interrupted.
    pub timeout: Duration,
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
            max_tensor_elements: 1 << 28,
            timeout: Duration::from_secs(600),
        }
    }
}

impl Limits {
    /// Refuses limits that Rhai would read as "unlimited" or that could overflow
    /// the stack. Messages name the `lumen run` flags.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Script(m));
        if self.max_operations == 0 {
            return bad("--max-operations must be at least 1 (Rhai would read 0 as unlimited)".into());
        }
        if self.max_call_levels == 0 || self.max_call_levels > MAX_CALL_DEPTH {
            return bad(format!("--max-call-depth must be between 1 and {MAX_CALL_DEPTH}, got {}", self.max_call_levels));
        }
        if self.max_tensor_elements == 0 {
            return bad("--max-tensor-elements must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be more than 0 seconds".into());
        }
        for (v, what) in [(self.max_expr_depth, "expression depth"), (self.max_string_size, "string size"), (self.max_array_size, "array size"), (self.max_map_size, "map size")] {
            if v == 0 {
                return bad(format!("the {what} limit must be at least 1 (Rhai would read 0 as unlimited)"));
            }
        }
        Ok(())
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
    /// The directory `import` reads modules from ([`run_file`] sets it to the
    /// script's directory); `None`: no imports.
    pub script_dir: Option<PathBuf>,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            out_dir: PathBuf::from("out"),
            args: vec![],
            device: Device::Cpu,
            limits: Limits::default(),
            script_dir: None,
        }
    }
}

/// The file policy for running `script` (see [`lumen_core::paths`]): reads under the
/// script's directory, the output directory and `allow_read`; writes only under the
/// output directory, which is created.
pub fn file_policy(script: &Path, out_dir: &Path, allow_read: &[PathBuf]) -> Result<lumen_core::paths::Policy> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let script_dir = script_dir(script);
    let mut read = vec![script_dir];
    read.extend(allow_read.iter().cloned());
    lumen_core::paths::Policy::new(read, Some(out_dir), "allow another directory with --allow-read DIR")
}

fn script_dir(script: &Path) -> PathBuf {
    match script.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
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
        EvalAltResult::ErrorRuntime(d, _) | EvalAltResult::ErrorTerminated(d, _) => d.to_string(),
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
    opts.limits.check()?;
    let out = OutDir::new(&opts.out_dir)?;
    let host = Rc::new(
        Host::new(registry, opts.device.clone(), out, opts.args.clone())
            .with_max_tensor_elements(opts.limits.max_tensor_elements),
    );
    let mut engine = engine(&host, &opts.limits);
    engine.set_module_resolver(ImportResolver::new(opts.script_dir.as_deref())?);
    let mut scope = Scope::new();
    scope.push_constant("ARGS", api::string_list(&opts.args));
    scope.push_constant("OUT", host.out.root().display().to_string());
    let ast = engine
        .compile_with_scope(&scope, source)
        .map_err(|e| Error::Script(format_error(name, EvalAltResult::from(e))))?;
    // The clock starts after compiling; it is read every 256 operations.
    let (timeout, started) = (opts.limits.timeout, Instant::now());
    engine.on_progress(move |ops| {
        (ops % 256 == 0 && started.elapsed() >= timeout).then(|| {
            Dynamic::from(format!("the script ran longer than {} s (raise the limit with --timeout SECS)", timeout.as_secs_f64()))
        })
    });
    engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast).map_err(|e| Error::Script(format_error(name, *e)))
}

/// Runs a script file.
pub fn run_file(path: &Path, registry: Arc<Registry>, opts: &ScriptOptions) -> Result<Dynamic> {
    let source = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut opts = opts.clone();
    opts.script_dir.get_or_insert_with(|| script_dir(path));
    eval_source(&path.display().to_string(), &source, registry, &opts)
}

/// Runs a script file on a thread of its own with a [`SCRIPT_STACK`] stack, so that
/// recursion up to [`MAX_CALL_DEPTH`] ends with Rhai's error rather than a stack
/// overflow of the caller's thread. The value of the last statement is dropped.
pub fn run_file_isolated(path: &Path, registry: Arc<Registry>, opts: &ScriptOptions) -> Result<()> {
    let (path, opts) = (path.to_path_buf(), opts.clone());
    std::thread::Builder::new()
        .name("lumen-script".into())
        .stack_size(SCRIPT_STACK)
        .spawn(move || run_file(&path, registry, &opts).map(|_| ()))
        .map_err(|e| Error::Script(format!("cannot start the script thread: {e}")))?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests;
