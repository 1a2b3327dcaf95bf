//! `lumen explain`: one method on one input; writes the map as PNG, every tensor
//! of the explanation as safetensors and a JSON sidecar, and prints the prediction.

use crate::host;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::load_input;
use lumen_core::render::{self, HeatmapOptions, Reduce};
use lumen_core::present::{self, RenderRequest};
use lumen_core::{io, Classifier, Params, Registry, Target};
use lumen_eval::gallery::{class_name, top_k};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the model comes from: a registered name, or a card file.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Registered model (see `lumen list`).
    #[arg(long, default_value = "mnist-cnn")]
    pub model: String,
    /// Load the model from a card TOML instead (its `weights` path is relative to
    /// the card); overrides --model. Shipped cards can also be overridden by
    /// putting NAME.toml in a directory listed in LUMEN_MODELS_DIR.
    #[arg(long, value_name = "PATH")]
    pub model_card: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self, reg: &Registry, device: &Device) -> anyhow::Result<Arc<dyn Classifier>> {
        Ok(lumen_eval::load_model(self.model_card.as_deref(), &self.model, reg, device)?)
    }
}

/// Rendering flags (SmoothGrad §3.1), shared by `explain` and `gallery`.
#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// Show |map| on a sequential scale instead of the signed blue–white–red scale.
    #[arg(long)]
    pub abs: bool,
    /// Cap |map| at this percentile; larger values saturate (100 = no capping).
    #[arg(long, default_value_t = 99.0)]
    pub percentile: f32,
    /// Multiply the map by the input before rendering.
    #[arg(long)]
    pub times_input: bool,
    /// Blend the map over the (grayscale) input.
    #[arg(long)]
    pub overlay: bool,
    /// Channel reduction: sum (signed) or max-abs (max of |.| over channels).
    #[arg(long, default_value = "sum")]
    pub reduce: String,
    /// Integer upscaling of the map, nearest neighbour [default: 8 for explain, 4 in the gallery].
    #[arg(long)]
    pub scale: Option<u32>,
}

