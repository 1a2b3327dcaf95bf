//! A whole evaluation: every chosen method on `n` examples, judged by every chosen
//! metric. Work is done in chunks of `batch_size` examples; each (method, chunk) is
//! written to `OUT/chunks/` atomically as soon as it is done, so an interrupted run
//! resumes where it stopped (see [`store`](crate::store)). The report (CSV, JSON,
//! plots, `index.html`) is then built from the chunk files alone.
//!
//! At scale, a [`Shard`] computes only its (method, chunk) units (see
//! [`shard`](crate::shard)), [`merge`] checks and joins the shards' chunks into the
//! same report, and [`plan`] measures the cost of each method and metric and shows
//! the shard assignment.

use crate::data::{self, EvalData};
use crate::shard::{self, Shard};
use crate::store::{self, Chunk, ChunkResult, Store, LAYOUT};
use crate::{bail, err, report, Context, Result};
use lumen_core::candle::{Device, Tensor};
use lumen_core::metric::{Metric, MetricEntry, MetricInput};
use lumen_core::model::{Forward, ForwardOptions, ModelCard};
use lumen_core::{io, Attributor, Classifier, ModelInfo, Network, Params, Registry, Target};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What defines a run (and how to run it): the command line's `lumen eval` flags.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Registered model, unless `model_card` is given.
    pub model: String,
    pub model_card: Option<PathBuf>,
    /// Comma-separated methods, or `all`.
    pub methods: String,
    /// Comma-separated metrics, or `all` (those that apply).
    pub metrics: String,
    pub n: usize,
    pub out: PathBuf,
    pub seed: u64,
    pub batch_size: usize,
    /// `NAME.PARAM=VALUE` for methods and metrics.
    pub params: Vec<String>,
    /// A [`data`] kind.
    pub data: String,
    /// Use the gallery presets' lighter settings.
    pub light: bool,
    /// Example maps per method in the report.
    pub examples: usize,
    /// `METHOD=WEIGHT` cost weights for balancing shards.
    pub costs: Vec<String>,
    /// Directories method parameters may read besides the working directory and `out`.
    pub allow_read: Vec<PathBuf>,
    /// Stop after computing this many units (to test resuming).
    pub stop_after_chunks: Option<usize>,
}

impl EvalConfig {
    /// The configuration `args.json` saved (see [`saved_args`]), writing to `out`.
    pub fn from_saved(v: &Value, out: &Path, from: &Path) -> Result<EvalConfig> {
        let bad = |why: String| err!("{} does not hold valid arguments: {why}", from.display());
        let s = |k: &str| v[k].as_str().map(String::from).ok_or_else(|| bad(format!("'{k}' is missing or not a string")));
        let u = |k: &str| v[k].as_u64().ok_or_else(|| bad(format!("'{k}' is missing or not a number")));
        let words = |k: &str| -> Result<Vec<String>> {
            match &v[k] {
                Value::Null => Ok(vec![]),
                Value::Array(a) => {
                    a.iter().map(|x| x.as_str().map(String::from).ok_or_else(|| bad(format!("'{k}' holds a non-string")))).collect()
                }
                _ => Err(bad(format!("'{k}' is not a list"))),
            }
        };
        let model_card = match &v["model_card"] {
            Value::Null => None,
            Value::String(p) => Some(crate::slurm::absolute(Path::new(p))?),
            _ => return Err(bad("'model_card' is not a string".into())),
        };
        Ok(EvalConfig {
            model: if model_card.is_some() { v["model"].as_str().unwrap_or_default().to_string() } else { s("model")? },
            model_card,
            methods: s("methods")?,
            metrics: s("metrics")?,
            n: u("n")? as usize,
            out: out.to_path_buf(),
            seed: u("seed")?,
            batch_size: u("batch_size")? as usize,
            params: words("params")?,
            data: s("data")?,
            light: v["light"].as_bool() == Some(true),
            examples: u("examples")? as usize,
            costs: words("costs")?,
            allow_read: vec![],
            stop_after_chunks: None,
        })
    }
}

/// Where a run's messages and progress go (the host prints them).
pub trait Output {
    /// A line for the user.
    fn line(&self, s: &str);
    /// `total` units to do, `done` of them already done.
    fn start(&self, _total: usize, _done: usize) {}
    /// What is being computed now.
    fn message(&self, _s: &str) {}
    /// One more unit done.
    fn advance(&self) {}
    fn finish(&self) {}
}

/// Output that goes nowhere (tests, scripts that only want the files).
pub struct Quiet;
impl Output for Quiet {
    fn line(&self, _: &str) {}
}

macro_rules! say {
    ($o:expr, $($t:tt)*) => { $o.line(&format!($($t)*)) };
}

/// A plugin pack the host loaded (its version goes into the run key).
#[derive(Debug, Clone)]
pub struct PluginPack {
    pub name: String,
    pub crate_name: String,
    pub version: String,
    pub fingerprint: String,
}

/// The model of a run: a card file, or a registered name.
pub fn load_model(card: Option<&Path>, name: &str, reg: &Registry, device: &Device) -> Result<Arc<dyn Classifier>> {
    Ok(match card {
        Some(p) => lumen_core::model::load_card_model(p, device)?,
        None => reg.load_model(name, device)?,
    })
}

