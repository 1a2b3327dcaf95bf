//! `lumen reproduce smoothgrad`: the SmoothGrad paper's (Smilkov et al. 2017)
//! qualitative experiments on our MNIST models — the noise-level sweep, the
//! sample-size sweep, SmoothGrad over Integrated Gradients and Guided Backprop, and
//! training with noise × inferring with noise — as figures, plus one number per
//! setting: the share of |map| that falls on the digit's strokes.

use super::ReproduceArgs;
use crate::host;
use anyhow::Context;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::image::RgbImage;
use lumen_core::render::{self, Grid, HeatmapOptions};
use lumen_core::{io, Classifier, Params, Registry, Target};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Classes of the test digits shown (the first test image of each).
const CLASSES: [usize; 5] = [0, 2, 3, 7, 9];

struct Ctx<'a> {
    reg: &'a Registry,
    x: Tensor,
    labels: Vec<usize>,
    opts: HeatmapOptions,
    seed: u64,
    /// (figure, column, on-digit share of |map|) for the results table.
    rows: Vec<(String, String, f64)>,
}

impl Ctx<'_> {
    fn explain(&mut self, model: &dyn Classifier, method: &str, params: Params) -> anyhow::Result<Tensor> {
        let params = if method == "smoothgrad" && params.get("seed").is_none() {
            params.with("seed", self.seed as usize)
        } else {
            params
        };
        let m = self.reg.build_method(method, &params)?;
        let e = m.attribute(model, &self.x, &Target::Predicted).with_context(|| format!("{method} on {}", model.info().name))?;
        Ok(e.attribution().clone())
    }

    /// One grid column: the maps of every digit; records its on-digit share.
    fn column(&mut self, grid: &mut Grid, figure: &str, col: usize, label: &str, maps: &Tensor) -> anyhow::Result<()> {
        grid.set_col_label(col, label);
        for r in 0..self.labels.len() {
            let hm = render::heatmap(&maps.get(r)?, Some(&self.x.get(r)?), &self.opts)?;
            grid.set(r, col, hm.with_legend(1));
        }
        let share = on_digit_share(maps, &self.x)?;
        self.rows.push((figure.to_string(), label.to_string(), share));
        Ok(())
    }

    fn grid(&self, cols: usize, title: &str) -> anyhow::Result<Grid> {
        let mut g = Grid::new(self.labels.len(), cols + 1);
        g.title = Some(title.to_string());
        g.set_col_label(0, "input");
        for r in 0..self.labels.len() {
            g.set_row_label(r, format!("digit {}", self.labels[r]));
            let img: RgbImage = render::input_image(&self.x.get(r)?, &self.opts)?;
            g.set(r, 0, img);
        }
        Ok(g)
    }
}

