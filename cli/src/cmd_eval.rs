//! `lumen eval`: every chosen method on `n` examples, judged by every chosen metric.
//! Work is done in chunks of `--batch-size` examples; each (method, chunk) is
//! written to `DIR/chunks/` atomically as soon as it is done, so an interrupted run
//! resumes where it stopped (see `eval::store`). The report (CSV, JSON, plots,
//! `index.html`) is then built from the chunk files alone.

use crate::cmd_explain::ModelArgs;
use crate::cmd_gallery::GALLERY_SETTINGS;
use crate::eval::store::{ChunkResult, Store, LAYOUT};
use crate::eval::report;
use crate::host;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::biased::BiasSquare;
use lumen_core::data::genomics::{Genomics, GenomicsConfig};
use lumen_core::data::{Mnist, Split};
use lumen_core::metric::{Metric, MetricEntry, MetricInput};
use lumen_core::{io, Attributor, Classifier, Params, Target};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
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
    /// Another directory whose files method parameters may read (repeatable); they
    /// may always read under the working directory and --out, and write under --out.
    #[arg(long = "allow-read", value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// Stop after computing this many (method, chunk) units (to test resuming).
    #[arg(long, hide = true)]
    pub stop_after_chunks: Option<usize>,
}

/// The evaluated examples.
pub struct EvalData {
    pub xs: Tensor,
    /// Fixed target per example, or `None` for the predicted class.
    pub targets: Option<Vec<usize>>,
    pub labels: Vec<usize>,
    /// Index of each example in its data set.
    pub index: Vec<usize>,
    pub masks: Option<Tensor>,
    pub description: String,
}

/// Available examples of a data kind, and how they are drawn.
fn load_data(kind: &str, n: usize, seed: u64, device: &Device) -> anyhow::Result<EvalData> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let take = |mut pool: Vec<usize>, what: &str, rng: &mut rand::rngs::StdRng| -> anyhow::Result<Vec<usize>> {
        if n > pool.len() {
            bail!("--n {n} exceeds the {} examples of {what}", pool.len());
        }
        pool.shuffle(rng);
        pool.truncate(n);
        Ok(pool)
    };
    match kind {
        "mnist" => {
            let data = Mnist::load()?;
            let idx = take((0..data.len(Split::Test)).collect(), "the MNIST-5k test split", &mut rng)?;
            let (xs, labels) = data.batch(Split::Test, &idx, device)?;
            Ok(EvalData {
                xs,
                targets: None,
                labels,
                index: idx,
                masks: None,
                description: "MNIST-5k test digits (a seeded draw), each explained for its predicted class".into(),
            })
        }
        "biased" => {
            let data = Mnist::load()?;
            let sq = BiasSquare::default();
            let test = data.indices(Split::Test);
            let pool: Vec<usize> = (0..test.len()).filter(|&i| data.labels[test[i]] != 8).collect();
            let idx = take(pool, "MNIST-5k test digits other than 8", &mut rng)?;
            let (xs, labels) = data.batch(Split::Test, &idx, device)?;
            let xs = sq.apply(&xs)?;
            let (h, w) = (xs.dim(2)?, xs.dim(3)?);
            let masks = sq.mask(h, w, device)?.unsqueeze(0)?.repeat((n, 1, 1, 1))?;
            Ok(EvalData {
                xs,
                targets: Some(vec![8; n]),
                labels,
                index: idx,
                masks: Some(masks),
                description: format!(
                    "MNIST-5k test digits other than 8 with the bias square ({}×{} at row {}, column {}, value {}), \
                     each explained for class 8; the ground-truth mask is the square",
                    sq.size, sq.size, sq.top, sq.left, sq.value
                ),
            })
        }
        "genomics" => {
            let g = Genomics::simulate(&GenomicsConfig::test())?;
            let pool: Vec<usize> = (0..g.seqs.len()).filter(|&i| g.seqs[i].label == 1).collect();
            let idx = take(pool, "positive genomics test sequences", &mut rng)?;
            let xs = g.onehot(&idx, device)?;
            let l = g.config.length;
            let mut m = vec![0f32; n * l];
            for (b, &i) in idx.iter().enumerate() {
                for k in 0..lumen_core::data::genomics::MOTIFS.len() {
                    for (p, inside) in g.seqs[i].mask(k).into_iter().enumerate() {
                        if inside {
                            m[b * l + p] = 1.0;
                        }
                    }
                }
            }
            Ok(EvalData {
                xs,
                targets: Some(vec![1; n]),
                labels: vec![1; n],
                index: idx,
                masks: Some(Tensor::from_vec(m, (n, l), device)?),
                description: "positive sequences of the genomics test simulation (seed 2), explained for class 1; \
                              the ground-truth mask is the planted motifs"
                    .into(),
            })
        }
        other => bail!("unknown --data '{other}' (known: mnist, biased, genomics)"),
    }
}

