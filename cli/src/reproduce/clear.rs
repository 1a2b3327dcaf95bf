//! `lumen reproduce clear`: CLEAR's Table 1 on `mnist-allcnn` and its held-out digits
//! (accuracy on the full image, on the strong features only, and without them, over a
//! sweep of the strong-feature threshold), and Fig. 3-style CLEAR maps of correctly
//! and wrongly classified test digits.
//!
//! Strong features of an image are the pixels where the true class's attentive
//! response R(x|y) exceeds τ · max R(x|y) of that image. "Only" keeps them and sets
//! the rest to the background 0; "without" sets them to 0.

use super::ReproduceArgs;
use crate::host;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_clear::render::{self as crender, ClearRenderOptions};
use lumen_clear::{attentive_responses, Clear, ClearConfig, Seed};
use lumen_core::candle::{DType, Device, Tensor, D};
use lumen_core::data::{Mnist, Split};
use lumen_core::image::RgbImage;
use lumen_core::method::chunks;
use lumen_core::render::{self, Grid, HeatmapOptions};
use lumen_core::{io, Attributor, Classifier, Target};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Thresholds τ (fraction of each image's max R(x|y)); the first is "any positive response".
const THRESHOLDS: [f32; 7] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7];
/// The threshold reported in the headline row (chosen before looking at accuracies:
/// a tenth of the image's strongest response).
const HEADLINE: f32 = 0.1;
/// The paper's MNIST row of Table 1 (full, strong features only, without them).
const PAPER: (f64, f64, f64) = (99.26, 79.89, 43.45);
/// Images per back-projection call (each is one backward row).
const CHUNK: usize = 50;

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    if let Ok(s) = ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} {{elapsed}}")) {
        pb.set_style(s);
    }
    pb
}

/// Top-1 predictions, in chunks.
fn predict(model: &dyn Classifier, x: &Tensor) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::with_capacity(x.dim(0)?);
    for r in chunks(x.dim(0)?, 250) {
        let l = model.forward(&x.narrow(0, r.start, r.len())?)?;
        out.extend(l.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().map(|c| c as usize));
    }
    Ok(out)
}

fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
    100.0 * pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len().max(1) as f64
}

/// One row of the sweep.
struct Row {
    tau: f32,
    only: f64,
    without: f64,
    /// Mean share of the image's pixels that are strong features.
    pixels: f64,
    /// Mean share of the image's ink (Σx) that lies on strong features.
    ink: f64,
}

