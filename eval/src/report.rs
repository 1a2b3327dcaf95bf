//! The report of `lumen eval`, built from the chunk files only: CSV and JSON of every
//! figure, PNG plots, example maps and `index.html`. The CSV files hold no timings,
//! so a resumed run writes the same bytes as an uninterrupted one.

use crate::data::EvalData;
use crate::gallery::{compose, top_k, MethodResult};
use crate::plot::{self, Bar, LineChart, Series};
use crate::run::{EvalConfig, MethodPlan, MetricPlan};
use crate::shard::path_component;
use crate::store::{num, ChunkResult, Store};
use crate::{Context as _, Result};
use lumen_core::candle::Tensor;
use lumen_core::metric::MetricOutput;
use lumen_core::render::{self, escape, HeatmapOptions};
use lumen_core::{io, Classifier, ModelInfo};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything the report needs besides the chunk files.
pub struct Context<'a> {
    pub args: &'a EvalConfig,
    pub model: &'a dyn Classifier,
    pub info: &'a ModelInfo,
    pub data: &'a EvalData,
    pub methods: &'a [MethodPlan],
    pub metrics: &'a [MetricPlan],
    pub skipped: &'a [(String, String)],
    pub chunks: usize,
    pub key: &'a Value,
}

/// Mean, sample standard deviation and count of the finite values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

pub fn stats(v: &[f64]) -> Stats {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = f.len();
    if n == 0 {
        return Stats { mean: f64::NAN, std: f64::NAN, n };
    }
    let mean = f.iter().sum::<f64>() / n as f64;
    let std = if n < 2 { f64::NAN } else { (f.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() };
    Stats { mean, std, n }
}

impl Stats {
    fn json(&self) -> Value {
        json!({"mean": num(self.mean), "std": num(self.std), "n": self.n})
    }
    /// Half-width of the normal 95% interval of the mean.
    pub fn ci95(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            1.96 * self.std / (self.n as f64).sqrt()
        }
    }
}

/// One method under one metric, over every chunk.
struct Cell {
    /// Concatenated outputs of the chunks where the metric worked.
    out: Option<MetricOutput>,
    /// Example positions of `out`'s entries.
    positions: Vec<usize>,
    errors: Vec<String>,
}

