//! `lumen gallery`: every registered method on one test digit per class, side by
//! side, as a PNG grid plus an HTML page. Packs declare how their methods are shown
//! (`lumen_core::present`): column rank, lighter settings, and the model to use when
//! a method does not apply to the gallery's model (CLEAR on mnist-allcnn). A method
//! that still refuses or fails gets a blank tile and a note; the gallery keeps going.

use crate::cmd_explain::{ModelArgs, RenderArgs};
use crate::host;
use anyhow::{anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::Device;
use lumen_core::data::{Mnist, Split};
use lumen_core::present;
use lumen_core::render::{self, escape, HeatmapOptions};
use lumen_core::{io, Params};
use lumen_eval::gallery::{class_name, column_order, compose, run_method, top_k, MethodResult, NA};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct GalleryArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated methods, or `all` (every registered method).
    #[arg(long, default_value = "all")]
    pub methods: String,
    /// Output directory (gallery.png, gallery.html, gallery.json).
    #[arg(long, default_value = "out/gallery")]
    pub out: PathBuf,
    /// Per-method parameter METHOD.NAME=VALUE (repeatable), e.g. smoothgrad.n=20.
    #[arg(long = "param", value_name = "METHOD.NAME=VALUE")]
    pub params: Vec<String>,
    /// Run every method with its registry defaults instead of the gallery's lighter
    /// settings for slow methods.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub render: RenderArgs,
}

/// Splits `METHOD.NAME=VALUE` pairs into per-method parameters.
pub fn split_params(pairs: &[String], methods: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pairs {
        let (key, value) = p.split_once('=').ok_or_else(|| anyhow!("parameter '{p}' is not of the form METHOD.NAME=VALUE"))?;
        let (method, name) = key
            .split_once('.')
            .ok_or_else(|| anyhow!("gallery parameter '{p}' must name its method: METHOD.NAME=VALUE"))?;
        if !methods.iter().any(|m| m == method) {
            bail!("gallery parameter '{p}' is for method '{method}', which is not in the gallery ({})", methods.join(", "));
        }
        out.entry(method.to_string()).or_default().push(format!("{name}={value}"));
    }
    Ok(out)
}