/// The cost weights of the run's methods (`costs`, saliency = 1 by default).
pub fn shard_costs(p: &Prepared, a: &EvalConfig) -> Result<BTreeMap<String, f64>> {
    shard::costs(&p.method_names(), &a.costs)
}

/// Splits `NAME.PARAM=VALUE` pairs between the chosen methods and metrics.
fn split_params(
    pairs: &[String],
    methods: &[String],
    metrics: &[String],
) -> Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>)> {
    let (mut pm, mut pk): (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) = Default::default();
    for p in pairs {
        let (key, value) = p.split_once('=').ok_or_else(|| err!("parameter '{p}' is not of the form NAME.PARAM=VALUE"))?;
        let (who, name) = key
            .split_once('.')
            .ok_or_else(|| err!("parameter '{p}' must name its method or metric: NAME.PARAM=VALUE"))?;
        let pair = format!("{name}={value}");
        if methods.iter().any(|m| m == who) {
            pm.entry(who.to_string()).or_default().push(pair);
        } else if metrics.iter().any(|m| m == who) {
            pk.entry(who.to_string()).or_default().push(pair);
        } else {
            bail!(
                "parameter '{p}' is for '{who}', which is neither an evaluated method ({}) nor metric ({})",
                methods.join(", "),
                metrics.join(", ")
            );
        }
    }
    Ok((pm, pk))
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// A comma-separated list of names, each at most once.
fn unique_list(s: &str, flag: &str) -> Result<Vec<String>> {
    let v = list(s);
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            bail!("{flag} names '{x}' twice");
        }
    }
    Ok(v)
}

/// A planned method: its built attributor and resolved parameters.
pub struct MethodPlan {
    pub name: String,
    pub method: Box<dyn Attributor>,
    pub params: BTreeMap<String, String>,
    /// The gallery's lighter settings applied (with `--light`).
    pub light: Vec<String>,
}

/// A planned metric.
pub struct MetricPlan {
    pub name: String,
    pub entry: &'static MetricEntry,
    pub metric: Box<dyn Metric>,
    pub params: BTreeMap<String, String>,
}

/// The seed of chunk `c`'s metric randomness: the same for every method, so methods
/// meet the same noise (common random numbers), and independent of which chunks a
/// resumed run still has to do.
fn chunk_seed(seed: u64, c: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(c as u64 + 1)
}

/// Everything a run needs before computing: built methods and metrics, the model,
/// the data and the run key.
pub struct Prepared {
    pub model: Arc<dyn Classifier>,
    pub info: ModelInfo,
    pub data: EvalData,
    pub plans: Vec<MethodPlan>,
    pub metric_plans: Vec<MetricPlan>,
    pub skipped: Vec<(String, String)>,
    pub key: Value,
    pub chunks: Vec<Range<usize>>,
    /// The file-access policy for method parameters, in force while the run lives.
    _policy: lumen_core::paths::Guard,
}

impl Prepared {
    pub fn method_names(&self) -> Vec<String> {
        self.plans.iter().map(|p| p.name.clone()).collect()
    }
    pub fn metric_names(&self) -> Vec<String> {
        self.metric_plans.iter().map(|p| p.name.clone()).collect()
    }
    /// (method, chunk) units in the run's canonical order: chunk-major.
    pub fn units(&self) -> Vec<(usize, usize)> {
        (0..self.chunks.len()).flat_map(|c| (0..self.plans.len()).map(move |m| (m, c))).collect()
    }
    /// The owning shard of every unit, and each shard's load, for `count` shards.
    fn assignment(&self, costs: &BTreeMap<String, f64>, count: usize) -> (Vec<usize>, Vec<u64>) {
        let w: Vec<u64> = self
            .units()
            .iter()
            .map(|&(m, c)| shard::unit_weight(costs[&self.plans[m].name], self.chunks[c].len()))
            .collect();
        shard::assign(&w, count)
    }
}