/// Splits `NAME.PARAM=VALUE` pairs between the chosen methods and metrics.
fn split_params(
    pairs: &[String],
    methods: &[String],
    metrics: &[String],
) -> anyhow::Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>)> {
    let (mut pm, mut pk): (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) = Default::default();
    for p in pairs {
        let (key, value) = p.split_once('=').ok_or_else(|| anyhow!("parameter '{p}' is not of the form NAME.PARAM=VALUE"))?;
        let (who, name) = key
            .split_once('.')
            .ok_or_else(|| anyhow!("parameter '{p}' must name its method or metric: NAME.PARAM=VALUE"))?;
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

pub fn run(a: EvalArgs, device: &Device) -> anyhow::Result<()> {
    let started = Instant::now();
    let reg = host::registry()?;
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Names first: a typo should fail before any slow work.
    let methods: Vec<String> = if a.methods.trim() == "all" { reg.method_names() } else { list(&a.methods) };
    if methods.is_empty() {
        bail!("--methods names no method");
    }
    for m in &methods {
        reg.method(m)?;
    }
    let all_metrics = a.metrics.trim() == "all";
    let metric_names: Vec<String> = if all_metrics { reg.metric_names() } else { list(&a.metrics) };
    if metric_names.is_empty() {
        bail!("--metrics names no metric (registered: {})", reg.metric_names().join(", "));
    }
    for m in &metric_names {
        reg.metric(m)?;
    }
    let (method_pairs, metric_pairs) = split_params(&a.params, &methods, &metric_names)?;
    let model = a.model.load(&reg, device)?;
    // The model is the user's choice; file paths in method parameters obey a sandbox.
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut readable = vec![PathBuf::from(".")];
    readable.extend(a.allow_read.iter().cloned());
    let policy = lumen_core::paths::Policy::new(readable, Some(&a.out), "allow another directory with --allow-read DIR")?;
    let _policy = lumen_core::paths::install(policy);
    let info = model.info().clone();
    let data = load_data(&a.data, a.n, a.seed, device)?;
    info.check_input(&data.xs.narrow(0, 0, 1)?)
        .map_err(|e| anyhow!("--data {} does not fit model {}: {e}", a.data, info.name))?;

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
        let has = |k: &str| entry.params.iter().any(|p| p.name == k);
        let mut pairs = vec![];
        let mut light = vec![];
        if a.light {
            for (meth, k, v) in GALLERY_SETTINGS {
                if meth == m && has(k) {
                    pairs.push(format!("{k}={v}"));
                    light.push(format!("{k}={v}"));
                }
            }
        }
        if has("seed") {
            pairs.push(format!("seed={}", a.seed));
        }
        pairs.extend(method_pairs.get(m).cloned().unwrap_or_default());
        let method = reg.build_method(m, &Params::parse_pairs(&pairs)?)?;
        let params = method.params();
        plans.push(MethodPlan { name: m.clone(), method, params, light });
    }

    // Everything that changes a figure is in the key; a different run is refused.
    let key = json!({
        "layout": LAYOUT,
        "model": info.name,
        "model_card": a.model.model_card.as_ref().map(|p| p.display().to_string()),
        "data": a.data,
        "n": a.n,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "methods": plans.iter().map(|p| json!({"name": p.name, "params": p.params})).collect::<Vec<_>>(),
        "metrics": metric_plans.iter().map(|p| json!({"name": p.name, "params": p.params})).collect::<Vec<_>>(),
    });
    let store = Store::open(&a.out, &key)?;
    let chunks: Vec<std::ops::Range<usize>> = lumen_core::method::chunks(a.n, a.batch_size).collect();
    let (done, total) = store.write_index(&methods, chunks.len())?;
    if done > 0 {
        println!("resuming {}: {done} of {total} (method, chunk) units already done", a.out.display());
    }

    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} eval [{bar:30}] {pos}/{len} {msg} ({elapsed}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_position(done as u64);
    pb.reset_eta();
    let mut computed = 0usize;
    // Chunk-major order, so an interrupted run has some figures for every method.
    for (c, range) in chunks.iter().enumerate() {
        let todo: Vec<&MethodPlan> = plans.iter().filter(|p| !store.is_done(&p.name, c)).collect();
        if todo.is_empty() {
            continue;
        }
        let xs = data.xs.narrow(0, range.start, range.len())?;
        let targets = match &data.targets {
            Some(t) => t[range.clone()].to_vec(),
            None => lumen_core::target::predict(model.as_ref(), &xs)?,
        };
        let masks = data.masks.as_ref().map(|m| m.narrow(0, range.start, range.len())).transpose()?;
        for plan in todo {
            if a.stop_after_chunks.is_some_and(|k| computed >= k) {
                pb.finish_and_clear();
                store.write_index(&methods, chunks.len())?;
                println!(
                    "stopped after {computed} chunks as asked; rerun the same command to resume ({})",
                    a.out.display()
                );
                return Ok(());
            }
            pb.set_message(format!("{} chunk {}/{}", plan.name, c + 1, chunks.len()));
            let r = eval_chunk(model.as_ref(), plan, &metric_plans, &xs, &targets, masks.as_ref(), c, range, a.seed);
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
            store.save(&plan.name, &r)?;
            store.write_index(&methods, chunks.len())?;
            pb.suspend(|| println!("{line}"));
            pb.inc(1);
            computed += 1;
        }
    }
    pb.finish_and_clear();

    let ctx = report::Context {
        args: &a,
        model: model.as_ref(),
        info: &info,
        data: &data,
        methods: &plans,
        metrics: &metric_plans,
        skipped: &skipped,
        chunks: chunks.len(),
        key: &key,
    };
    let written = report::write(&store, &ctx).context("writing the report")?;
    println!(
        "evaluated {} methods × {} metrics on {} examples in {:.1} s; wrote {}",
        plans.len(),
        metric_plans.len(),
        a.n,
        started.elapsed().as_secs_f64(),
        written.display()
    );
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
    let maps = (|| -> anyhow::Result<Tensor> {
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
