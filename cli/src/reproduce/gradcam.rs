//! `lumen reproduce gradcam`: every CAM variant side by side on the test digits whose
//! two most likely classes are closest (so class discrimination shows), for both
//! classes; how much each CAM's maps for the two classes differ; the cascading
//! randomization sanity check of Grad-CAM (Adebayo et al. 2018); and ROAD and the
//! confidence drop of each CAM, as pytorch-grad-cam's metrics define them.

use super::ReproduceArgs;
use crate::host;
use lumen_core::candle::{DType, Device, Tensor, D};
use lumen_core::data::{Mnist, Split};
use lumen_core::render::{self, Grid, HeatmapOptions};
use lumen_core::{io, Classifier, MetricInput, Params, Registry, Target};
use std::fmt::Write as _;
use std::path::Path;

/// The CAM methods shown, in column order.
const CAMS: &[&str] = &[
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "xgrad_cam",
    "layer_cam",
    "eigen_cam",
    "eigen_grad_cam",
    "score_cam",
    "ablation_cam",
    "full_grad",
    "guided_grad_cam",
];

/// Test digits with the smallest margin between their two largest logits: (index,
/// first class, second class, margin).
fn close_calls(model: &dyn Classifier, x: &Tensor, n: usize) -> anyhow::Result<Vec<(usize, usize, usize, f64)>> {
    let mut all = vec![];
    for r in lumen_core::method::chunks(x.dim(0)?, 250) {
        let logits = model.forward(&x.narrow(0, r.start, r.len())?)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        for (i, row) in logits.iter().enumerate() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
            all.push((r.start + i, idx[0], idx[1], row[idx[0]] - row[idx[1]]));
        }
    }
    all.sort_by(|a, b| a.3.total_cmp(&b.3));
    all.truncate(n);
    Ok(all)
}

/// Pearson correlation of two flattened maps.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va > 0.0 && vb > 0.0 { cov / (va * vb).sqrt() } else { 1.0 }
}

fn explain(reg: &Registry, model: &dyn Classifier, method: &str, x: &Tensor, t: &Target) -> anyhow::Result<Tensor> {
    let m = reg.build_method(method, &Params::new())?;
    Ok(m.attribute(model, x, t).map_err(|e| anyhow::anyhow!("{method}: {e}"))?.attribution().clone())
}