impl RenderArgs {
    pub fn options(&self, default_scale: u32, input_range: (f32, f32)) -> anyhow::Result<HeatmapOptions> {
        if !(0.0..=100.0).contains(&self.percentile) {
            bail!("--percentile must be between 0 and 100, got {}", self.percentile);
        }
        let scale = self.scale.unwrap_or(default_scale);
        if !(1..=64).contains(&scale) {
            bail!("--scale must be between 1 and 64, got {scale}");
        }
        Ok(HeatmapOptions {
            absolute: self.abs,
            reduce: Reduce::parse(&self.reduce)?,
            percentile: self.percentile,
            times_input: self.times_input,
            overlay: self.overlay,
            scale,
            input_range,
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A .png / .safetensors file, or mnist:train:INDEX / mnist:test:INDEX.
    #[arg(long)]
    pub input: String,
    /// Registered method (see `lumen list`).
    #[arg(long, default_value = "saliency")]
    pub method: String,
    /// predicted, a class N, a contrast A-B ("why A and not B"), or a hidden unit
    /// hidden:LAYER:CHANNEL[:Y,X] (the channel's mean without a position).
    #[arg(long, default_value = "predicted")]
    pub target: String,
    /// Method parameter NAME=VALUE (repeatable; nested methods use inner.NAME=VALUE).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "out/explain")]
    pub out: PathBuf,
    /// Which tensor of the explanation to draw.
    #[arg(long, default_value = "attribution")]
    pub show: String,
    #[command(flatten)]
    pub render: RenderArgs,
}

/// File-name-safe version of a name.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

pub fn run(a: ExplainArgs, device: &Device) -> anyhow::Result<()> {
    let reg = host::registry()?;
    // Check everything the user typed before the (possibly slow) work.
    let target = Target::parse(&a.target)?;
    let params = Params::parse_pairs(&a.params)?;
    let method = reg.build_method(&a.method, &params)?;
    let model = a.model.load(&reg, device)?;
    let info = model.info().clone();
    let opts = a.render.options(8, info.input_range)?;

    let input = load_input(&a.input, device)?;
    let x = input.tensor.unsqueeze(0)?;
    info.check_input(&x).map_err(|e| anyhow!("input '{}': {e}", a.input))?;

    let top = top_k(model.as_ref(), &x, 3)?;
    let labels = &info.labels;
    let truth = input.label.map(|l| format!(" (true label {})", class_name(labels, l))).unwrap_or_default();
    println!("model {}, input {}{truth}", info.name, input.name);
    println!("prediction: {} with p = {:.4}", class_name(labels, top[0].0), top[0].1);
    println!(
        "top-3: {}",
        top.iter().map(|(c, p)| format!("{} {:.4}", class_name(labels, *c), p)).collect::<Vec<_>>().join(", ")
    );

    let started = std::time::Instant::now();
    let expl = method.attribute(model.as_ref(), &x, &target)?;
    let seconds = started.elapsed().as_secs_f64();
    let shown = expl.tensor(&a.show)?.get(0).with_context(|| format!("tensor '{}' has no batch dimension", a.show))?;
    // A map with another shape than the input's (a layer's attribution): drawn at its
    // own resolution, summed over channels (--reduce), a vector as a square block;
    // each channel also on its own in a mosaic below.
    let own_shape = shown.dims() != input.tensor.dims();
    if own_shape && (opts.overlay || opts.times_input) {
        bail!(
            "tensor '{}' has shape {:?}, not the input's {:?}, so --overlay and --times-input do not apply",
            a.show,
            shown.dims(),
            input.tensor.dims()
        );
    }
    let shown = if shown.rank() == 1 { square(&shown)? } else { shown };
    let hm = render::heatmap(&shown, Some(&input.tensor), &opts)?;
    let fs = if hm.image.width() >= 200 { 2 } else { 1 };
    let what = if hm.absolute { "|map|" } else { "map" };
    let caption = format!("{} / {} / target {}", expl.method, input.name, target_text(&expl.target));
    let picture = render::with_caption(&hm.with_legend(fs), &caption, fs);

    let stem = format!("{}_{}", safe(&input.name), safe(&a.method));
    let png = a.out.join(format!("{stem}.png"));
    let st = a.out.join(format!("{stem}.safetensors"));
    let js = a.out.join(format!("{stem}.json"));
    io::save_png(&png, &picture)?;
    // The packs' own pictures of what this explanation carries (e.g. CLEAR's class
    // colours), beside the ordinary heatmap.
    let req = RenderRequest { example: 0, labels, input: Some(&input.tensor), input_range: info.input_range };
    let mut pictures = vec![];
    if own_shape && shown.rank() == 3 && shown.dim(0)? > 1 {
        let (c, h, w) = shown.dims3()?;
        let tiles = mosaic(&shown)?;
        let mut hm = render::heatmap(&tiles, None, &opts)?;
        // the one-pixel gaps between tiles in grey
        let s = opts.scale;
        let gap = |v: u32, n: usize| (v / s) as usize % (n + 1) == n;
        for (x, y, p) in hm.image.enumerate_pixels_mut() {
            if gap(x, w) || gap(y, h) {
                *p = lumen_core::image::Rgb([190, 190, 190]);
            }
        }
        let path = a.out.join(format!("{stem}_channels.png"));
        io::save_png(&path, &render::with_caption(&hm.with_legend(fs), &caption, fs))?;
        pictures.push((path, format!("each of the {c} channels of the {h}×{w} map, on one scale")));
    }
    for (r, img) in present::render_all(&reg, &expl, &req)? {
        let path = a.out.join(format!("{stem}_{}.png", r.suffix));
        io::save_png(&path, &img)?;
        pictures.push((path, r.summary.to_string()));
    }
    let mut tensors: HashMap<String, Tensor> =
        expl.tensors.iter().map(|(k, t)| Ok((k.clone(), t.contiguous()?))).collect::<anyhow::Result<_>>()?;
    tensors.entry("input".into()).or_insert(x.contiguous()?);
    io::save_safetensors(&st, &tensors)?;
    let mut summary = expl.summary_json();
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("model".into(), info.name.clone().into());
        obj.insert("input".into(), a.input.clone().into());
        obj.insert("label".into(), input.label.into());
        obj.insert(
            "top3".into(),
            top.iter().map(|(c, p)| serde_json::json!({"class": c, "label": labels.get(*c), "probability": p})).collect(),
        );
        obj.insert("seconds".into(), seconds.into());
        obj.insert(
            "render".into(),
            serde_json::json!({"tensor": a.show, "cap": hm.cap, "absolute": hm.absolute, "percentile": opts.percentile,
                "times_input": opts.times_input, "overlay": opts.overlay, "raw_min": hm.raw_min, "raw_max": hm.raw_max}),
        );
    }
    io::write_atomic(&js, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    println!(
        "{} in {seconds:.2} s; {what} capped at {} (the {}th percentile of |map|)",
        expl.method,
        render::fmt_tick(hm.cap),
        opts.percentile
    );
    if own_shape {
        println!(
            "tensor '{}' has shape {:?}, not the input's: drawn at its own resolution, channels reduced by --reduce {}",
            a.show,
            expl.tensor(&a.show)?.dims(),
            a.render.reduce
        );
    }
    println!("wrote {}, {}, {}", png.display(), st.display(), js.display());
    for (path, summary) in &pictures {
        println!("wrote {} ({summary})", path.display());
    }
    Ok(())
}

/// A vector `[N]` as a `[⌈N/w⌉, w]` block, `w = ⌈√N⌉`, zero-padded.
fn square(t: &Tensor) -> anyhow::Result<Tensor> {
    let n = t.dim(0)?;
    let w = (n as f64).sqrt().ceil().max(1.0) as usize;
    let h = n.div_ceil(w);
    let mut v = t.to_dtype(lumen_core::candle::DType::F32)?.to_vec1::<f32>()?;
    v.resize(h * w, 0.0);
    Ok(Tensor::from_vec(v, (h, w), t.device())?)
}

/// `[C, h, w]` as one `[H, W]` picture: the channels row-major in `⌈√C⌉` columns,
/// one zero pixel between tiles.
fn mosaic(t: &Tensor) -> anyhow::Result<Tensor> {
    let (c, h, w) = t.dims3()?;
    let cols = (c as f64).sqrt().ceil().max(1.0) as usize;
    let rows = c.div_ceil(cols);
    let (hh, ww) = (rows * (h + 1) - 1, cols * (w + 1) - 1);
    let v = t.to_dtype(lumen_core::candle::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; hh * ww];
    for k in 0..c {
        let (r0, c0) = ((k / cols) * (h + 1), (k % cols) * (w + 1));
        for y in 0..h {
            let src = &v[(k * h + y) * w..(k * h + y + 1) * w];
            out[(r0 + y) * ww + c0..(r0 + y) * ww + c0 + w].copy_from_slice(src);
        }
    }
    Ok(Tensor::from_vec(out, (hh, ww), t.device())?)
}

/// Short text for a resolved target, for captions.
pub fn target_text(t: &Target) -> String {
    match t {
        Target::Classes(v) if v.len() == 1 => v[0].to_string(),
        Target::Contrast { a, b } if a.len() == 1 && b.len() == 1 => format!("{} vs {}", a[0], b[0]),
        Target::Hidden { layer, channel, .. } => format!("{layer}:{channel}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three 1×2 channels in 2 columns: [c0 gap c1; gap row; c2 gap 0].
    #[test]
    fn mosaic_and_square_layouts() {
        let t = Tensor::new(&[[[1f32, 2.]], [[3., 4.]], [[5., 6.]]], &Device::Cpu).unwrap();
        let m = mosaic(&t).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m, vec![vec![1., 2., 0., 3., 4.], vec![0.; 5], vec![5., 6., 0., 0., 0.]]);
        let v = Tensor::new(&[1f32, 2., 3., 4., 5.], &Device::Cpu).unwrap();
        assert_eq!(square(&v).unwrap().to_vec2::<f32>().unwrap(), vec![vec![1., 2., 3.], vec![4., 5., 0.]]);
    }
}
