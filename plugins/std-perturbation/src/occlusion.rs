//! Occlusion (Zeiler & Fergus, 2014): slide a window over the input, set it to a
//! baseline, and record how much the target drops. Each pixel gets the average
//! drop over the windows that cover it.

use crate::windows::{average, broadcast_channels, grid};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::target::objective;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, Result, Target};

/// Configuration of [`Occlusion`].
#[derive(Debug, Clone, Config)]
pub struct OcclusionConfig {
    /// window side, or h,w
    #[param(with = pair)]
    pub window: (usize, usize),
    /// stride, or sy,sx
    #[param(with = pair)]
    pub strides: (usize, usize),
    /// value of occluded pixels
    pub baseline: f32,
    /// baseline image (.png/.safetensors) instead of a value
    #[param(with = recorded_tensor)]
    pub baseline_tensor: Option<Tensor>,
    /// forward passes per batch
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        OcclusionConfig { window: (4, 4), strides: (1, 1), baseline: 0.0, baseline_tensor: None, batch_size: 256 }
    }
}

/// `k` or `h,w`: one or two positive integers.
mod pair {
    use lumen_core::config::{leak, Builder};
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::{Error, Result};
    use std::collections::BTreeMap;

    pub fn specs(name: &'static str, doc: &'static str, d: &(usize, usize)) -> Vec<ParamSpec> {
        let text = if d.0 == d.1 { d.0.to_string() } else { format!("{},{}", d.0, d.1) };
        vec![ParamSpec::new(name, ParamKind::FloatList, leak(Some(text)), doc)]
    }
    pub fn read(a: &Args, name: &'static str, _: &dyn Builder) -> Result<(usize, usize)> {
        let v = a.list(name)?;
        let ok = |x: f64| x >= 1.0 && x.fract() == 0.0;
        match v.as_slice() {
            [k] if ok(*k) => Ok((*k as usize, *k as usize)),
            [h, w] if ok(*h) && ok(*w) => Ok((*h as usize, *w as usize)),
            _ => Err(Error::bad_param(a.method(), name, "expected one or two positive integers")),
        }
    }
    pub fn write(v: &(usize, usize), name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), format!("{},{}", v.0, v.1));
    }
}

/// A tensor parameter recorded by its shape (empty when not given).
mod recorded_tensor {
    use lumen_core::candle::Tensor;
    use lumen_core::config::{Builder, ParamType};
    use lumen_core::params::{Args, ParamSpec};
    use lumen_core::Result;
    use std::collections::BTreeMap;

    pub fn specs(name: &'static str, doc: &'static str, d: &Option<Tensor>) -> Vec<ParamSpec> {
        <Option<Tensor> as ParamType>::specs(name, doc, d)
    }
    pub fn read(a: &Args, name: &'static str, ctx: &dyn Builder) -> Result<Option<Tensor>> {
        <Option<Tensor> as ParamType>::read(a, name, ctx)
    }
    pub fn write(v: &Option<Tensor>, name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), v.as_ref().map(|t| format!("<tensor {:?}>", t.dims())).unwrap_or_default());
    }
}

#[derive(Debug, Clone, Default)]
pub struct Occlusion {
    pub config: OcclusionConfig,
}

impl Occlusion {
    pub fn new(config: OcclusionConfig) -> Self {
        Occlusion { config }
    }
}

impl Method for Occlusion {
    const NAME: &'static str = "occlusion";
    const SUMMARY: &'static str =
        "occlusion: the drop of the target when a sliding window is set to a baseline, averaged per pixel";
    type Config = OcclusionConfig;
    fn new(config: OcclusionConfig) -> Result<Self> {
        Ok(Occlusion { config })
    }
    fn config(&self) -> &OcclusionConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let (b, c, h, w) = inputs.dims4().map_err(|_| {
            Error::unsupported("occlusion", format!("inputs must be images [B, C, H, W], got {:?}", inputs.dims()))
        })?;
        let cfg = &self.config;
        let wins = grid(h, w, cfg.window, cfg.strides)
            .map_err(|e| Error::bad_param("occlusion", "window", e.to_string()))?;
        let img_len = c * h * w;
        let base: Vec<f32> = match &cfg.baseline_tensor {
            Some(t) => {
                let t = if t.rank() == 4 && t.dim(0)? == 1 { t.squeeze(0)? } else { t.clone() };
                if t.dims() != [c, h, w] {
                    return Err(Error::shape(format!("a baseline of [{c}, {h}, {w}]"), format!("{:?}", t.dims())));
                }
                t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?
            }
            None => vec![cfg.baseline; img_len],
        };
        let dev = model.device().clone();
        let host = inputs.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let eval = |xs: &Tensor, t: &Target| -> Result<Vec<f64>> {
            Ok(objective(model, xs, t, ForwardOptions::default())?.0.to_dtype(DType::F64)?.to_vec1()?)
        };
        let f0 = eval(&inputs.to_device(&dev)?, &target)?;
        let pb = indicatif::ProgressBar::new((b * wins.len()) as u64);
        let mut attribution = Vec::with_capacity(b * img_len);
        let mut batch = Vec::new();
        for bi in 0..b {
            let img = &host[bi * img_len..(bi + 1) * img_len];
            let mut scores = Vec::with_capacity(wins.len());
            for r in chunks(wins.len(), cfg.batch_size) {
                let part = &wins[r];
                batch.clear();
                for win in part {
                    let start = batch.len();
                    batch.extend_from_slice(img);
                    let dst = &mut batch[start..];
                    for ch in 0..c {
                        for y in win.y..win.y + win.h {
                            let row = (ch * h + y) * w;
                            dst[row + win.x..row + win.x + win.w].copy_from_slice(&base[row + win.x..row + win.x + win.w]);
                        }
                    }
                }
                let xs = Tensor::from_slice(&batch, (part.len(), c, h, w), &dev)?;
                let t = target.select(bi..bi + 1).repeat_each(part.len());
                scores.extend(eval(&xs, &t)?.into_iter().map(|f| f0[bi] - f));
                pb.inc(part.len() as u64);
            }
            attribution.extend(broadcast_channels(&average(h, w, &wins, &scores), c));
        }
        pb.finish_and_clear();
        let attribution = Tensor::from_vec(attribution, (b, c, h, w), &Device::Cpu)?.to_device(inputs.device())?;
        Ok(Explanation::new("occlusion", attribution, target)
            .with_params(self.params())
            .with_perturbation(lumen_core::explanation::Perturbation { windows: wins.len(), samples: None, p_target: None }))
    }
}

lumen_core::submit_method!(Occlusion);