pub fn run(a: &ReproduceArgs, out: &Path, device: &Device) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let reg = host::registry()?;
    let model = reg.load_model("mnist-allcnn", device)?;
    let data = Mnist::load()?;
    let total = data.len(Split::Test);
    // The test split is ordered by class: a quick run takes every k-th image.
    let n = if a.quick { 100.min(total) } else { total };
    let idx: Vec<usize> = (0..n).map(|i| i * total / n).collect();
    let (x, y) = data.batch(Split::Test, &idx, device)?;
    let pred = predict(&*model, &x)?;
    let full = accuracy(&pred, &y);

    // R(x|y) for every image (one back-projection row each), with both seeds.
    let xf = x.flatten_from(1)?;
    let ink = xf.sum(1)?;
    let mut sweeps = vec![];
    let mut map_secs = 0.0;
    let mut resp_default = None;
    for seed in [Seed::Signed, Seed::Positive] {
        let t_maps = Instant::now();
        let pb = bar(n, &format!("R(x|true), {} seed", seed.name()));
        let mut parts = vec![];
        for r in chunks(n, CHUNK) {
            let xs = x.narrow(0, r.start, r.len())?;
            let cls: Vec<Vec<usize>> = y[r.clone()].iter().map(|c| vec![*c]).collect();
            parts.push(attentive_responses(&*model, &xs, &cls, CHUNK, seed)?.squeeze(1)?.sum(1)?); // [b, 28, 28]
            pb.inc(r.len() as u64);
        }
        pb.finish_and_clear();
        let resp = Tensor::cat(&parts, 0)?.flatten_from(1)?; // [n, 784]
        if seed == Seed::default() {
            map_secs = t_maps.elapsed().as_secs_f64();
        }
        let rmax = resp.max_keepdim(1)?.relu()?;
        let mut rows = vec![];
        for &tau in &THRESHOLDS {
            let strong = resp.broadcast_gt(&(&rmax * tau as f64)?)?.to_dtype(DType::F32)?;
            let only = (&xf * &strong)?;
            let without = (&xf - &only)?;
            let shape = x.dims().to_vec();
            let p_only = predict(&*model, &only.reshape(shape.as_slice())?)?;
            let p_without = predict(&*model, &without.reshape(shape.as_slice())?)?;
            let pixels = strong.mean_all()?.to_scalar::<f32>()? as f64;
            let ink_share = (only.sum(1)? / &ink)?.mean_all()?.to_scalar::<f32>()? as f64;
            rows.push(Row { tau, only: accuracy(&p_only, &y), without: accuracy(&p_without, &y), pixels, ink: ink_share });
        }
        if seed == Seed::default() {
            resp_default = Some((resp, rmax));
        }
        sweeps.push((seed, rows));
    }
    let (resp, rmax) = resp_default.ok_or_else(|| anyhow::anyhow!("no default-seed maps"))?;
    let head = sweeps[0]
        .1
        .iter()
        .find(|r| r.tau == HEADLINE)
        .ok_or_else(|| anyhow::anyhow!("headline threshold missing"))?;

    // Fig. 3: CLEAR maps of correctly and wrongly classified test digits.
    let per = if a.quick { 3 } else { 10 };
    let correct: Vec<usize> = (0..10)
        .filter_map(|c| (0..n).find(|&i| y[i] == c && pred[i] == c))
        .take(per)
        .collect();
    let wrong: Vec<usize> = (0..n).filter(|&i| pred[i] != y[i]).take(per).collect();
    std::fs::create_dir_all(out).map_err(|e| lumen_core::Error::io(out, e))?;
    let labels = model.info().labels.clone();
    let clear = Clear::new(ClearConfig::default());
    let mut fig_secs = 0.0;
    for (name, title, set) in [
        ("clear_correct.png", "CLEAR maps of correctly classified test digits (mnist-allcnn)", &correct),
        ("clear_wrong.png", "CLEAR maps of wrongly classified test digits (mnist-allcnn)", &wrong),
    ] {
        if set.is_empty() {
            continue;
        }
        let t = Instant::now();
        let img = figure(&*model, &clear, &x, &y, &pred, set, &labels, title)?;
        fig_secs += t.elapsed().as_secs_f64() / set.len() as f64 / 2.0;
        io::save_png(out.join(name), &img)?;
        println!("wrote {}", out.join(name).display());
    }
    let masks = mask_figure(&x, &resp, &rmax, &y, &pred, &correct, &wrong)?;
    io::save_png(out.join("strong_features.png"), &masks)?;
    println!("wrote {}", out.join("strong_features.png").display());

    // Which class dominates the digit? Ĉ over the ink, with both seeds.
    let m = if a.quick { 20 } else { 100 };
    let didx: Vec<usize> = (0..m).map(|i| i * n / m).collect();
    let sel = Tensor::from_vec(didx.iter().map(|i| *i as u32).collect::<Vec<_>>(), m, x.device())?;
    let xd = x.index_select(&sel, 0)?;
    let yd: Vec<usize> = didx.iter().map(|i| y[*i]).collect();
    let mut dominance = vec![];
    for seed in [Seed::Signed, Seed::Positive] {
        let e = Clear::new(ClearConfig { seed, ..Default::default() }).attribute(&*model, &xd, &Target::Classes(yd.clone()))?;
        let cmap = e.tensor("class_map")?.flatten_from(1)?.to_vec2::<f32>()?;
        let ink_px = xd.flatten_from(1)?.to_vec2::<f32>()?;
        let scale = e.tensor("class_maps")?.flatten_from(2)?.max(2)?.mean(0)?.to_vec1::<f32>()?;
        let mut by_class = vec![0f64; labels.len()];
        let (mut on_true, mut total) = (0f64, 0f64);
        for i in 0..m {
            for (c, v) in cmap[i].iter().zip(&ink_px[i]) {
                let v = *v as f64;
                total += v;
                by_class[*c as usize] += v;
                if *c as usize == yd[i] {
                    on_true += v;
                }
            }
        }
        let total = total.max(1e-12);
        dominance.push((seed, on_true / total, by_class.iter().map(|b| b / total).collect::<Vec<_>>(), scale));
    }

    // Tables.
    let command = format!("lumen reproduce clear{}", if a.quick { " --quick" } else { "" });
    let secs = t0.elapsed().as_secs_f64();
    let mut md = String::new();
    writeln!(md, "# CLEAR: Table 1 on mnist-allcnn\n")?;
    writeln!(md, "Regenerate with `{command}` ({secs:.0} s on this machine). {n} held-out test images.\n")?;
    writeln!(
        md,
        "Strong features: pixels where the true class's attentive response R(x|y) exceeds τ · max R(x|y) of the image; \
         headline τ = {HEADLINE}. \"Only\" keeps them (rest = background 0), \"without\" sets them to 0.\n"
    )?;
    writeln!(md, "| | full image | strong features only | without strong features |\n|---|---|---|---|")?;
    writeln!(md, "| paper (MNIST) | {:.2}% | {:.2}% | {:.2}% |", PAPER.0, PAPER.1, PAPER.2)?;
    writeln!(md, "| lumen, τ = {HEADLINE}, signed seed | {full:.2}% | {:.2}% | {:.2}% |\n", head.only, head.without)?;
    for (seed, rows) in &sweeps {
        writeln!(md, "Threshold sweep, {} seed (`activation={}`):\n", seed.name(), seed.name())?;
        writeln!(md, "| τ | only | without | share of pixels kept | share of ink kept |\n|---|---|---|---|---|")?;
        for r in rows {
            let tau = if r.tau == 0.0 { "0 (R > 0)".to_string() } else { format!("{}", r.tau) };
            writeln!(md, "| {tau} | {:.2}% | {:.2}% | {:.3} | {:.3} |", r.only, r.without, r.pixels, r.ink)?;
        }
        writeln!(md)?;
    }
    writeln!(
        md,
        "Which class dominates the digit: over {m} test digits (every {}th), the share of the ink (sum of pixel \
         intensities) on which Ĉ is the true class, the share of the ink each class dominates, and the mean over \
         the digits of max R(x|c) per class c (the scale each kernel's back-projection reaches).\n",
        n / m
    )?;
    let head_cls = labels.join(" | ");
    writeln!(md, "| activation | Ĉ = true class | what | {head_cls} |\n|---|---|---|{}", "---|".repeat(labels.len()))?;
    for (seed, on_true, by_class, scale) in &dominance {
        let f = |v: &[f64], d: usize| v.iter().map(|x| format!("{x:.d$}")).collect::<Vec<_>>().join(" | ");
        writeln!(md, "| {} | {:.1}% | share of ink dominated | {} |", seed.name(), 100.0 * on_true, f(by_class, 3))?;
        let sc: Vec<f64> = scale.iter().map(|v| *v as f64).collect();
        writeln!(md, "| {} | | mean max R(x\\|c) | {} |", seed.name(), f(&sc, 2))?;
    }
    writeln!(
        md,
        "\nTimings (signed seed): R(x|true) for {n} images {map_secs:.1} s ({:.1} ms per image); the full CLEAR explanation \
         (all 10 classes) {:.0} ms per image.",
        1000.0 * map_secs / n as f64,
        1000.0 * fig_secs
    )?;
    writeln!(md, "Misclassified among these images: {} of {n}.", pred.iter().zip(&y).filter(|(p, t)| p != t).count())?;
    io::write_atomic(out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "command": command,
        "model": "mnist-allcnn",
        "images": n,
        "seconds": secs,
        "headline_tau": HEADLINE,
        "paper": {"full": PAPER.0, "only": PAPER.1, "without": PAPER.2},
        "full": full,
        "sweeps": sweeps.iter().map(|(seed, rows)| serde_json::json!({
            "activation": seed.name(),
            "rows": rows.iter().map(|r| serde_json::json!({
                "tau": r.tau, "only": r.only, "without": r.without, "pixels_kept": r.pixels, "ink_kept": r.ink,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ms_per_image_true_class_map": 1000.0 * map_secs / n as f64,
        "ms_per_image_full_clear": 1000.0 * fig_secs,
        "dominance": dominance.iter().map(|(seed, t, b, sc)| serde_json::json!({
            "activation": seed.name(), "true_class_share_of_ink": t, "ink_share_by_class": b, "mean_max_response_by_class": sc,
        })).collect::<Vec<_>>(),
        "figure_correct": correct,
        "figure_wrong": wrong,
    });
    io::write_atomic(out.join("results.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    print!("{md}");
    Ok(())
}

/// One row per digit: input, CLEAR, CLEAR over the input, the binary heatmap and the
/// red/blue map for the true class, R(x|true) and R(x|predicted); a class legend below.
#[allow(clippy::too_many_arguments)]
fn figure(
    model: &dyn Classifier,
    clear: &Clear,
    x: &Tensor,
    y: &[usize],
    pred: &[usize],
    set: &[usize],
    labels: &[String],
    title: &str,
) -> anyhow::Result<RgbImage> {
    let idx = Tensor::from_vec(set.iter().map(|i| *i as u32).collect::<Vec<_>>(), set.len(), x.device())?;
    let xs = x.index_select(&idx, 0)?;
    let truth: Vec<usize> = set.iter().map(|i| y[*i]).collect();
    let e = clear.attribute(model, &xs, &Target::Classes(truth.clone()))?;
    let cols = ["input", "CLEAR", "CLEAR+input", "binary (true)", "red/blue (true)", "R(x|true)", "R(x|pred)"];
    let mut g = Grid::new(set.len(), cols.len());
    g.title = Some(title.to_string());
    for (c, l) in cols.iter().enumerate() {
        g.set_col_label(c, *l);
    }
    let ropts = ClearRenderOptions::default();
    let hopts = HeatmapOptions { scale: ropts.scale, legend: false, ..Default::default() };
    let maps = e.tensor("class_maps")?;
    for (r, &i) in set.iter().enumerate() {
        let xi = xs.get(r)?;
        g.set_row_label(r, format!("#{i} true {} pred {}", y[i], pred[i]));
        g.set(r, 0, render::input_image(&xi, &hopts)?);
        g.set(r, 1, crender::picture(&e.tensor("clear_rgb")?.get(r)?, None, &ropts)?);
        let over = ClearRenderOptions { overlay: true, ..ropts.clone() };
        g.set(r, 2, crender::picture(&e.tensor("clear_rgb")?.get(r)?, Some(&xi), &over)?);
        g.set(r, 3, crender::picture(&e.tensor("binary_rgb")?.get(r)?, None, &ropts)?);
        g.set(r, 4, crender::picture(&e.tensor("red_blue")?.get(r)?, None, &ropts)?);
        for (c, class) in [(5, y[i]), (6, pred[i])] {
            let m = maps.get(r)?.get(class)?;
            g.set(r, c, render::heatmap(&m, None, &hopts)?.image);
        }
    }
    let grid = g.render();
    let entries = crender::legend_entries(&(0..labels.len()).collect::<Vec<_>>(), labels);
    let legend = crender::class_legend(&entries, grid.width().min(420), 2);
    let note = render::with_caption(
        &legend,
        "CLEAR hue = dominant class; binary: true class hot, strongest other green; red/blue: true class dominates / not",
        1,
    );
    Ok(render::stack_vertical(&[&grid, &note], 4))
}

/// Strong features at the headline threshold: the input, the strong-feature mask, the
/// image with only them and the image without them.
fn mask_figure(
    x: &Tensor,
    resp: &Tensor,
    rmax: &Tensor,
    y: &[usize],
    pred: &[usize],
    correct: &[usize],
    wrong: &[usize],
) -> anyhow::Result<RgbImage> {
    let set: Vec<usize> = correct.iter().take(5).chain(wrong.iter().take(3)).copied().collect();
    let cols = ["input", "strong features", "only", "without"];
    let mut g = Grid::new(set.len(), cols.len());
    g.title = Some(format!("Strong features: R(x|true) > {HEADLINE} · max R(x|true)"));
    for (c, l) in cols.iter().enumerate() {
        g.set_col_label(c, *l);
    }
    let hopts = HeatmapOptions { scale: 6, legend: false, ..Default::default() };
    for (r, &i) in set.iter().enumerate() {
        let xi = x.get(i)?;
        let strong = resp.get(i)?.broadcast_gt(&(rmax.get(i)? * HEADLINE as f64)?)?.to_dtype(DType::F32)?;
        let strong = strong.reshape(xi.dims())?;
        let only = (&xi * &strong)?;
        let without = (&xi - &only)?;
        g.set_row_label(r, format!("#{i} true {} pred {}", y[i], pred[i]));
        g.set(r, 0, render::input_image(&xi, &hopts)?);
        g.set(r, 1, render::input_image(&strong, &hopts)?);
        g.set(r, 2, render::input_image(&only, &hopts)?);
        g.set(r, 3, render::input_image(&without, &hopts)?);
    }
    Ok(g.render())
}