pub fn run(a: &ReproduceArgs, out: &Path, device: &Device) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let reg = host::registry()?;
    let model = reg.load_model("mnist-cnn", device)?;
    let m = model.as_ref();
    let data = Mnist::load()?;
    let (test_x, _) = data.all(Split::Test, device)?;
    let calls = close_calls(m, &test_x, if a.quick { 2 } else { 6 })?;
    let idx: Vec<usize> = calls.iter().map(|c| c.0).collect();
    let (x, labels) = data.batch(Split::Test, &idx, device)?;
    // Each digit twice: explained for its first and for its second class.
    let x2 = lumen_core::method::repeat_each(&x, 2)?;
    let classes: Vec<usize> = calls.iter().flat_map(|c| [c.1, c.2]).collect();
    let t2 = Target::Classes(classes.clone());
    let probs = lumen_core::candle_nn::ops::softmax(&m.forward(&x)?, D::Minus1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;

    // 1. The figure.
    let opts = HeatmapOptions { percentile: 99.5, scale: 4, ..Default::default() };
    let mut g = Grid::new(x2.dim(0)?, CAMS.len() + 1);
    g.title = Some("CAMs on mnist-cnn (default layer pool2), each digit for its two most likely classes".into());
    g.set_col_label(0, "input");
    for r in 0..x2.dim(0)? {
        let (d, c) = (r / 2, classes[r]);
        g.set_row_label(r, format!("test {} (label {}) → {c}, p = {:.2}", idx[d], labels[d], probs[d][c]));
        g.set(r, 0, render::input_image(&x2.get(r)?, &opts)?);
    }
    let mut discrimination = vec![];
    for (col, name) in CAMS.iter().enumerate() {
        let maps = explain(&reg, m, name, &x2, &t2)?;
        g.set_col_label(col + 1, name.replace('_', " "));
        for r in 0..x2.dim(0)? {
            g.set(r, col + 1, render::heatmap(&maps.get(r)?, Some(&x2.get(r)?), &opts)?.with_legend(1));
        }
        let flat = maps.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let rs: Vec<f64> = (0..calls.len()).map(|d| pearson(&flat[2 * d], &flat[2 * d + 1])).collect();
        discrimination.push((name.to_string(), rs.iter().sum::<f64>() / rs.len() as f64));
    }
    io::save_png(out.join("cams.png"), &g.render())?;
    println!("wrote {}", out.join("cams.png").display());

    // 2. The sanity check: Grad-CAM on cascading randomized copies.
    let (xs, ys) = data.batch(Split::Test, &data.first_of_each_class(Split::Test), device)?;
    let preds = lumen_core::target::predict(m, &xs)?;
    let gc = reg.build_method("grad_cam", &Params::new())?;
    let maps = gc.attribute(m, &xs, &Target::Classes(preds.clone()))?.attribution().clone();
    let sanity = reg.build_metric("sanity_randomization", &Params::new())?;
    let s = sanity.evaluate(&MetricInput::new(m, &xs, &preds, &maps).with_method(gc.as_ref()).with_seed(a.seed))?;
    let layers = s.layers.clone().unwrap_or_default();

    // 3. ROAD and the confidence drop of each CAM on a test set.
    let n_eval = if a.quick { 10 } else { 100 };
    let n_test = test_x.dim(0)?;
    let eval_idx: Vec<usize> = (0..n_eval).map(|i| i * n_test / n_eval).collect();
    let (ex, _) = data.batch(Split::Test, &eval_idx, device)?;
    let et = lumen_core::target::predict(m, &ex)?;
    let road = reg.build_metric("road", &Params::new())?;
    let drop = reg.build_metric("confidence_drop", &Params::new())?;
    let mut faithfulness = vec![];
    for name in CAMS {
        let maps = explain(&reg, m, name, &ex, &Target::Classes(et.clone()))?;
        let input = MetricInput::new(m, &ex, &et, &maps).with_seed(a.seed);
        faithfulness.push((name.to_string(), road.evaluate(&input)?.mean(), drop.evaluate(&input)?.mean()));
    }

    let secs = t0.elapsed().as_secs_f64();
    let command = format!("lumen reproduce gradcam{}", if a.quick { " --quick" } else { "" });
    let mut md = String::new();
    writeln!(md, "# The CAM family on mnist-cnn: measured figures\n")?;
    writeln!(md, "Written by `{command}` (seed {}, {secs:.0} s on CPU). Figure: `cams.png`.\n", a.seed)?;
    writeln!(md, "Digits (test index: first class vs second, logit margin):\n")?;
    for (i, c1, c2, margin) in &calls {
        writeln!(md, "- {i}: {c1} vs {c2}, margin {margin:.3}")?;
    }
    writeln!(
        md,
        "\nClass discrimination: Pearson correlation between a digit's maps for its first and its second \
         class, mean over the digits (1 = the same map for both classes; Eigen-CAM uses no class, so 1).\n"
    )?;
    writeln!(md, "| method | correlation of the two classes' maps |\n|---|---|")?;
    for (n, r) in &discrimination {
        writeln!(md, "| {n} | {r:.3} |")?;
    }
    writeln!(
        md,
        "\nSanity check (cascading randomization from the top, Grad-CAM at pool2, the first test digit of each \
         class): Spearman rank correlation of |map| with the trained model's, mean over digits; it should fall as \
         layers are randomized.\n"
    )?;
    writeln!(md, "| step | layers randomized up to | Spearman | SSIM | digits with a constant map |\n|---|---|---|---|---|")?;
    let avg = |v: &[f64]| lumen_core::metric::nan_mean(v);
    for l in &layers {
        let constant = l.spearman.iter().filter(|v| v.is_nan()).count();
        writeln!(md, "| {} | {} | {:.3} | {:.3} | {constant} of {} |", l.step, l.layer, avg(&l.spearman), avg(&l.ssim), l.spearman.len())?;
    }
    writeln!(md, "\n(A map that is zero everywhere, as Grad-CAM's ReLU gives when no channel supports the class, has no rank \
         correlation; those digits are left out of the mean.)")?;
    writeln!(
        md,
        "\nFaithfulness on {n_eval} test digits (predicted class): ROAD = (LeRF − MoRF) / 2 of the target logit over \
         percentiles 10–90 with noisy linear imputation (higher is better), and the confidence drop on the input \
         times the map scaled to [0, 1] (lower is better).\n"
    )?;
    writeln!(md, "| method | ROAD | confidence drop |\n|---|---|---|")?;
    for (n, r, d) in &faithfulness {
        writeln!(md, "| {n} | {r:.3} | {d:.3} |")?;
    }
    io::write_atomic(out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "command": command,
        "seed": a.seed,
        "seconds": secs,
        "digits": calls.iter().map(|(i, a, b, m)| serde_json::json!({"test_index": i, "first": a, "second": b, "margin": m})).collect::<Vec<_>>(),
        "class_map_correlation": discrimination.iter().map(|(n, r)| (n.clone(), serde_json::Value::from(*r))).collect::<serde_json::Map<_, _>>(),
        "sanity_grad_cam": layers.iter().map(|l| serde_json::json!({"step": l.step, "layer": l.layer, "spearman": avg(&l.spearman), "ssim": avg(&l.ssim)})).collect::<Vec<_>>(),
        "faithfulness": faithfulness.iter().map(|(n, r, d)| serde_json::json!({"method": n, "road": r, "confidence_drop": d})).collect::<Vec<_>>(),
        "sanity_labels": ys,
    });
    io::write_atomic(out.join("results.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    print!("{md}");
    Ok(())
}