pub fn run(a: GalleryArgs, device: &Device) -> anyhow::Result<()> {
    let reg = host::registry()?;
    let methods: Vec<String> = if a.methods.trim() == "all" {
        // Families side by side, as the packs rank their methods; then the rest.
        column_order(&reg, reg.method_names())
    } else {
        a.methods.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    if methods.is_empty() {
        bail!("--methods names no method");
    }
    for m in &methods {
        reg.method(m)?;
    }
    let user = split_params(&a.params, &methods)?;
    let model = a.model.load(&reg, device)?;
    let info = model.info().clone();
    let opts = a.render.options(4, info.input_range)?;

    let data = Mnist::load()?;
    let idx = data.first_of_each_class(Split::Test);
    let (xs, labels) = data.batch(Split::Test, &idx, device)?;
    info.check_input(&xs).map_err(|e| anyhow!("the gallery shows MNIST digits: {e}"))?;

    // Parameters: gallery settings (unless --full), then the user's overrides.
    let mut plans: Vec<(String, Params, Vec<String>)> = vec![];
    for m in &methods {
        let entry = reg.method(m)?;
        let light =
            if a.full { vec![] } else { present::light_settings(&reg, m, |k| entry.params().iter().any(|p| p.name == k)) };
        let mut pairs = light.clone();
        pairs.extend(user.get(m).cloned().unwrap_or_default());
        plans.push((m.clone(), Params::parse_pairs(&pairs)?, light));
    }

    let started = Instant::now();
    let pb = ProgressBar::new(plans.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} gallery [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = vec![];
    let mut fallbacks: Vec<(String, String, String)> = vec![];
    for (m, params, _) in &plans {
        pb.set_message(m.clone());
        let mut r = run_method(&reg, model.as_ref(), m, params, &xs);
        // Not for this model: show it on the model its pack names, if that one loads.
        if r.note.as_deref().is_some_and(|n| n.starts_with(NA)) {
            if let Some(other) = present::gallery_preset(&reg, m).and_then(|p| p.model).filter(|o| *o != info.name) {
                match reg.load_model(other, device) {
                    Ok(alt) => {
                        let why = r.note.take().unwrap_or_default();
                        r = run_method(&reg, alt.as_ref(), m, params, &xs);
                        r.shown_on = Some(other.to_string());
                        if r.note.is_none() {
                            fallbacks.push((m.clone(), other.to_string(), why));
                        }
                    }
                    Err(e) => r.note = Some(format!("{}; its gallery model {other} did not load: {e}", r.note.unwrap_or_default())),
                }
            }
        }
        let on = r.shown_on.as_ref().map(|m| format!("  (on {m})")).unwrap_or_default();
        pb.suspend(|| match &r.note {
            None => println!("{:<24} {:>7.2} s{on}", r.name, r.seconds),
            Some(n) if n.starts_with(NA) => println!("{:<24} {:>7.2} s  n/a, {n}", r.name, r.seconds),
            Some(n) => println!("{:<24} {:>7.2} s  FAILED: {n}", r.name, r.seconds),
        });
        results.push(r);
        pb.inc(1);
    }
    pb.finish_and_clear();

    let preds: Vec<Vec<(usize, f32)>> =
        (0..idx.len()).map(|i| top_k(model.as_ref(), &xs.narrow(0, i, 1)?, 1)).collect::<lumen_eval::Result<_>>()?;
    let title = format!("lumen gallery: {}, predicted class", info.name);
    let (grid, caps) = compose(&title, &xs, &labels, &preds, &info.labels, &results, &opts)?;
    let png = a.out.join("gallery.png");
    io::save_png(&png, &grid.render())?;
    let html = page_body(&info.name, &idx, &labels, &preds, &info.labels, &results, &plans, &caps, &opts, &fallbacks);
    let page = render::write_page_for_png(&png, &format!("lumen gallery: {}", info.name), &html)?;
    let json = serde_json::json!({
        "model": info.name,
        "digits": idx,
        "labels": labels,
        "predictions": preds.iter().map(|p| p[0].0).collect::<Vec<_>>(),
        "methods": results.iter().map(|r| serde_json::json!({
            "name": r.name, "ok": r.note.is_none(), "note": r.note, "seconds": r.seconds, "params": r.params,
            "model": r.shown_on.as_deref().unwrap_or(&info.name),
        })).collect::<Vec<_>>(),
    });
    io::write_atomic(a.out.join("gallery.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    let na = results.iter().filter(|r| r.note.as_deref().is_some_and(|n| n.starts_with(NA))).count();
    let failed = results.iter().filter(|r| r.note.is_some()).count() - na;
    println!(
        "wrote {} and {} ({} methods, {} not applicable to {}, {} failed, {:.1} s; see the page for notes)",
        png.display(),
        page.display(),
        results.len(),
        na,
        info.name,
        failed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn page_body(
    model: &str,
    idx: &[usize],
    labels: &[usize],
    preds: &[Vec<(usize, f32)>],
    names: &[String],
    results: &[MethodResult],
    plans: &[(String, Params, Vec<String>)],
    caps: &[Vec<f32>],
    opts: &HeatmapOptions,
    fallbacks: &[(String, String, String)],
) -> String {
    let mut s = String::new();
    s += &format!(
        "<p>Model <code>{}</code>, one test digit per class (MNIST-5k test indices {}), each method explaining the \
         predicted class. Regenerate with <code>lumen gallery</code>.</p>\n",
        escape(model),
        idx.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    );
    s += "<h2>Legend</h2>\n<ul>\n";
    if opts.absolute {
        s += "<li>Absolute maps: white is no attribution, dark red the strongest.</li>\n";
    } else {
        s += "<li>Signed maps on a diverging scale: <b style=\"color:#be0f1e\">red</b> is evidence for the class, \
              <b style=\"color:#1432be\">blue</b> against it, white is zero.</li>\n";
    }
    s += &format!(
        "<li>Each tile is scaled on its own: |map| is capped at its {}th percentile (SmoothGrad §3.1), so the few \
         values beyond saturate. The colour bar under each tile gives its cap.</li>\n",
        opts.percentile
    );
    if opts.times_input {
        s += "<li>Maps are multiplied by the input before rendering.</li>\n";
    }
    if opts.overlay {
        s += "<li>Maps are blended over the input; weak evidence lets the digit show through.</li>\n";
    }
    s += "<li>The input column shows the digit as dark ink on white. Row captions give the true and predicted \
          class and the predicted probability.</li>\n";
    for (m, other, why) in fallbacks {
        s += &format!(
            "<li>The <code>{}</code> column is computed on <code>{}</code>, the model its pack names for it, \
             explaining that model's predicted class; on <code>{}</code>: {}.</li>\n",
            escape(m),
            escape(other),
            escape(model),
            escape(why.strip_prefix(NA).unwrap_or(why)),
        );
    }
    s += "<li>A grey \"n/a\" tile means the method failed or does not apply to the model; the reason is in the \
          table.</li>\n</ul>\n";
    s += "<h2>Methods</h2>\n";
    let rows: Vec<Vec<String>> = results
        .iter()
        .zip(plans)
        .zip(caps)
        .map(|((r, (_, _, light)), cap)| {
            let params = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            let status = match &r.note {
                None => "ok".to_string(),
                Some(n) if n.starts_with(NA) => n.clone(),
                Some(n) => format!("failed: {n}"),
            };
            let caps = if cap.is_empty() {
                String::new()
            } else {
                let lo = cap.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = cap.iter().copied().fold(0.0, f32::max);
                format!("{} – {}", render::fmt_tick(lo), render::fmt_tick(hi))
            };
            let on = r.shown_on.clone().unwrap_or_else(|| model.to_string());
            vec![r.name.clone(), on, params, light.join(" "), format!("{:.2}", r.seconds), caps, status]
        })
        .collect();
    s += &render::table(
        &["method", "model", "parameters", "gallery settings (lighter than defaults)", "seconds", "caps", "status"],
        &rows,
    );
    s += "<h2>Digits</h2>\n";
    let rows: Vec<Vec<String>> = (0..labels.len())
        .map(|i| {
            vec![
                idx[i].to_string(),
                class_name(names, labels[i]),
                class_name(names, preds[i][0].0),
                format!("{:.4}", preds[i][0].1),
            ]
        })
        .collect();
    s += &render::table(&["test index", "true", "predicted", "probability"], &rows);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::{DType, Tensor};
    use lumen_core::{Classifier, Target};
    use lumen_eval::gallery::caption;
    use lumen_core::method::MethodProps;
    use lumen_core::model::{network::init_params, Network, NetworkModel};
    use lumen_core::registry::MethodEntry;
    use lumen_core::{Attributor, Explanation, Result};

    struct Broken(bool);
    impl Attributor for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn attribute(&self, _: &dyn Classifier, _: &Tensor, _: &Target) -> Result<Explanation> {
            if self.0 {
                panic!("boom");
            }
            Err(lumen_core::Error::unsupported("broken", "needs class kernels"))
        }
    }
    static FAILS: MethodEntry = MethodEntry {
        name: "test-fails",
        pack: "gallery-test",
        summary: "",
        schema: || &[],
        props: || MethodProps::NONE,
        build: |_, _| Ok(Box::new(Broken(false))),
    };
    static PANICS: MethodEntry = MethodEntry {
        name: "test-panics",
        pack: "gallery-test",
        summary: "",
        schema: || &[],
        props: || MethodProps::NONE,
        build: |_, _| Ok(Box::new(Broken(true))),
    };

    fn model() -> NetworkModel {
        let d = Device::Cpu;
        let specs = lumen_models::arch::mnist_cnn();
        let p = init_params(&specs, 7, &d).unwrap();
        let net = Network::from_spec(&specs, lumen_core::candle_nn::VarBuilder::from_tensors(p, DType::F32, &d)).unwrap();
        let info = lumen_core::ModelInfo {
            name: "random-cnn".into(),
            input_shape: vec![1, 28, 28],
            labels: (0..10).map(|i| i.to_string()).collect(),
            input_range: (0.0, 1.0),
            card: None,
        };
        NetworkModel::new(info, net, &d).unwrap()
    }

    /// A refusing method and a panicking one give blank tiles and notes; the others render.
    #[test]
    fn failing_methods_become_notes_and_blank_tiles() {
        let mut reg = crate::host::registry().unwrap();
        reg.add_method(&FAILS, "test").unwrap();
        reg.add_method(&PANICS, "test").unwrap();
        let m = model();
        let data = Mnist::load().unwrap();
        let idx = data.first_of_each_class(Split::Test)[..3].to_vec();
        let (xs, labels) = data.batch(Split::Test, &idx, &Device::Cpu).unwrap();
        let results: Vec<MethodResult> = ["saliency", "test-fails", "test-panics"]
            .iter()
            .map(|n| run_method(&reg, &m, n, &Params::new(), &xs))
            .collect();
        assert!(results[0].note.is_none(), "{:?}", results[0].note);
        assert_eq!(results[0].maps.as_ref().unwrap().len(), 3);
        assert!(results[1].note.as_ref().unwrap().contains("needs class kernels"));
        assert!(results[1].note.as_ref().unwrap().starts_with(NA), "a refusal is not a failure");
        assert!(!results[2].note.as_ref().unwrap().starts_with(NA));
        assert!(results[2].note.as_ref().unwrap().contains("boom"));
        let preds: Vec<Vec<(usize, f32)>> = (0..3).map(|i| top_k(&m, &xs.narrow(0, i, 1).unwrap(), 1).unwrap()).collect();
        let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let opts = HeatmapOptions { scale: 2, ..Default::default() };
        let (grid, caps) = compose("t", &xs, &labels, &preds, &names, &results, &opts).unwrap();
        assert_eq!((grid.rows, grid.cols), (3, 4));
        assert!(grid.get(0, 0).is_some() && grid.get(2, 1).is_some());
        assert!(grid.get(0, 2).is_none() && grid.get(1, 3).is_none());
        assert_eq!(caps[0].len(), 3);
        assert!(caps[1].is_empty());
        let img = grid.render();
        assert_eq!(img.dimensions(), (grid.layout().width, grid.layout().height));
    }

    #[test]
    fn per_method_parameters_are_split_and_checked() {
        let ms = vec!["smoothgrad".to_string(), "saliency".to_string()];
        let p = split_params(&["smoothgrad.inner.steps=5".into(), "saliency.batch_size=2".into()], &ms).unwrap();
        assert_eq!(p["smoothgrad"], vec!["inner.steps=5"]);
        assert_eq!(p["saliency"], vec!["batch_size=2"]);
        assert!(split_params(&["n=5".into()], &ms).unwrap_err().to_string().contains("METHOD.NAME"));
        assert!(split_params(&["lrp.eps=1".into()], &ms).unwrap_err().to_string().contains("not in the gallery"));
        assert_eq!(caption("integrated_gradients", 60), "integrated_\ngradients");
        assert_eq!(caption("saliency", 112), "saliency");
    }
}