/// One method over every chunk.
struct MethodAgg {
    name: String,
    params: BTreeMap<String, String>,
    light: Vec<String>,
    seconds: f64,
    errors: Vec<String>,
    failed_chunks: usize,
    targets: Vec<Option<usize>>,
    cells: BTreeMap<String, Cell>,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn aggregate(store: &Store, ctx: &Context) -> Result<Vec<MethodAgg>> {
    let n = ctx.args.n;
    let mut out = vec![];
    for plan in ctx.methods {
        let mut agg = MethodAgg {
            name: plan.name.clone(),
            params: plan.params.clone(),
            light: plan.light.clone(),
            seconds: 0.0,
            errors: vec![],
            failed_chunks: 0,
            targets: vec![None; n],
            cells: BTreeMap::new(),
        };
        let mut parts: BTreeMap<String, (Vec<MetricOutput>, Vec<usize>, Vec<String>)> = BTreeMap::new();
        let names: Vec<String> = ctx.metrics.iter().map(|m| m.name.clone()).collect();
        for (c, range) in lumen_core::method::chunks(n, ctx.args.batch_size).enumerate() {
            let r: ChunkResult = store.load(&plan.name, c, range.len(), &names)?;
            agg.seconds += r.seconds + r.metric_seconds.values().sum::<f64>();
            if c == 0 && r.error.is_none() {
                agg.params = r.params.clone();
            }
            for (i, t) in r.targets.iter().enumerate() {
                if let Some(slot) = agg.targets.get_mut(r.start + i) {
                    *slot = Some(*t);
                }
            }
            if let Some(e) = &r.error {
                agg.failed_chunks += 1;
                push_unique(&mut agg.errors, e);
                continue;
            }
            for m in ctx.metrics {
                let p = parts.entry(m.name.clone()).or_default();
                match r.metrics.get(&m.name) {
                    Some(Ok(o)) => {
                        p.0.push(o.clone());
                        p.1.extend(r.start..r.start + r.len);
                    }
                    Some(Err(e)) => push_unique(&mut p.2, e),
                    None => push_unique(&mut p.2, "missing from the chunk file"),
                }
            }
        }
        for m in ctx.metrics {
            let (outs, positions, errors) = parts.remove(&m.name).unwrap_or_default();
            let out = if outs.is_empty() { None } else { Some(MetricOutput::concat(&outs)?) };
            agg.cells.insert(m.name.clone(), Cell { out, positions, errors });
        }
        out.push(agg);
    }
    Ok(out)
}

/// f64 as CSV text: shortest round-trip form, `NaN` for missing.
fn f(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "NaN".into()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Headline score first, then the extra scores, by name.
fn scores(o: &MetricOutput) -> Vec<(String, &Vec<f64>)> {
    let mut v = vec![("score".to_string(), &o.per_example)];
    v.extend(o.extra.iter().map(|(k, x)| (k.clone(), x)));
    v
}

/// Mean curve over examples (NaN-aware), with its x values.
fn mean_curve(o: &MetricOutput) -> Option<(Vec<f64>, Vec<Stats>)> {
    let curves = o.curves.as_ref()?;
    let len = curves.iter().map(|c| c.len()).max()?;
    let x = o.curve_x.clone().unwrap_or_else(|| (0..len).map(|i| i as f64).collect());
    let st = (0..len).map(|i| stats(&curves.iter().filter_map(|c| c.get(i).copied()).collect::<Vec<_>>())).collect();
    Some((x, st))
}

/// `mean,std,n` as the summary CSVs write them.
fn stat_cols(s: &Stats) -> String {
    format!("{},{},{}", f(s.mean), f(s.std), s.n)
}

fn csvs(aggs: &[MethodAgg], ctx: &Context) -> (String, String, String, String) {
    let mut per = String::from("method,metric,score,example,dataset_index,label,target,value\n");
    let mut sum = String::from("method,metric,score,mean,std,n,higher_is_better\n");
    let mut cur = String::from("method,metric,x,mean,std,n\n");
    let mut lay = String::from("method,metric,step,layer,score,mean,std,n\n");
    for a in aggs {
        for m in ctx.metrics {
            let Some(out) = a.cells[&m.name].out.as_ref() else { continue };
            let cell = &a.cells[&m.name];
            for (score, vals) in scores(out) {
                for (i, v) in vals.iter().enumerate() {
                    let pos = cell.positions[i];
                    let _ = writeln!(
                        per,
                        "{},{},{},{},{},{},{},{}",
                        a.name,
                        m.name,
                        csv_field(&score),
                        pos,
                        ctx.data.index[pos],
                        ctx.data.labels[pos],
                        a.targets[pos].map(|t| t.to_string()).unwrap_or_default(),
                        f(*v)
                    );
                }
                let s = stats(vals);
                let _ = writeln!(sum, "{},{},{},{},{}", a.name, m.name, csv_field(&score), stat_cols(&s), m.entry.higher_is_better);
            }
            if let Some((x, st)) = mean_curve(out) {
                for (xi, s) in x.iter().zip(&st) {
                    let _ = writeln!(cur, "{},{},{},{}", a.name, m.name, f(*xi), stat_cols(s));
                }
            }
            for l in out.layers.iter().flatten() {
                for (score, vals) in [("spearman", &l.spearman), ("ssim", &l.ssim)] {
                    let s = stats(vals);
                    let _ = writeln!(lay, "{},{},{},{},{},{}", a.name, m.name, l.step, csv_field(&l.layer), score, stat_cols(&s));
                }
            }
        }
    }
    (per, sum, cur, lay)
}

fn results_json(aggs: &[MethodAgg], ctx: &Context) -> Value {
    let methods: Vec<Value> = aggs
        .iter()
        .map(|a| {
            let metrics: Map<String, Value> = ctx
                .metrics
                .iter()
                .map(|m| {
                    let cell = &a.cells[&m.name];
                    let v = match &cell.out {
                        None => json!({"errors": cell.errors}),
                        Some(o) => {
                            let sc: Map<String, Value> = scores(o)
                                .into_iter()
                                .map(|(k, v)| {
                                    let mut s = stats(v).json();
                                    s["per_example"] = Value::Array(v.iter().map(|x| num(*x)).collect());
                                    (k, s)
                                })
                                .collect();
                            let curve = mean_curve(o).map(|(x, st)| {
                                json!({"x": x.iter().map(|v| num(*v)).collect::<Vec<_>>(),
                                       "mean": st.iter().map(|s| num(s.mean)).collect::<Vec<_>>(),
                                       "std": st.iter().map(|s| num(s.std)).collect::<Vec<_>>()})
                            });
                            let layers = o.layers.as_ref().map(|ls| {
                                ls.iter()
                                    .map(|l| json!({"step": l.step, "layer": l.layer,
                                        "spearman": stats(&l.spearman).json(), "ssim": stats(&l.ssim).json()}))
                                    .collect::<Vec<_>>()
                            });
                            json!({"scores": sc, "curve": curve, "layers": layers, "notes": o.notes,
                                   "examples": cell.positions, "errors": cell.errors})
                        }
                    };
                    (m.name.clone(), v)
                })
                .collect();
            json!({"name": a.name, "params": a.params, "light_settings": a.light, "seconds": a.seconds,
                   "failed_chunks": a.failed_chunks, "errors": a.errors, "metrics": metrics})
        })
        .collect();
    json!({
        "run": ctx.key,
        "command": command_line(ctx.args),
        "data": ctx.data.description,
        "examples": (0..ctx.args.n).map(|i| json!({"position": i, "dataset_index": ctx.data.index[i], "label": ctx.data.labels[i]})).collect::<Vec<_>>(),
        "metrics": ctx.metrics.iter().map(|m| json!({"name": m.name, "params": m.params, "higher_is_better": m.entry.higher_is_better, "summary": m.entry.summary})).collect::<Vec<_>>(),
        "skipped_metrics": ctx.skipped.iter().map(|(m, w)| json!({"name": m, "reason": w})).collect::<Vec<_>>(),
        "methods": methods,
    })
}

/// The command that reproduces this run.
pub fn command_line(a: &EvalConfig) -> String {
    let mut s = String::from("lumen eval");
    match &a.model_card {
        Some(p) => s += &format!(" --model-card {}", p.display()),
        None => s += &format!(" --model {}", a.model),
    }
    s += &format!(" --data {} --methods {} --metrics {} --n {} --seed {} --batch-size {}", a.data, a.methods, a.metrics, a.n, a.seed, a.batch_size);
    if a.light {
        s += " --light";
    }
    for p in &a.params {
        s += &format!(" --param {p}");
    }
    s += &format!(" --out {}", a.out.display());
    s
}

/// Methods ranked best first by a metric's headline mean (NaN last).
fn ranked<'a>(aggs: &'a [MethodAgg], m: &MetricPlan) -> Vec<(&'a MethodAgg, Stats)> {
    let mut v: Vec<(&MethodAgg, Stats)> = aggs
        .iter()
        .filter_map(|a| a.cells[&m.name].out.as_ref().map(|o| (a, stats(&o.per_example))))
        .collect();
    let hib = m.entry.higher_is_better;
    v.sort_by(|x, y| {
        let (a, b) = (x.1.mean, y.1.mean);
        match (a.is_finite(), b.is_finite()) {
            (true, true) => {
                if hib {
                    b.total_cmp(&a)
                } else {
                    a.total_cmp(&b)
                }
            }
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => std::cmp::Ordering::Equal,
        }
        .then_with(|| x.0.name.cmp(&y.0.name))
    });
    v
}

struct Plots {
    /// metric → plot files (relative to the run directory).
    by_metric: BTreeMap<String, Vec<String>>,
}

fn plots(dir: &Path, aggs: &[MethodAgg], ctx: &Context) -> Result<Plots> {
    let mut by_metric: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in ctx.metrics {
        let files = by_metric.entry(m.name.clone()).or_default();
        let r = ranked(aggs, m);
        if !r.is_empty() {
            let bars: Vec<Bar> =
                r.iter().map(|(a, s)| Bar { name: a.name.clone(), value: s.mean, err: s.ci95() }).collect();
            let title = format!(
                "{}: mean score per method, best first ({} is better)",
                m.name,
                if m.entry.higher_is_better { "higher" } else { "lower" }
            );
            let img = plot::bar_chart(&title, "mean over examples (whiskers: 95% interval of the mean)", &bars)?;
            let rel = format!("plots/bar_{}.png", path_component(&m.name));
            io::save_png(dir.join(&rel), &img)?;
            files.push(rel);
        }
        let curves: Vec<Series> = aggs
            .iter()
            .filter_map(|a| {
                let o = a.cells[&m.name].out.as_ref()?;
                let (x, st) = mean_curve(o)?;
                Some(Series { name: a.name.clone(), points: x.into_iter().zip(st.iter().map(|s| s.mean)).collect() })
            })
            .collect();
        if !curves.is_empty() {
            let c = LineChart {
                title: format!("{}: mean curve per method", m.name),
                x_label: "fraction of the input perturbed".into(),
                y_label: "target probability".into(),
                series: curves,
                y_range: None,
                x_ticks: None,
            };
            let rel = format!("plots/curves_{}.png", path_component(&m.name));
            io::save_png(dir.join(&rel), &plot::line_chart(&c)?)?;
            files.push(rel);
        }
        for score in ["spearman", "ssim"] {
            let mut ticks: Vec<(f64, String)> = vec![];
            let series: Vec<Series> = aggs
                .iter()
                .filter_map(|a| {
                    let ls = a.cells[&m.name].out.as_ref()?.layers.as_ref()?;
                    let pts = ls
                        .iter()
                        .map(|l| {
                            if !ticks.iter().any(|t| t.0 == l.step as f64) {
                                ticks.push((l.step as f64, l.layer.clone()));
                            }
                            let v = if score == "spearman" { &l.spearman } else { &l.ssim };
                            (l.step as f64, stats(v).mean)
                        })
                        .collect();
                    Some(Series { name: a.name.clone(), points: pts })
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
            let lo = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0, f64::min);
            let c = LineChart {
                title: format!("{}: mean {score} of |map| with the trained model's", m.name),
                x_label: "randomized down to layer (cumulative)".into(),
                y_label: format!("mean {score}"),
                series,
                y_range: Some((lo.min(0.0) - 0.05, 1.05)),
                x_ticks: Some(ticks),
            };
            let rel = format!("plots/layers_{}_{score}.png", path_component(&m.name));
            io::save_png(dir.join(&rel), &plot::line_chart(&c)?)?;
            files.push(rel);
        }
    }
    Ok(Plots { by_metric })
}

/// The example maps (from the first chunk) of every method as one grid:
/// `maps.png`, rows = examples, columns = the input then the methods.
fn example_maps(store: &Store, ctx: &Context) -> Result<Option<String>> {
    let k = ctx.args.examples.min(ctx.args.n).min(ctx.args.batch_size);
    if k == 0 {
        return Ok(None);
    }
    let dev = ctx.data.xs.device();
    let xs = ctx.data.xs.narrow(0, 0, k)?;
    let mut results = vec![];
    for plan in ctx.methods {
        let p = store.examples_path(&plan.name);
        let mut maps = None;
        if p.exists() {
            let t = lumen_core::model::load_safetensors(&p, dev)?;
            let a: &Tensor = t.get("attribution").with_context(|| format!("{}: no attribution", p.display()))?;
            if a.dim(0)? >= k {
                maps = Some((0..k).map(|i| a.get(i)).collect::<std::result::Result<Vec<_>, _>>()?);
            }
        }
        let note = maps.is_none().then(|| "no maps".to_string());
        results.push(MethodResult { name: plan.name.clone(), params: plan.params.clone(), seconds: 0.0, maps, note, shown_on: None });
    }
    let preds: Vec<Vec<(usize, f32)>> =
        (0..k).map(|i| top_k(ctx.model, &xs.narrow(0, i, 1)?, 1)).collect::<Result<_>>()?;
    let opts = HeatmapOptions { scale: 3, input_range: ctx.info.input_range, ..Default::default() };
    let title = format!("lumen eval: {}, the first {k} examples, maps of the explained class", ctx.info.name);
    let (grid, _) = compose(&title, &xs, &ctx.data.labels[..k], &preds, &ctx.info.labels, &results, &opts)?;
    io::save_png(store.dir.join("maps.png"), &grid.render())?;
    Ok(Some("maps.png".into()))
}

fn fmt_stat(s: &Stats) -> String {
    if s.n == 0 {
        return "n/a".into();
    }
    format!("{:.4} ± {} (n={})", s.mean, if s.std.is_finite() { format!("{:.4}", s.std) } else { "–".into() }, s.n)
}

/// Markdown: one ranking table per metric (for READMEs).
fn summary_md(aggs: &[MethodAgg], ctx: &Context) -> String {
    let mut s = format!(
        "# Evaluation summary: {}\n\n{}.\n\nCommand: `{}`\n\n",
        ctx.info.name,
        ctx.data.description,
        command_line(ctx.args)
    );
    for m in ctx.metrics {
        let _ = writeln!(
            s,
            "## {} ({} is better)\n\n| rank | method | mean | std | n |\n|---:|---|---:|---:|---:|",
            m.name,
            if m.entry.higher_is_better { "higher" } else { "lower" }
        );
        for (i, (a, st)) in ranked(aggs, m).iter().enumerate() {
            let _ = writeln!(s, "| {} | {} | {:.4} | {:.4} | {} |", i + 1, a.name, st.mean, st.std, st.n);
        }
        let none: Vec<String> = aggs
            .iter()
            .filter(|a| a.cells[&m.name].out.is_none())
            .map(|a| a.name.clone())
            .collect();
        if !none.is_empty() {
            let _ = writeln!(s, "\nNo figure for: {}.", none.join(", "));
        }
        s += "\n";
    }
    s
}

fn html(aggs: &[MethodAgg], ctx: &Context, pl: &Plots, maps: Option<&str>, maps_note: Option<&str>) -> String {
    let mut s = String::new();
    let a = ctx.args;
    s += &format!(
        "<p>Model <code>{}</code>; {} ({} examples, seed {}, chunks of {}). Reproduce with <code>{}</code>.</p>\n",
        escape(&ctx.info.name),
        escape(&ctx.data.description),
        a.n,
        a.seed,
        a.batch_size,
        escape(&command_line(a))
    );
    s += "<p>Files: <a href=\"summary.csv\">summary.csv</a> (mean, std, n per method, metric and score), \
          <a href=\"per_example.csv\">per_example.csv</a>, <a href=\"curves.csv\">curves.csv</a> (mean curves), \
          <a href=\"layers.csv\">layers.csv</a> (sanity check per layer), <a href=\"results.json\">results.json</a> \
          (everything, with parameters), <a href=\"summary.md\">summary.md</a>.</p>\n";
    // Headline table.
    s += "<h2>Summary</h2>\n<p>Mean ± standard deviation of each metric's headline score over the examples. \
          Arrows: ↑ higher is better, ↓ lower is better.</p>\n";
    let mut headers: Vec<String> = vec!["method".into()];
    headers.extend(ctx.metrics.iter().map(|m| format!("{} {}", m.name, if m.entry.higher_is_better { "↑" } else { "↓" })));
    let rows: Vec<Vec<String>> = aggs
        .iter()
        .map(|ag| {
            let mut r = vec![ag.name.clone()];
            for m in ctx.metrics {
                let c = &ag.cells[&m.name];
                r.push(match &c.out {
                    Some(o) => fmt_stat(&stats(&o.per_example)),
                    None if !ag.errors.is_empty() => "method failed".into(),
                    None => "n/a".into(),
                });
            }
            r
        })
        .collect();
    let hrefs: Vec<&str> = headers.iter().map(|h| h.as_str()).collect();
    s += &render::table(&hrefs, &rows);

    // Plots on the left, the example maps beside them.
    s += "<div style=\"display:flex;gap:2em;align-items:flex-start\">\n<div style=\"flex:1 1 auto\">\n";
    for m in ctx.metrics {
        s += &format!(
            "<h2 id=\"{n}\">{n}</h2>\n<p>{}. {} is better. Parameters: <code>{}</code>.</p>\n",
            escape(m.entry.summary),
            if m.entry.higher_is_better { "Higher" } else { "Lower" },
            escape(&m.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")),
            n = escape(&m.name)
        );
        for f in pl.by_metric.get(&m.name).into_iter().flatten() {
            s += &format!("<p><img src=\"{f}\" alt=\"{f}\" style=\"max-width:100%\"></p>\n", f = escape(f));
        }
        let mut notes: Vec<String> = vec![];
        for ag in aggs {
            let c = &ag.cells[&m.name];
            for e in &c.errors {
                notes.push(format!("{}: {}", ag.name, e));
            }
            for n in c.out.iter().flat_map(|o| o.notes.iter()) {
                notes.push(format!("{}: {}", ag.name, n));
            }
        }
        if !notes.is_empty() {
            s += "<ul class=\"note\">\n";
            for n in notes {
                s += &format!("<li>{}</li>\n", escape(&n));
            }
            s += "</ul>\n";
        }
    }
    s += "</div>\n<div style=\"flex:0 0 auto;position:sticky;top:1em\">\n<h2>Example maps</h2>\n";
    match maps {
        Some(f) => {
            s += &format!(
                "<p>Signed maps (red for, blue against the explained class), each capped at its 99th percentile of \
                 |map|.</p>\n<p><img src=\"{f}\" alt=\"example maps\"></p>\n",
                f = escape(f)
            )
        }
        None => s += &format!("<p class=\"note\">No example maps: {}</p>\n", escape(maps_note.unwrap_or("none asked"))),
    }
    s += "</div>\n</div>\n";

    s += "<h2>Methods</h2>\n";
    let rows: Vec<Vec<String>> = aggs
        .iter()
        .map(|ag| {
            vec![
                ag.name.clone(),
                ag.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
                ag.light.join(" "),
                format!("{:.1}", ag.seconds),
                if ag.errors.is_empty() {
                    "ok".into()
                } else {
                    format!("failed on {} of {} chunks: {}", ag.failed_chunks, ctx.chunks, ag.errors.join("; "))
                },
            ]
        })
        .collect();
    s += &render::table(&["method", "parameters", "--light settings", "seconds (maps + metrics)", "status"], &rows);
    if !ctx.skipped.is_empty() {
        s += "<h2>Metrics not run</h2>\n<ul>\n";
        for (m, w) in ctx.skipped {
            s += &format!("<li><code>{}</code> {}</li>\n", escape(m), escape(w));
        }
        s += "</ul>\n";
    }
    s
}

pub fn write(store: &Store, ctx: &Context) -> Result<PathBuf> {
    let dir = &store.dir;
    let aggs = aggregate(store, ctx)?;
    let (per, sum, cur, lay) = csvs(&aggs, ctx);
    io::write_atomic(dir.join("per_example.csv"), per.as_bytes())?;
    io::write_atomic(dir.join("summary.csv"), sum.as_bytes())?;
    io::write_atomic(dir.join("curves.csv"), cur.as_bytes())?;
    io::write_atomic(dir.join("layers.csv"), lay.as_bytes())?;
    io::write_atomic(dir.join("results.json"), serde_json::to_string_pretty(&results_json(&aggs, ctx))?.as_bytes())?;
    io::write_atomic(dir.join("summary.md"), summary_md(&aggs, ctx).as_bytes())?;
    let pl = plots(dir, &aggs, ctx)?;
    // Maps are a picture for people; data that the heatmap cannot draw gets a note.
    let (maps, note) = match example_maps(store, ctx) {
        Ok(m) => (m, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let page = render::page(
        &format!("lumen eval: {}", ctx.info.name),
        None,
        &html(&aggs, ctx, &pl, maps.as_deref(), note.as_deref()),
    );
    let index = dir.join("index.html");
    io::write_atomic(&index, page.as_bytes())?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_skip_nan_and_use_the_sample_std() {
        let s = stats(&[1.0, f64::NAN, 3.0]);
        assert_eq!((s.mean, s.n), (2.0, 2));
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
        let one = stats(&[5.0]);
        assert!(one.std.is_nan() && one.ci95().is_nan());
        assert_eq!(stats(&[]).n, 0);
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
