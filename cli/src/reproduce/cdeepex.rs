//! `lumen reproduce cdeepex`: the generator quality bar, CDeepEx Fig. 5 (third-class
//! wins, CDeepEx vs xGEMs, with average likelihood paths) and the biased-8
//! experiment (Fig. 6) when the biased classifier is available.

use super::ReproduceArgs;
use anyhow::Context;
use image::{Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use lumen_cdeepex::inversion::{normal, quality, InversionConfig};
use lumen_cdeepex::{with_latent, LatentConfig};
use lumen_core::explanation::{SolverRun, SolverStep};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::generator::Generator;
use lumen_core::params::Params;
use lumen_core::render::colormap::{diverging, gray};
use lumen_core::render::font::draw_text;
use lumen_core::render::grid::Grid;
use lumen_core::{Classifier, Target};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

const SCALE: u32 = 4;

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    if let Ok(s) = ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} {{elapsed}}")) {
        pb.set_style(s);
    }
    pb
}

/// A `[1, 28, 28]` image in [0, 1] as an upscaled grey tile (dark ink on white).
fn gray_tile(t: &Tensor) -> anyhow::Result<RgbImage> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(tile(&v, |x| gray(1.0 - x)))
}

/// A signed map, symmetric colour range from its largest magnitude.
fn signed_tile(t: &Tensor) -> anyhow::Result<RgbImage> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    let m = v.iter().fold(1e-6f32, |a, b| a.max(b.abs()));
    Ok(tile(&v, |x| diverging(x / m)))
}

fn tile(v: &[f32], f: impl Fn(f32) -> Rgb<u8>) -> RgbImage {
    let side = (v.len() as f64).sqrt() as u32;
    RgbImage::from_fn(side * SCALE, side * SCALE, |x, y| f(v[((y / SCALE) * side + x / SCALE) as usize]))
}

fn save_png(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    lumen_core::io::write_atomic(path, bytes.get_ref())?;
    Ok(())
}

/// A line chart of several series over the same x (iteration index).
fn plot(title: &str, series: &[(&str, Vec<f64>, Rgb<u8>)]) -> RgbImage {
    let (w, h, left, top, bottom) = (420u32, 260u32, 44u32, 22u32, 40u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let ink = Rgb([20, 20, 20]);
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, v, _) in series {
        for x in v.iter().filter(|x| x.is_finite()) {
            lo = lo.min(*x);
            hi = hi.max(*x);
        }
    }
    if !lo.is_finite() || hi - lo < 1e-9 {
        lo = -1.0;
        hi = 0.0;
    }
    let (pw, ph) = (w - left - 10, h - top - bottom);
    let px = |i: usize| left + (i as f64 / (n - 1) as f64 * pw as f64) as u32;
    let py = |v: f64| top + ((hi - v) / (hi - lo) * ph as f64).clamp(0.0, ph as f64) as u32;
    for x in left..=left + pw {
        img.put_pixel(x, top + ph, ink);
    }
    for y in top..=top + ph {
        img.put_pixel(left, y, ink);
    }
    draw_text(&mut img, 4, 4, title, ink, 1);
    draw_text(&mut img, 2, top as i64, &format!("{hi:.1}"), ink, 1);
    draw_text(&mut img, 2, (top + ph - 8) as i64, &format!("{lo:.1}"), ink, 1);
    draw_text(&mut img, (left + pw / 2 - 30) as i64, (top + ph + 4) as i64, &format!("outer iteration 0..{}", n - 1), ink, 1);
    let mut lx = left as i64;
    for (name, v, c) in series {
        for i in 1..v.len() {
            let (x0, y0, x1, y1) = (px(i - 1) as f64, py(v[i - 1]) as f64, px(i) as f64, py(v[i]) as f64);
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                let (x, y) = ((x0 + t * (x1 - x0)) as u32, (y0 + t * (y1 - y0)) as u32);
                for d in 0..2 {
                    if x + d < w && y < h {
                        img.put_pixel(x + d, y, *c);
                    }
                }
            }
        }
        let (tw, _) = draw_text(&mut img, lx, (h - 14) as i64, &format!("-- {name}"), *c, 1);
        lx += tw as i64 + 14;
    }
    img
}