/// Parses the arguments, builds every method and metric, loads model and data, and
/// derives the run key. Names are checked first, so a typo fails before slow work.
pub fn prepare(a: &EvalConfig, reg: &Registry, plugins: &[PluginPack], device: &Device) -> Result<Prepared> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let methods: Vec<String> = if a.methods.trim() == "all" { reg.method_names() } else { unique_list(&a.methods, "--methods")? };
    if methods.is_empty() {
        bail!("--methods names no method");
    }
    for m in &methods {
        reg.method(m)?;
    }
    let all_metrics = a.metrics.trim() == "all";
    let metric_names: Vec<String> = if all_metrics { reg.metric_names() } else { unique_list(&a.metrics, "--metrics")? };
    if metric_names.is_empty() {
        bail!("--metrics names no metric (registered: {})", reg.metric_names().join(", "));
    }
    for m in &metric_names {
        reg.metric(m)?;
    }
    let (method_pairs, metric_pairs) = split_params(&a.params, &methods, &metric_names)?;
    let model = load_model(a.model_card.as_deref(), &a.model, reg, device)?;
    // The model is the user's choice; file paths in method parameters obey a sandbox,
    // held for the whole run by `Prepared`.
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut readable = vec![PathBuf::from(".")];
    readable.extend(a.allow_read.iter().cloned());
    let policy = lumen_core::paths::Policy::new(readable, Some(&a.out), "allow another directory with --allow-read DIR")?;
    let policy = lumen_core::paths::install(policy);
    let info = model.info().clone();
    let data = data::load(&a.data, a.n, a.seed, device)?;
    info.check_input(&data.xs.narrow(0, 0, 1)?)
        .map_err(|e| err!("--data {} does not fit model {}: {e}", a.data, info.name))?;

    // Metrics: skip (with a note) the ones that cannot apply when the user asked for all.
    let mut skipped: Vec<(String, String)> = vec![];
    let mut metric_plans = vec![];
    for name in &metric_names {
        let entry = reg.metric(name)?;
        let why = if entry.needs.masks && data.masks.is_none() {
            Some(format!("needs ground-truth masks, which --data {} does not have (use --data biased or genomics)", a.data))
        } else if entry.needs.network && model.network().is_none() {
            Some(format!("needs a model built from the explainable layer vocabulary; {} is not", info.name))
        } else {
            None
        };
        if let Some(why) = why {
            if !all_metrics {
                bail!("metric '{name}' {why}");
            }
            skipped.push((name.clone(), why));
            continue;
        }
        let params = Params::parse_pairs(metric_pairs.get(name).map(|v| v.as_slice()).unwrap_or(&[]))?;
        let metric = reg.build_metric(name, &params)?;
        let resolved = metric.params();
        metric_plans.push(MetricPlan { name: name.clone(), entry, metric, params: resolved });
    }
    if metric_plans.is_empty() {
        bail!("no metric applies: {}", skipped.iter().map(|(m, w)| format!("{m} {w}")).collect::<Vec<_>>().join("; "));
    }

    // Methods: --light settings, the run seed for stochastic methods, then the user's pairs.
    let mut plans = vec![];
    for m in &methods {
        let entry = reg.method(m)?;
        let has = |k: &str| entry.params().iter().any(|p| p.name == k);
        let light = if a.light { lumen_core::present::light_settings(reg, m, has) } else { vec![] };
        let mut pairs = light.clone();
        if has("seed") {
            pairs.push(format!("seed={}", a.seed));
        }
        pairs.extend(method_pairs.get(m).cloned().unwrap_or_default());
        let method = reg.build_method(m, &Params::parse_pairs(&pairs)?)?;
        let params = method.params();
        plans.push(MethodPlan { name: m.clone(), method, params, light });
    }

    // Everything that changes a figure is in the key; a different run is refused.
    let mut packs: Vec<&str> = vec![reg.models().find(|(e, _)| e.name == info.name).map(|(e, _)| e.pack).unwrap_or("card")];
    packs.extend(methods.iter().filter_map(|m| reg.method(m).ok().map(|e| e.pack)));
    packs.extend(metric_plans.iter().map(|m| m.entry.pack));
    let key = json!({
        "layout": LAYOUT,
        "lumen_version": env!("CARGO_PKG_VERSION"),
        "packs": pack_versions(&packs, plugins),
        "device": device_kind(device),
        "model": info.name,
        // The card's file name only: shards may see it under other paths; its content is hashed.
        "model_card": a.model_card.as_ref().map(|p| p.file_name().unwrap_or(p.as_os_str()).to_string_lossy().to_string()),
        // The model's own files are the user's choice, read outside the sandbox.
        "model_hash": lumen_core::paths::trusted(|| model_hash(a, reg, model.as_ref(), &data))?,
        "data": a.data,
        "n": a.n,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "methods": plans.iter().map(|p| json!({"name": p.name, "params": p.params})).collect::<Vec<_>>(),
        "metrics": metric_plans.iter().map(|p| json!({"name": p.name, "params": p.params})).collect::<Vec<_>>(),
    });
    let chunks = lumen_core::method::chunks(a.n, a.batch_size).collect();
    Ok(Prepared { model, info, data, plans, metric_plans, skipped, key, chunks, _policy: policy })
}

/// The device kind (the ordinal does not change a figure; under Slurm it is always 0).
pub fn device_kind(d: &Device) -> &'static str {
    if d.is_cuda() {
        "cuda"
    } else if d.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Version (and ABI fingerprint, for plugin files) of each pack the run uses.
fn pack_versions(packs: &[&str], plugins: &[PluginPack]) -> Value {
    let mut out = serde_json::Map::new();
    for p in packs {
        let found = plugins.iter().find(|r| r.name == *p || r.crate_name == p.replace('-', "_"));
        let v = match found {
            Some(r) => format!("{} (plugin, fingerprint {})", r.version, r.fingerprint),
            None => format!("{} (linked)", env!("CARGO_PKG_VERSION")),
        };
        out.insert(p.to_string(), json!(v));
    }
    Value::Object(out)
}