/// Mean over examples of Σ|a| on stroke pixels (input > 0.1) / Σ|a|.
fn on_digit_share(maps: &Tensor, x: &Tensor) -> anyhow::Result<f64> {
    let a = maps.abs()?.flatten_from(1)?.to_dtype(DType::F64)?;
    let on = x.gt(0.1)?.to_dtype(DType::F64)?.flatten_from(1)?;
    let num = (&a * on)?.sum(1)?.to_vec1::<f64>()?;
    let den = a.sum(1)?.to_vec1::<f64>()?;
    let v: Vec<f64> = num.iter().zip(&den).map(|(n, d)| if *d > 0.0 { n / d } else { 0.0 }).collect();
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

fn accuracy(model: &dyn Classifier, device: &Device) -> anyhow::Result<f64> {
    let (x, y) = Mnist::load()?.all(Split::Test, device)?;
    let mut hits = 0;
    for r in lumen_core::method::chunks(y.len(), 250) {
        let p = lumen_core::target::predict(model, &x.narrow(0, r.start, r.len())?)?;
        hits += p.iter().zip(&y[r]).filter(|(a, b)| a == b).count();
    }
    Ok(hits as f64 / y.len() as f64)
}

fn save(grid: &Grid, out: &Path, name: &str) -> anyhow::Result<()> {
    io::save_png(out.join(name), &grid.render())?;
    println!("wrote {}", out.join(name).display());
    Ok(())
}

pub fn run(a: &ReproduceArgs, out: &Path, device: &Device) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let reg = host::registry()?;
    let model = reg.load_model("mnist-cnn", device)?;
    let data = Mnist::load()?;
    let firsts = data.first_of_each_class(Split::Test);
    let classes: &[usize] = if a.quick { &CLASSES[..2] } else { &CLASSES };
    let idx: Vec<usize> = classes.iter().map(|&c| firsts[c]).collect();
    let (x, labels) = data.batch(Split::Test, &idx, device)?;
    // SmoothGrad §3.1: absolute values, capped at the 99th percentile.
    let opts = HeatmapOptions { absolute: true, percentile: 99.0, scale: 4, ..Default::default() };
    let mut cx = Ctx { reg: &reg, x, labels, opts, seed: a.seed, rows: vec![] };
    let n: usize = if a.quick { 4 } else { 50 };
    let m = model.as_ref();

    // 1. Noise level, n = 50.
    let sigmas: &[f64] = &[0.0, 0.05, 0.10, 0.20, 0.30, 0.50];
    let mut g = cx.grid(sigmas.len(), &format!("SmoothGrad noise level (n = {n}), mnist-cnn"))?;
    for (i, s) in sigmas.iter().enumerate() {
        let maps = cx.explain(m, "smoothgrad", Params::new().with("n", n).with("sigma", *s))?;
        cx.column(&mut g, "noise level", i + 1, &format!("σ = {:.0}%", s * 100.0), &maps)?;
    }
    save(&g, out, "sigma_sweep.png")?;

    // 2. Sample size, σ = 15%.
    let ns: &[usize] = if a.quick { &[1, 2, 4] } else { &[1, 5, 10, 25, 50, 100] };
    let mut g = cx.grid(ns.len(), "SmoothGrad sample size (σ = 15%), mnist-cnn")?;
    for (i, k) in ns.iter().enumerate() {
        let maps = cx.explain(m, "smoothgrad", Params::new().with("n", *k).with("sigma", 0.15))?;
        cx.column(&mut g, "sample size", i + 1, &format!("n = {k}"), &maps)?;
    }
    save(&g, out, "n_sweep.png")?;

    // 3. SmoothGrad around other methods.
    let (ig_steps, sg_ig_steps) = if a.quick { (5usize, 3usize) } else { (50, 20) };
    let cols: Vec<(&str, &str, Params)> = vec![
        ("gradient", "saliency", Params::new()),
        ("SG(gradient)", "smoothgrad", Params::new().with("n", n)),
        ("IG", "integrated_gradients", Params::new().with("steps", ig_steps)),
        (
            "SG(IG)",
            "smoothgrad",
            Params::new().with("n", n).with("inner", "integrated_gradients").with("inner.steps", sg_ig_steps),
        ),
        ("guided BP", "guided_backprop", Params::new()),
        ("SG(guided BP)", "smoothgrad", Params::new().with("n", n).with("inner", "guided_backprop")),
    ];
    let mut g = cx.grid(cols.len(), &format!("SmoothGrad around other methods (n = {n}, σ = 15%), mnist-cnn"))?;
    for (i, (label, method, params)) in cols.into_iter().enumerate() {
        let maps = cx.explain(m, method, params)?;
        cx.column(&mut g, "combined", i + 1, label, &maps)?;
    }
    save(&g, out, "combined.png")?;

    // 4. Trained with / without noise × inferred with / without noise.
    let mut acc = vec![("mnist-cnn".to_string(), accuracy(m, device)?)];
    let mut missing = None;
    match reg.load_model("mnist-cnn-noise", device) {
        Ok(noisy) => {
            let noisy: Arc<dyn Classifier> = noisy;
            acc.push(("mnist-cnn-noise".into(), accuracy(noisy.as_ref(), device)?));
            let mut g = cx.grid(4, &format!("Training with noise × SmoothGrad (n = {n}, σ = 15%)"))?;
            let models: [(&str, &dyn Classifier); 2] = [("trained clean", m), ("trained w/ noise", noisy.as_ref())];
            let mut col = 1;
            for (mlabel, mm) in models {
                let maps = cx.explain(mm, "saliency", Params::new())?;
                cx.column(&mut g, "noise training", col, &format!("{mlabel}, gradient"), &maps)?;
                let maps = cx.explain(mm, "smoothgrad", Params::new().with("n", n))?;
                cx.column(&mut g, "noise training", col + 1, &format!("{mlabel}, SmoothGrad"), &maps)?;
                col += 2;
            }
            save(&g, out, "noise_training.png")?;
        }
        Err(e) => {
            println!("skipping the noise-training figure: {e}");
            missing = Some(e);
        }
    }

    let secs = t0.elapsed().as_secs_f64();
    let mut md = String::new();
    let command = format!("lumen reproduce smoothgrad{}", if a.quick { " --quick" } else { "" });
    writeln!(md, "# SmoothGrad reproduction: measured figures\n")?;
    writeln!(md, "Written by `{command}` (seed {}, {secs:.0} s on CPU).\n", a.seed)?;
    writeln!(md, "Test accuracy (1,000 MNIST-5k test digits):\n")?;
    for (name, v) in &acc {
        writeln!(md, "- `{name}`: {:.1}%", v * 100.0)?;
    }
    writeln!(
        md,
        "\nShare of |map| on the digit's strokes (pixels with intensity > 0.1), mean over the digits shown \
         ({}); higher means less scattered background noise.\n",
        cx.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
    )?;
    writeln!(md, "| figure | setting | on-digit share of abs(map) |\n|---|---|---|")?;
    for (f, c, s) in &cx.rows {
        writeln!(md, "| {f} | {c} | {:.3} |", s)?;
    }
    if let Some(e) = &missing {
        writeln!(md, "\nThe noise-training figure is missing: {e}")?;
    }
    io::write_atomic(out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "command": command,
        "seed": a.seed,
        "seconds": secs,
        "digits": cx.labels,
        "accuracy": acc.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        "on_digit_share": cx.rows.iter().map(|(f, c, s)| serde_json::json!({"figure": f, "setting": c, "share": s})).collect::<Vec<_>>(),
    });
    io::write_atomic(out.join("results.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    print!("{md}");
    match missing {
        Some(e) if !a.quick => Err(anyhow::Error::from(e).context("the noise-training figure needs the shipped mnist-cnn-noise")),
        _ => Ok(()),
    }
}