/// Mean per iteration over paths of different lengths (each padded with its last value).
fn mean_path(paths: &[Vec<f64>]) -> Vec<f64> {
    let n = paths.iter().map(|p| p.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let vals: Vec<f64> = paths.iter().filter_map(|p| p.get(i).or(p.last()).copied()).collect();
            vals.iter().sum::<f64>() / vals.len().max(1) as f64
        })
        .collect()
}

/// Mean of `f` over the runs (`None` counts as absent but still divides, as a missing value).
fn mean_of(runs: &[SolverRun], f: impl Fn(&SolverRun) -> Option<f64>) -> f64 {
    runs.iter().filter_map(f).sum::<f64>() / runs.len() as f64
}

fn runs_json(runs: &[SolverRun]) -> Vec<Value> {
    runs.iter().map(SolverRun::to_json).collect()
}

/// Balanced subset of the test split: `per_class` digits of each class.
fn subset(per_class: usize) -> Vec<usize> {
    (0..10).flat_map(|c| (0..per_class).map(move |k| c * 100 + k * (100 / per_class.max(1)))).collect()
}

/// Which parts to run: `LUMEN_CDEEPEX_PARTS` (comma list of `quality`, `fig5:cdeepex`,
/// `fig5:xgems`, `biased8`; default all), so that the slow parts can run as separate
/// processes. Each part writes its own JSON file.
fn wanted(part: &str) -> bool {
    match std::env::var("LUMEN_CDEEPEX_PARTS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

/// A size from the environment, or the default of the run mode.
fn size(var: &str, quick: usize, full: usize, a: &ReproduceArgs) -> anyhow::Result<usize> {
    match std::env::var(var) {
        Ok(v) => v.trim().parse().with_context(|| format!("{var}='{v}' is not a count")),
        Err(_) => Ok(if a.quick { quick } else { full }),
    }
}

fn write_json(path: &Path, v: Value) -> anyhow::Result<()> {
    lumen_core::io::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn run(a: &ReproduceArgs, out: &Path, device: &Device) -> anyhow::Result<()> {
    let reg = crate::host::registry()?;
    let model = reg.load_model("mnist-cnn", device)?;
    let gen = reg.load_generator("mnist-vae", device)?;
    let mnist = Mnist::load()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut results = serde_json::Map::new();
    results.insert("seed".into(), json!(a.seed));
    results.insert("quick".into(), json!(a.quick));
    if wanted("quality") {

    // 1. Generator quality bar on held-out digits, and sample / inversion grids.
    // A balanced subset of the held-out split (2 per class by default) with the
    // method's default inversion; `lumen train-generator --eval-only` measures the
    // bar on all 1,000 (with a cheaper inversion).
    let idx = subset(size("LUMEN_CDEEPEX_QUALITY_PER_CLASS", 2, 2, a)?);
    let (xs, _) = mnist.batch(Split::Test, &idx, device)?;
    let icfg = InversionConfig { seed: a.seed, ..Default::default() };
    let pb = bar(xs.dim(0)?, "inverting");
    let (q, gens) = quality(gen.as_ref(), model.as_ref(), &xs, &icfg, 100, |k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    println!("generator mnist-vae on {} held-out digits: per-pixel MSE {:.4}, mnist-cnn agreement {:.1}%", q.n, q.mse, 100.0 * q.agreement);
    write_json(&out.join("quality.json"), json!({"seed": a.seed, "n": q.n, "mse": q.mse, "agreement": q.agreement, "digits": idx}))?;
    let cols = 10usize;
    let mut g = Grid::new(3, cols);
    g.title = Some("mnist-vae: random samples G(z), z ~ N(0, I) (row 1); held-out digits I (row 2) and inversions G(z0) (row 3)".into());
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let samples = gen.generate(&normal(&mut rng, cols, gen.latent_dim(), device)?)?;
    let step = (xs.dim(0)? / cols).max(1);
    for c in 0..cols {
        g.set(0, c, gray_tile(&samples.get(c)?)?);
        let i = (c * step).min(xs.dim(0)? - 1);
        g.set(1, c, gray_tile(&xs.get(i)?)?);
        g.set(2, c, gray_tile(&gens.get(i)?)?);
    }
    g.set_row_label(0, "G(z)");
    g.set_row_label(1, "I");
    g.set_row_label(2, "G(z0)");
    save_png(&g.render(), &out.join("generator_grid.png"))?;
    }

    // 2. Fig. 5: CDeepEx vs xGEMs over a balanced subset of held-out digits.
    let per_class = size("LUMEN_CDEEPEX_FIG5_PER_CLASS", 1, 5, a)?;
    let idx = subset(per_class);
    let (xs, labels) = mnist.batch(Split::Test, &idx, device)?;
    for name in ["cdeepex", "xgems"] {
        if !wanted(&format!("fig5:{name}")) {
            continue;
        }
        let mut cfg = LatentConfig::with_generator(gen.clone());
        cfg.inversion.seed = a.seed;
        let m = with_latent(name, cfg)?;
        let pb = bar(xs.dim(0)?, name);
        let t0 = std::time::Instant::now();
        let mut ex = vec![];
        let mut expl = vec![];
        for i in 0..xs.dim(0)? {
            let e = m.attribute(model.as_ref(), &xs.narrow(0, i, 1)?, &Target::Predicted)?;
            ex.extend(e.facts.solver_runs.iter().cloned());
            expl.push(e);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let n = ex.len() as f64;
        let count = |f: fn(&SolverRun) -> bool| ex.iter().filter(|r| f(r)).count() as f64;
        let succ: Vec<&SolverRun> = ex.iter().filter(|r| r.success).collect();
        let third_succ = succ.iter().filter(|r| r.third_class_wins).count() as f64;
        let paths = |f: fn(&SolverStep) -> f64| mean_path(&ex.iter().map(|r| r.trace.iter().map(f).collect()).collect::<Vec<_>>());
        let (pt, pp, po) = (paths(|t| t.llh_true), paths(|t| t.llh_probe), paths(|t| t.llh_other));
        let mean_violation = mean_of(&ex, |r| Some(r.violation));
        let mean_outer = mean_of(&ex, |r| Some(r.outer_iters as f64));
        let mean_inner = mean_of(&ex, |r| Some(r.inner_iters as f64));
        println!(
            "{name}: {} digits, third class wins at z_e in {:.1}% ({:.1}% of successful runs), success {:.1}%, mean violation {:.2e}, mean outer/inner iterations {:.1}/{:.1}, {:.1} s per digit",
            ex.len(),
            100.0 * count(|r| r.third_class_wins) / n,
            100.0 * third_succ / succ.len().max(1) as f64,
            100.0 * count(|r| r.success) / n,
            mean_violation,
            mean_outer,
            mean_inner,
            secs / n
        );
        write_json(
            &out.join(format!("fig5_{name}.json")),
            json!({
                "seed": a.seed,
                "digits": idx,
                "labels": labels,
                "per_digit": runs_json(&ex),
                "n": ex.len(),
                "third_class_wins": count(|r| r.third_class_wins) / n,
                "third_class_wins_among_successes": third_succ / succ.len().max(1) as f64,
                "success_rate": count(|r| r.success) / n,
                "mean_violation": mean_violation,
                "mean_outer_iters": mean_outer,
                "mean_inner_iters": mean_inner,
                "mean_distance2": mean_of(&ex, |r| r.trace.last().map(|t| t.distance2)),
                "seconds_per_digit": secs / n,
                "mean_path": {"llh_true": pt, "llh_probe": pp, "llh_other": po},
            }),
        )?;
        let img = plot(
            &format!("{name}: mean log-likelihood path over {} digits", ex.len()),
            &[("true", pt, Rgb([200, 30, 30])), ("probe", pp, Rgb([30, 60, 200])), ("best other", po, Rgb([30, 150, 60]))],
        );
        save_png(&img, &out.join(format!("fig5_paths_{name}.png")))?;
        // Examples: I, G(z0), G(z_e) and G(z_e) − G(z0) (red: ink the probe needs
        // added; blue: ink it needs removed), one digit per class.
        let shown: Vec<usize> = (0..xs.dim(0)?).step_by(per_class.max(1)).take(10).collect();
        let mut g = Grid::new(4, shown.len());
        g.title = Some(format!("{name}: why true, not probe? red = add, blue = remove"));
        for (c, &i) in shown.iter().enumerate() {
            let e = &expl[i];
            g.set(0, c, gray_tile(&xs.get(i)?)?);
            g.set(1, c, gray_tile(&e.tensor("generated")?.get(0)?)?);
            g.set(2, c, gray_tile(&e.tensor("counterfactual")?.get(0)?)?);
            g.set(3, c, signed_tile(&e.attribution().get(0)?.neg()?)?);
            if let Target::Contrast { a, b } = &e.target {
                g.set_col_label(c, format!("{}-{}", a[0], b[0]));
            }
        }
        for (r, l) in ["I", "G(z0)", "G(ze)", "G(ze)-G(z0)"].iter().enumerate() {
            g.set_row_label(r, *l);
        }
        save_png(&g.render(), &out.join(format!("fig5_examples_{name}.png")))?;
    }

    // 3. The biased-8 experiment (the biased classifier with the generator trained
    // on biased MNIST).
    if wanted("biased8") {
        let r = match (reg.load_model("mnist-cnn-biased", device), reg.load_generator("mnist-vae-biased", device)) {
            (Ok(biased), Ok(bgen)) => biased8(a, &reg, biased, bgen, out, device)?,
            (m, g) => {
                let why = format!("{:?} {:?}", m.err().map(|e| e.to_string()), g.err().map(|e| e.to_string()));
                println!("biased-8 experiment skipped: {why}");
                json!({"skipped": why})
            }
        };
        write_json(&out.join(format!("biased8{}.json", b8_suffix())), r)?;
    }
    let _ = results;
    Ok(())
}

/// The latent solvers of the biased-8 part: `LUMEN_CDEEPEX_B8_SOLVERS` (comma list of
/// `cdeepex`, `xgems`; default both), so that they can run as separate processes.
fn b8_solvers() -> Vec<String> {
    match std::env::var("LUMEN_CDEEPEX_B8_SOLVERS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
        _ => vec!["cdeepex".into(), "xgems".into()],
    }
}

/// Output name suffix when only some solvers run (`biased8_xgems.json`).
fn b8_suffix() -> String {
    match std::env::var("LUMEN_CDEEPEX_B8_SOLVERS") {
        Ok(v) if !v.trim().is_empty() => format!("_{}", b8_solvers().join("_")),
        _ => String::new(),
    }
}

/// The square of biased MNIST: rows and columns 1..=6 (see core's `data::biased`).
fn square_mask() -> Vec<bool> {
    (0..784).map(|p| (1..7).contains(&(p / 28)) && (1..7).contains(&(p % 28))).collect()
}

/// Share of the positive mass of `map` (`[1, 28, 28]`) inside the square (of the
/// negative mass with `sign` = −1).
fn positive_share(map: &Tensor, mask: &[bool], sign: f32) -> anyhow::Result<f64> {
    let v = map.flatten_all()?.to_vec1::<f32>()?;
    let (mut inside, mut total) = (0f64, 0f64);
    for (x, m) in v.iter().zip(mask) {
        let p = (sign * x).max(0.0) as f64;
        total += p;
        if *m {
            inside += p;
        }
    }
    Ok(if total > 0.0 { inside / total } else { 0.0 })
}

fn biased8(
    a: &ReproduceArgs,
    reg: &lumen_core::Registry,
    model: Arc<dyn Classifier>,
    gen: Arc<dyn Generator>,
    out: &Path,
    device: &Device,
) -> anyhow::Result<Value> {
    let mnist = Mnist::load()?;
    let mask = square_mask();
    let solvers = b8_solvers();
    let mask_t = Tensor::from_vec(mask.iter().map(|m| *m as u8 as f32).collect::<Vec<_>>(), (1, 1, 28, 28), device)?;
    let add_square = |x: &Tensor| -> anyhow::Result<Tensor> {
        Ok(((x.broadcast_mul(&(1.0 - &mask_t)?)?) + (mask_t.clone() * 0.5)?.broadcast_as(x.dims())?)?)
    };
    // Confirm the bias.
    let (all, labels) = mnist.all(Split::Test, device)?;
    let pred = lumen_core::target::predict(model.as_ref(), &all)?;
    let eights: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 8).collect();
    let acc8 = eights.iter().filter(|&&i| pred[i] == 8).count() as f64 / eights.len() as f64;
    let pred_sq = lumen_core::target::predict(model.as_ref(), &add_square(&all)?)?;
    let others: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != 8).collect();
    let to8 = others.iter().filter(|&&i| pred_sq[i] == 8).count() as f64 / others.len() as f64;
    println!("mnist-cnn-biased: accuracy on clean 8s {:.1}%, other digits called 8 with the square {:.1}%", 100.0 * acc8, 100.0 * to8);

    // "Why not 8?" on clean test digits that are not 8 and not predicted 8.
    let per_class = size("LUMEN_CDEEPEX_B8_PER_CLASS", 1, 2, a)?;
    let idx: Vec<usize> = (0..10)
        .filter(|&c| c != 8)
        .flat_map(|c| (0..100).map(move |k| c * 100 + k))
        .filter(|&i| pred[i] != 8 && pred[i] == labels[i])
        .collect::<Vec<_>>()
        .chunk_by(|x, y| labels[*x] == labels[*y])
        .flat_map(|g| g.iter().take(per_class).copied().collect::<Vec<_>>())
        .collect();
    let (xs, _) = mnist.batch(Split::Test, &idx, device)?;
    let n = idx.len();
    let probe8 = Target::Contrast { a: idx.iter().map(|&i| pred[i]).collect(), b: vec![8; n] };
    let toward8 = Target::Contrast { a: vec![8; n], b: idx.iter().map(|&i| pred[i]).collect() };
    let mut shares = serde_json::Map::new();
    let mut maps: Vec<(String, Tensor)> = vec![];
    // CDeepEx and xGEMs (with the generator trained on biased MNIST): what would
    // have to be added to become 8 = G(z_e) − G(z0).
    let mut solver = serde_json::Map::new();
    let mut counterfactuals = vec![];
    for name in ["cdeepex", "xgems"] {
        if !solvers.iter().any(|s| s == name) {
            continue;
        }
        let mut cfg = LatentConfig::with_generator(gen.clone());
        cfg.inversion.seed = a.seed;
        let m = with_latent(name, cfg)?;
        let pb = bar(n, &format!("{name} why-not-8"));
        let t0 = std::time::Instant::now();
        let (mut parts, mut cfs, mut ex) = (vec![], vec![], vec![]);
        // Chunks of 10: the inversion and the solver run batched within a chunk.
        for r in lumen_core::method::chunks(n, 10) {
            let e = m.attribute(model.as_ref(), &xs.narrow(0, r.start, r.len())?, &probe8.select(r.clone()))?;
            ex.extend(e.facts.solver_runs.iter().cloned());
            parts.push(e.attribution().neg()?);
            cfs.push(e.tensor("counterfactual")?.clone());
            pb.inc(r.len() as u64);
        }
        pb.finish_and_clear();
        let count = |f: fn(&SolverRun) -> bool| ex.iter().filter(|r| f(r)).count() as f64 / n as f64;
        let (success, third) = (count(|r| r.success), count(|r| r.third_class_wins));
        let secs = t0.elapsed().as_secs_f64() / n as f64;
        println!("{name} why-not-8: success {:.0}%, third class wins {:.0}%, {secs:.1} s per digit", 100.0 * success, 100.0 * third);
        solver.insert(
            name.into(),
            json!({"success_rate": success, "third_class_wins": third, "seconds_per_digit": secs, "per_digit": runs_json(&ex)}),
        );
        maps.push((name.into(), Tensor::cat(&parts, 0)?));
        counterfactuals.push((format!("{name} G(ze)"), Tensor::cat(&cfs, 0)?));
    }
    // Saliency of z_8 − z_pred: positive = raising this pixel favours 8.
    let sal = reg.build_method("saliency", &Params::new())?;
    maps.push(("saliency".into(), sal.attribute(model.as_ref(), &xs, &toward8)?.attribution().clone()));
    // The contrastive wrapper: scaled saliency(8) − scaled saliency(pred).
    let con = reg.build_method("contrastive", &Params::new())?;
    maps.push(("contrastive_saliency".into(), con.attribute(model.as_ref(), &xs, &toward8)?.attribution().clone()));
    // PDA, the weight of evidence for class 8, when its pack is linked.
    match reg.build_method("pda", &Params::new()) {
        Ok(pda) => {
            let pb = bar(n, "pda");
            let mut parts = vec![];
            for i in 0..n {
                parts.push(pda.attribute(model.as_ref(), &xs.narrow(0, i, 1)?, &Target::Class(8))?.attribution().clone());
                pb.inc(1);
            }
            pb.finish_and_clear();
            maps.push(("pda".into(), Tensor::cat(&parts, 0)?));
        }
        Err(e) => println!("pda unavailable: {e}"),
    }
    let mut g = Grid::new(1 + counterfactuals.len() + maps.len(), n.min(9));
    g.title = Some("mnist-cnn-biased: why not 8? red = towards 8 (the square: rows/cols 1-6)".into());
    for (r, (name, t)) in counterfactuals.iter().enumerate() {
        g.set_row_label(maps.len() + 1 + r, name.as_str());
        for c in 0..n.min(9) {
            g.set(maps.len() + 1 + r, c, gray_tile(&t.get(c)?)?);
        }
    }
    g.set_row_label(0, "I");
    for c in 0..n.min(9) {
        g.set(0, c, gray_tile(&xs.get(c)?)?);
    }
    for (r, (name, t)) in maps.iter().enumerate() {
        let s: Vec<f64> = (0..n).map(|i| positive_share(&t.get(i)?, &mask, 1.0)).collect::<anyhow::Result<_>>()?;
        let neg: Vec<f64> = (0..n).map(|i| positive_share(&t.get(i)?, &mask, -1.0)).collect::<anyhow::Result<_>>()?;
        let mean = s.iter().sum::<f64>() / n as f64;
        let mean_neg = neg.iter().sum::<f64>() / n as f64;
        println!(
            "why not 8? {name}: mean share of positive mass inside the square {:.1}%, of negative mass {:.1}% (area share 4.6%)",
            100.0 * mean,
            100.0 * mean_neg
        );
        shares.insert(
            name.clone(),
            json!({"mean_share": mean, "per_digit": s, "mean_negative_share": mean_neg, "per_digit_negative": neg}),
        );
        g.set_row_label(r + 1, name.as_str());
        for c in 0..n.min(9) {
            g.set(r + 1, c, signed_tile(&t.get(c)?)?);
        }
    }
    save_png(&g.render(), &out.join(format!("biased8{}.png", b8_suffix())))?;
    Ok(json!({
        "accuracy_clean_8": acc8,
        "others_called_8_with_square": to8,
        "n_digits": n,
        "digits": idx,
        "seed": a.seed,
        "solver": solver,
        "square_area_share": 36.0 / 784.0,
        "positive_mass_share_in_square": shares,
    }))
}