fn file_hash(p: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", p.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What identifies the model's numbers: the hashes of its card and weights files
/// (for `--model-card` and the shipped models, wherever LUMEN_MODELS_DIR points),
/// or for a model of another pack the hash of its logits on the first chunk.
fn model_hash(a: &EvalConfig, reg: &Registry, model: &dyn Classifier, data: &EvalData) -> Result<Value> {
    let card = match &a.model_card {
        Some(p) => Some(p.clone()),
        None if reg.models().any(|(e, _)| e.name == a.model && e.pack == "lumen-models") => {
            Some(lumen_models::card_path(&a.model)?)
        }
        None => None,
    };
    if let Some(p) = card {
        let weights = ModelCard::load(&p)?.weights_path(&p);
        return Ok(json!({"card": file_hash(&p)?, "weights": file_hash(&weights)?}));
    }
    let xs = data.xs.narrow(0, 0, a.n.min(a.batch_size))?;
    let logits: Vec<f32> = model.forward(&xs)?.flatten_all()?.to_vec1()?;
    let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    Ok(json!({"logits": store::sha256_hex(&bytes)}))
}

/// The arguments that define the run, as `args.json` keeps them for `merge` and
/// the Slurm scripts (everything but --out and what only says how to run).
pub fn saved_args(a: &EvalConfig) -> Value {
    json!({
        "model": a.model,
        "model_card": a.model_card,
        "methods": a.methods,
        "metrics": a.metrics,
        "n": a.n,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "params": a.params,
        "data": a.data,
        "light": a.light,
        "examples": a.examples,
        "costs": a.costs,
    })
}

/// `method chunks a, b; method2 chunks c` for error messages.
fn list_units(units: &[(usize, usize)], p: &Prepared) -> String {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(m, c) in units {
        by.entry(m).or_default().push(c);
    }
    by.iter()
        .map(|(m, cs)| {
            let cs: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
            format!("{} chunk{} {}", p.plans[*m].name, if cs.len() == 1 { "" } else { "s" }, cs.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Computes the run's (or shard's) missing units, then (without a shard) writes the report.
pub fn compute(
    a: &EvalConfig,
    p: &Prepared,
    shard: Option<Shard>,
    costs: &BTreeMap<String, f64>,
    started: Instant,
    out: &dyn Output,
) -> Result<()> {
    let _lock = shard::lock(&a.out, shard.unwrap_or(Shard::ALL))?;
    let store = Store::open(&a.out, &p.key)?;
    io::write_atomic(a.out.join("args.json"), serde_json::to_string_pretty(&saved_args(a))?.as_bytes())?;
    let methods = p.method_names();
    let metric_names = p.metric_names();
    let chunks = &p.chunks;
    let units = p.units();
    let nm = p.plans.len();
    let label = shard.map(|s| s.label());
    let owner = match shard {
        Some(s) => {
            let (owner, _) = p.assignment(costs, s.count);
            check_shard_costs(&a.out, s, costs)?;
            owner.into_iter().map(|o| o == s.index).collect::<Vec<bool>>()
        }
        None => vec![true; units.len()],
    };
    let mine = |m: usize, c: usize| owner[c * nm + m];
    // What is already done and checks out; anything else of ours is recomputed.
    let mut done = vec![false; units.len()];
    let mut invalid: Vec<String> = vec![];
    for &(m, c) in &units {
        if !mine(m, c) {
            continue;
        }
        match store.check(&methods[m], c, chunks[c].len(), &metric_names) {
            Chunk::Done(_) => done[c * nm + m] = true,
            Chunk::Missing => {}
            Chunk::Invalid(why) => invalid.push(format!("{} chunk {c} ({why})", methods[m])),
        }
    }
    if !invalid.is_empty() {
        say!(out, 
            "recomputing {} chunk file(s) that do not check out: {}{}",
            invalid.len(),
            invalid.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
            if invalid.len() > 3 { "; ..." } else { "" }
        );
    }
    let total = owner.iter().filter(|o| **o).count();
    let write_progress = |done: &[bool]| -> Result<()> {
        match shard {
            None => store.write_index(&methods, chunks.len(), |m, c| done[c * nm + m]).map(|_| ()),
            Some(s) => write_shard_file(&a.out, s, costs, &units, &owner, done, p),
        }
    };
    let done_before = done.iter().filter(|d| **d).count();
    write_progress(&done)?;
    if done_before > 0 {
        say!(out, "resuming {}: {done_before} of {total} (method, chunk) units already done", a.out.display());
    }
    if let Some(s) = shard {
        say!(out, "shard {}: {total} of {} (method, chunk) units", s.label(), units.len());
    }

    out.start(total, done_before);
    let mut computed = 0usize;
    // Chunk-major order, so an interrupted run has some figures for every method.
    for (c, range) in chunks.iter().enumerate() {
        let todo: Vec<(usize, &MethodPlan)> =
            p.plans.iter().enumerate().filter(|(m, _)| mine(*m, c) && !done[c * nm + m]).collect();
        if todo.is_empty() {
            continue;
        }
        let xs = p.data.xs.narrow(0, range.start, range.len())?;
        let targets = match &p.data.targets {
            Some(t) => t[range.clone()].to_vec(),
            None => lumen_core::target::predict(p.model.as_ref(), &xs)?,
        };
        let masks = p.data.masks.as_ref().map(|m| m.narrow(0, range.start, range.len())).transpose()?;
        for (m, plan) in todo {
            if a.stop_after_chunks.is_some_and(|k| computed >= k) {
                out.finish();
                write_progress(&done)?;
                say!(out, 
                    "stopped after {computed} chunks as asked; rerun the same command to resume ({})",
                    a.out.display()
                );
                return Ok(());
            }
            out.message(&format!("{} chunk {}/{}", plan.name, c + 1, chunks.len()));
            let r = eval_chunk(p.model.as_ref(), plan, &p.metric_plans, &xs, &targets, masks.as_ref(), c, range, a.seed);
            let (r, maps) = r;
            if c == 0 {
                if let Some(maps) = maps {
                    let k = a.examples.min(range.len());
                    if k > 0 {
                        let mut t = HashMap::new();
                        t.insert("attribution".to_string(), maps.narrow(0, 0, k)?.contiguous()?);
                        io::save_safetensors(store.examples_path(&plan.name), &t)?;
                    }
                }
            }
            let line = match &r.error {
                Some(e) => format!("{:<22} chunk {:>3}: FAILED ({:.1} s): {e}", plan.name, c + 1, r.seconds),
                None => {
                    let failed: Vec<&String> = r.metrics.iter().filter(|(_, v)| v.is_err()).map(|(k, _)| k).collect();
                    let metric_s: f64 = r.metric_seconds.values().sum();
                    format!(
                        "{:<22} chunk {:>3}: maps {:.1} s, metrics {:.1} s{}",
                        plan.name,
                        c + 1,
                        r.seconds,
                        metric_s,
                        if failed.is_empty() {
                            String::new()
                        } else {
                            format!(", n/a: {}", failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                        }
                    )
                }
            };
            store.save(&plan.name, &r, label.as_deref())?;
            done[c * nm + m] = true;
            write_progress(&done)?;
            out.line(&line);
            out.advance();
            computed += 1;
        }
    }
    out.finish();
    if let Some(s) = shard {
        say!(out, 
            "shard {} done: {total} units ({computed} computed, {done_before} reused) in {:.1} s; when every shard is done: \
             lumen eval merge DIR... --out DIR",
            s.label(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let written = write_report(a, p, &store, &p.key)?;
    say!(out, 
        "evaluated {} methods × {} metrics on {} examples in {:.1} s; wrote {}",
        p.plans.len(),
        p.metric_plans.len(),
        a.n,
        started.elapsed().as_secs_f64(),
        written.display()
    );
    Ok(())
}

pub fn write_report(a: &EvalConfig, p: &Prepared, store: &Store, key: &Value) -> Result<PathBuf> {
    let ctx = report::Context {
        args: a,
        model: p.model.as_ref(),
        info: &p.info,
        data: &p.data,
        methods: &p.plans,
        metrics: &p.metric_plans,
        skipped: &p.skipped,
        chunks: p.chunks.len(),
        key,
    };
    report::write(store, &ctx).context("writing the report")
}

fn shard_file(dir: &Path, s: Shard) -> PathBuf {
    dir.join("shards").join(format!("{}-of-{}.json", s.index, s.count))
}

/// `shards/K-of-N.json`: the shard's cost weights, its units and its progress.
fn write_shard_file(
    dir: &Path,
    s: Shard,
    costs: &BTreeMap<String, f64>,
    units: &[(usize, usize)],
    owner: &[bool],
    done: &[bool],
    p: &Prepared,
) -> Result<()> {
    let mine: Vec<usize> = (0..units.len()).filter(|u| owner[*u]).collect();
    let n_done = mine.iter().filter(|u| done[**u]).count();
    let v = json!({
        "shard": s.index, "count": s.count, "costs": costs,
        "units": mine.iter().map(|u| json!({"method": p.plans[units[*u].0].name, "chunk": units[*u].1, "done": done[*u]})).collect::<Vec<_>>(),
        "done_count": n_done, "total": mine.len(), "complete": n_done == mine.len(),
    });
    let path = shard_file(dir, s);
    std::fs::create_dir_all(path.parent().expect("shards/"))?;
    io::write_atomic(&path, serde_json::to_string_pretty(&v)?.as_bytes())?;
    Ok(())
}

/// Shards of one count in one directory must split the units alike, so they must
/// use the same cost weights.
fn check_shard_costs(dir: &Path, s: Shard, costs: &BTreeMap<String, f64>) -> Result<()> {
    for k in 0..s.count {
        let other = Shard { index: k, count: s.count };
        let Ok(text) = std::fs::read_to_string(shard_file(dir, other)) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        if v["costs"] != json!(costs) {
            bail!(
                "shard {} in {} was assigned with other --cost weights ({} there, {} now); all shards of a run need the same",
                other.label(),
                dir.display(),
                v["costs"],
                json!(costs)
            );
        }
    }
    Ok(())
}

/// `lumen eval merge DIR... --out DIR`.
pub fn merge(dirs_in: &[PathBuf], out_dir: &Path, reg: &Registry, plugins: &[PluginPack], device: &Device, out: &dyn Output) -> Result<()> {
    let started = Instant::now();
    let mut dirs: Vec<(PathBuf, PathBuf)> = vec![];
    for d in dirs_in {
        let canon = d.canonicalize().map_err(|e| err!("merge: {}: {e}", d.display()))?;
        if let Some((prev, _)) = dirs.iter().find(|(_, c)| *c == canon) {
            bail!("merge: {} is given twice (as {} and {})", canon.display(), prev.display(), d.display());
        }
        dirs.push((d.clone(), canon));
    }
    let read_json = |p: &Path| -> Result<Value> {
        let text = std::fs::read_to_string(p).map_err(|e| {
            err!("merge: {} is not a lumen eval run directory ({}: {e})", p.parent().unwrap_or(p).display(), p.display())
        })?;
        serde_json::from_str(&text).map_err(|e| err!("merge: {} is not JSON: {e}", p.display()))
    };
    let key = read_json(&dirs[0].0.join("run.json"))?;
    for (d, _) in &dirs[1..] {
        let other = read_json(&d.join("run.json"))?;
        let diff = store::differences(&key, &other);
        if !diff.is_empty() {
            bail!("{} and {} hold different runs ({})", dirs[0].0.display(), d.display(), diff.join("; "));
        }
    }
    let args_path = dirs[0].0.join("args.json");
    let a = EvalConfig::from_saved(&read_json(&args_path)?, out_dir, &args_path)?;
    let p = prepare(&a, reg, plugins, device)?;
    // The merging machine may have another device; everything else must be as computed.
    let mut now = p.key.clone();
    now["device"] = key["device"].clone();
    let diff = store::differences(&key, &now);
    if !diff.is_empty() {
        bail!(
            "the run in {} was computed with other software or models than this lumen has ({}); merge where it was computed",
            dirs[0].0.display(),
            diff.join("; ")
        );
    }
    let methods = p.method_names();
    let metric_names = p.metric_names();
    let units = p.units();
    let nm = p.plans.len();
    let stores: Vec<Store> = dirs.iter().map(|(d, _)| Store { dir: d.clone(), key_hash: store::key_hash(&key) }).collect();
    let mut found: Vec<Vec<usize>> = vec![vec![]; units.len()];
    let mut invalid: Vec<String> = vec![];
    let mut shard_counts: Vec<usize> = vec![];
    for (i, st) in stores.iter().enumerate() {
        for &(mi, c) in &units {
            match st.check(&methods[mi], c, p.chunks[c].len(), &metric_names) {
                Chunk::Done(_) => {
                    found[c * nm + mi].push(i);
                    if let Some(n) = chunk_shard_count(&st.chunk_path(&methods[mi], c)) {
                        if !shard_counts.contains(&n) {
                            shard_counts.push(n);
                        }
                    }
                }
                Chunk::Missing => {}
                Chunk::Invalid(why) => invalid.push(format!("{} ({why})", st.chunk_path(&methods[mi], c).display())),
            }
        }
    }
    if !invalid.is_empty() {
        bail!("merge: {} chunk file(s) do not belong to this run: {}", invalid.len(), invalid.join("; "));
    }
    let missing: Vec<(usize, usize)> = units.iter().copied().filter(|&(mi, c)| found[c * nm + mi].is_empty()).collect();
    let dups: Vec<String> = units
        .iter()
        .filter(|&&(mi, c)| found[c * nm + mi].len() > 1)
        .map(|&(mi, c)| {
            let ds: Vec<String> = found[c * nm + mi].iter().map(|&i| dirs[i].0.display().to_string()).collect();
            format!("{} chunk {c} (in {})", methods[mi], ds.join(" and "))
        })
        .collect();
    if !missing.is_empty() {
        // Which shards own them, when every present chunk came from one shard count.
        let owners = match shard_counts.as_slice() {
            [n] => {
                let costs = shard::costs(&methods, &a.costs)?;
                let (owner, _) = p.assignment(&costs, *n);
                let mut s: Vec<usize> = missing.iter().map(|&(mi, c)| owner[c * nm + mi]).collect();
                s.sort();
                s.dedup();
                format!(" (computed by shard {}; rerun it)", s.iter().map(|k| format!("{k}/{n}")).collect::<Vec<_>>().join(", "))
            }
            _ => String::new(),
        };
        bail!("merge: {} of {} chunks are missing: {}{owners}", missing.len(), units.len(), list_units(&missing, &p));
    }
    if !dups.is_empty() {
        bail!("merge: {} chunks are present more than once: {}", dups.len(), dups.join("; "));
    }
    // Gather everything in --out, which becomes a complete run directory.
    let _lock = shard::lock(out_dir, Shard::ALL)?;
    let dest = Store::open(out_dir, &key)?;
    let out_canon = out_dir.canonicalize()?;
    let mut copied = 0;
    for &(mi, c) in &units {
        let from = found[c * nm + mi][0];
        if dirs[from].1 == out_canon {
            continue;
        }
        let src = stores[from].chunk_path(&methods[mi], c);
        let bytes = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        io::write_atomic(dest.chunk_path(&methods[mi], c), &bytes)?;
        copied += 1;
        if c == 0 {
            let ex = stores[from].examples_path(&methods[mi]);
            if ex.exists() {
                let bytes = std::fs::read(&ex).with_context(|| format!("reading {}", ex.display()))?;
                io::write_atomic(dest.examples_path(&methods[mi]), &bytes)?;
            }
        }
    }
    io::write_atomic(out_dir.join("args.json"), serde_json::to_string_pretty(&saved_args(&a))?.as_bytes())?;
    dest.write_index(&methods, p.chunks.len(), |_, _| true)?;
    let written = write_report(&a, &p, &dest, &key)?;
    say!(out, 
        "merged {} chunks from {} director{} ({copied} copied) in {:.1} s; wrote {}",
        units.len(),
        dirs.len(),
        if dirs.len() == 1 { "y" } else { "ies" },
        started.elapsed().as_secs_f64(),
        written.display()
    );
    Ok(())
}

/// N of the `"shard": "K/N"` a chunk file was computed by.
fn chunk_shard_count(p: &Path) -> Option<usize> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    v["shard"].as_str()?.split_once('/')?.1.parse().ok()
}

/// A model wrapper that counts examples through forward passes, and among them the
/// ones whose input is tracked for gradients (each then has one backward pass).
struct Counting {
    inner: Arc<dyn Classifier>,
    forward: AtomicUsize,
    backward: AtomicUsize,
}

impl Counting {
    fn count(&self, xs: &Tensor) {
        let b = xs.dims().first().copied().unwrap_or(1);
        self.forward.fetch_add(b, Ordering::Relaxed);
        if xs.track_op() {
            self.backward.fetch_add(b, Ordering::Relaxed);
        }
    }
    fn take(&self) -> (usize, usize) {
        (self.forward.swap(0, Ordering::Relaxed), self.backward.swap(0, Ordering::Relaxed))
    }
}

impl Classifier for Counting {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn forward(&self, xs: &Tensor) -> lumen_core::Result<Tensor> {
        self.count(xs);
        self.inner.forward(xs)
    }
    fn network(&self) -> Option<&Network> {
        self.inner.network()
    }
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> lumen_core::Result<Forward> {
        self.count(xs);
        self.inner.forward_with(xs, opts)
    }
    fn input_gradient(
        &self,
        xs: &Tensor,
        seed: &Tensor,
        opts: &ForwardOptions,
    ) -> lumen_core::Result<Option<lumen_core::model::Reverse>> {
        let r = self.inner.input_gradient(xs, seed, opts)?;
        if r.is_some() {
            // One forward and one backward, as the autograd path counts them.
            let b = xs.dims().first().copied().unwrap_or(1);
            self.forward.fetch_add(b, Ordering::Relaxed);
            self.backward.fetch_add(b, Ordering::Relaxed);
        }
        Ok(r)
    }
}

/// One measured step of `--plan`, per example of the sample.
struct Measured {
    forward: f64,
    backward: f64,
    seconds: f64,
    note: Option<String>,
}

/// `--plan [N]`: measures each method and metric on the first examples (at most 2,
/// one chunk's worth), estimates the whole run, and shows the shard assignment.
/// `--plan [N]`.
pub fn plan(a: &EvalConfig, p: &Prepared, costs: &BTreeMap<String, f64>, n_shards: usize, out: &dyn Output) -> Result<()> {
    let k = a.n.min(a.batch_size).min(2);
    let counting = Counting { inner: p.model.clone(), forward: AtomicUsize::new(0), backward: AtomicUsize::new(0) };
    let xs = p.data.xs.narrow(0, 0, k)?;
    let targets = match &p.data.targets {
        Some(t) => t[..k].to_vec(),
        None => lumen_core::target::predict(p.model.as_ref(), &xs)?,
    };
    let masks = p.data.masks.as_ref().map(|m| m.narrow(0, 0, k)).transpose()?;
    let per = |(f, b): (usize, usize), s: f64, note: Option<String>| Measured {
        forward: f as f64 / k as f64,
        backward: b as f64 / k as f64,
        seconds: s / k as f64,
        note,
    };
    let mut rows: Vec<(String, String, Measured)> = vec![];
    let mut per_method_s: BTreeMap<String, f64> = BTreeMap::new();
    for plan in &p.plans {
        let t0 = Instant::now();
        let maps = plan.method.attribute(&counting, &xs, &Target::Classes(targets.clone())).map(|e| e.attribution().detach());
        let s = t0.elapsed().as_secs_f64();
        let mut total = s / k as f64;
        match maps {
            Err(e) => {
                rows.push((plan.name.clone(), "(maps)".into(), per(counting.take(), s, Some(format!("fails: {e}")))));
            }
            Ok(maps) => {
                rows.push((plan.name.clone(), "(maps)".into(), per(counting.take(), s, None)));
                for m in &p.metric_plans {
                    let mut input = MetricInput::new(&counting, &xs, &targets, &maps).with_seed(chunk_seed(a.seed, 0));
                    if m.entry.needs.method {
                        input = input.with_method(plan.method.as_ref());
                    }
                    if let Some(mk) = &masks {
                        input = input.with_masks(mk);
                    }
                    let t0 = Instant::now();
                    let r = m.metric.evaluate(&input);
                    let s = t0.elapsed().as_secs_f64();
                    total += s / k as f64;
                    let note = r.err().map(|e| format!("fails: {e}"));
                    rows.push((plan.name.clone(), m.name.clone(), per(counting.take(), s, note)));
                }
            }
        }
        per_method_s.insert(plan.name.clone(), total);
    }
    let units = p.units();
    say!(out, 
        "plan: model {}, {} examples in {} chunks of {}, {} methods × {} metrics = {} (method, chunk) units; measured on {k} example{} ({})",
        p.info.name,
        a.n,
        p.chunks.len(),
        a.batch_size,
        p.plans.len(),
        p.metric_plans.len(),
        units.len(),
        if k == 1 { "" } else { "s" },
        device_kind(p.model.device())
    );
    say!(out, "{:<22} {:<22} {:>12} {:>12} {:>11} {:>12}", "method", "metric", "forward/ex", "backward/ex", "s/ex", format!("est. s (n={})", a.n));
    let mut total_s = 0.0;
    for (m, k, r) in &rows {
        total_s += r.seconds * a.n as f64;
        say!(out, 
            "{m:<22} {k:<22} {:>12.1} {:>12.1} {:>11.4} {:>12.1}{}",
            r.forward,
            r.backward,
            r.seconds,
            r.seconds * a.n as f64,
            r.note.as_deref().map(|n| format!("  {n}")).unwrap_or_default()
        );
    }
    say!(out, "estimated total: {total_s:.0} s of compute (forward/backward: examples through the model per evaluated example)");
    // Measured weights relative to saliency (or to the cheapest method).
    let base = per_method_s.get("saliency").copied().filter(|s| *s > 0.0).unwrap_or_else(|| {
        per_method_s.values().copied().filter(|s| *s > 0.0).fold(f64::INFINITY, f64::min)
    });
    let measured: Vec<String> = per_method_s
        .iter()
        .map(|(m, s)| format!("{m}={}", if base.is_finite() && *s > 0.0 { format!("{:.3}", (s / base).max(0.001)) } else { "1".into() }))
        .collect();
    say!(out, 
        "cost weights in use: {}",
        costs.iter().map(|(m, c)| format!("{m}={c}")).collect::<Vec<_>>().join(",")
    );
    say!(out, 
        "measured weights:    {} (maps + metrics per example, relative to {}; pass them as --cost to balance shards by them)",
        measured.join(","),
        if per_method_s.contains_key("saliency") { "saliency" } else { "the cheapest method" }
    );
    let est = |owner: &[usize], count: usize| -> Vec<(usize, f64)> {
        let mut v = vec![(0usize, 0f64); count];
        for (u, &(m, c)) in units.iter().enumerate() {
            v[owner[u]].0 += 1;
            v[owner[u]].1 += per_method_s[&p.plans[m].name] * p.chunks[c].len() as f64;
        }
        v
    };
    if n_shards == 0 {
        say!(out, "shards (assigned by the weights in use; seconds from the measurement):");
        say!(out, "{:>6} {:>22} {:>12}", "N", "longest shard est. s", "balance");
        let mut n = 1;
        while n <= units.len() {
            let (owner, _) = p.assignment(costs, n);
            let e = est(&owner, n);
            let longest = e.iter().map(|x| x.1).fold(0.0, f64::max);
            let mean = e.iter().map(|x| x.1).sum::<f64>() / n as f64;
            say!(out, "{n:>6} {longest:>22.1} {:>11.0}%", if longest > 0.0 { 100.0 * mean / longest } else { 100.0 });
            n *= 2;
        }
        say!(out, "(--plan N shows the units of each of N shards)");
        return Ok(());
    }
    let count = n_shards.min(units.len());
    if count < n_shards {
        say!(out, "note: {n_shards} shards asked, but the run has only {} units; {count} shards are enough", units.len());
    }
    let (owner, _) = p.assignment(costs, count);
    let e = est(&owner, count);
    say!(out, "{:>6} {:>6} {:>10}  units (method chunks)", "shard", "units", "est. s");
    for (s, (nu, secs)) in e.iter().enumerate() {
        let mine: Vec<(usize, usize)> = units.iter().enumerate().filter(|(u, _)| owner[*u] == s).map(|(_, x)| *x).collect();
        say!(out, "{:>6} {:>6} {:>10.1}  {}", format!("{s}/{count}"), nu, secs, list_units(&mine, p));
    }
    Ok(())
}

/// One method on one chunk: the maps, then every metric. Failures become notes.
#[allow(clippy::too_many_arguments)]
fn eval_chunk(
    model: &dyn Classifier,
    plan: &MethodPlan,
    metrics: &[MetricPlan],
    xs: &Tensor,
    targets: &[usize],
    masks: Option<&Tensor>,
    c: usize,
    range: &std::ops::Range<usize>,
    seed: u64,
) -> (ChunkResult, Option<Tensor>) {
    let mut r = ChunkResult {
        chunk: c,
        start: range.start,
        len: range.len(),
        targets: targets.to_vec(),
        params: plan.params.clone(),
        error: None,
        seconds: 0.0,
        metrics: BTreeMap::new(),
        metric_seconds: BTreeMap::new(),
    };
    let t0 = Instant::now();
    let maps = (|| -> Result<Tensor> {
        let e = plan.method.attribute(model, xs, &Target::Classes(targets.to_vec()))?;
        if !e.params.is_empty() {
            r.params = e.params.clone();
        }
        let a = e.attribution().detach();
        if a.dims() != xs.dims() {
            bail!("attribution has shape {:?}, the input {:?}", a.dims(), xs.dims());
        }
        Ok(a)
    })();
    r.seconds = t0.elapsed().as_secs_f64();
    let maps = match maps {
        Ok(m) => m,
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            return (r, None);
        }
    };
    for m in metrics {
        let t0 = Instant::now();
        let mut input = MetricInput::new(model, xs, targets, &maps).with_seed(chunk_seed(seed, c));
        if m.entry.needs.method {
            input = input.with_method(plan.method.as_ref());
        }
        if let Some(mk) = masks {
            input = input.with_masks(mk);
        }
        let out = m.metric.evaluate(&input).map_err(|e| e.to_string()).and_then(|o| {
            if o.len() == range.len() {
                Ok(o)
            } else {
                Err(format!("{} returned {} scores for {} examples", m.name, o.len(), range.len()))
            }
        });
        r.metric_seconds.insert(m.name.clone(), t0.elapsed().as_secs_f64());
        r.metrics.insert(m.name.clone(), out);
    }
    (r, Some(maps))
}
