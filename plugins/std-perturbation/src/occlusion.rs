//! Occlusion (Zeiler & Fergus, 2014): slide a window over the input, set it to a
//! baseline, and record how much the target drops. Each pixel gets the average
//! drop over the windows that cover it.

use crate::incremental::{assemble, crops, Incremental, Pos};
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
        let dev = model.device().clone();
        let base = match &cfg.baseline_tensor {
            Some(t) => {
                let t = if t.rank() == 4 && t.dim(0)? == 1 { t.squeeze(0)? } else { t.clone() };
                if t.dims() != [c, h, w] {
                    return Err(Error::shape(format!("a baseline of [{c}, {h}, {w}]"), format!("{:?}", t.dims())));
                }
                t.to_dtype(DType::F32)?.to_device(&dev)?.unsqueeze(0)?
            }
            None => Tensor::full(cfg.baseline, (1, c, h, w), &dev)?,
        };
        let xs_dev = inputs.to_dtype(DType::F32)?.to_device(&dev)?;
        let f0 = objective(model, &inputs.to_device(&dev)?, &target, ForwardOptions::default())?.0;
        let parts: Vec<_> = chunks(wins.len(), cfg.batch_size).collect();
        let positions: Vec<Vec<Pos>> = parts.iter().map(|r| wins[r.clone()].iter().map(|v| (v.y, v.x)).collect()).collect();
        // The baseline's patches per chunk: the same for every image.
        let patches = positions.iter().map(|pos| crops(&base, pos, cfg.window)).collect::<Result<Vec<_>>>()?;
        // Class targets on a network model: only what each window changes is recomputed.
        let inc = match &target {
            Target::Classes(_) if b > 0 => Incremental::new(model, &xs_dev.narrow(0, 0, 1)?)?,
            _ => None,
        };
        let plans = match &inc {
            Some(inc) => Some(
                positions.iter().map(|pos| inc.plan(&xs_dev.narrow(0, 0, 1)?, cfg.window, pos)).collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let pb = indicatif::ProgressBar::new((b * wins.len()) as u64);
        // Every window's objective, on the device until the end.
        let mut outs = vec![f0.to_dtype(DType::F64)?];
        for bi in 0..b {
            let x0 = xs_dev.narrow(0, bi, 1)?;
            for (pi, part) in positions.iter().enumerate() {
                let f = match (&inc, &plans, &target) {
                    (Some(inc), Some(plans), Target::Classes(v)) => {
                        let clean = inc.clean(&plans[pi], &x0)?;
                        inc.forward(&plans[pi], &clean, &patches[pi])?.narrow(1, v[bi], 1)?.squeeze(1)?
                    }
                    _ => {
                        let t = target.select(bi..bi + 1).repeat_each(part.len());
                        objective(model, &assemble(&x0, &patches[pi], part)?, &t, ForwardOptions::default())?.0
                    }
                };
                outs.push(f.to_dtype(DType::F64)?);
                pb.inc(part.len() as u64);
            }
        }
        pb.finish_and_clear();
        // The one copy to the host.
        let all = Tensor::cat(&outs, 0)?.to_device(&Device::Cpu)?.to_vec1::<f64>()?;
        if inc.is_some() && all.iter().any(|v| !v.is_finite()) {
            return Err(Error::msg(format!("model '{}': the logits are NaN or infinite", model.info().name)));
        }
        let (f0, fs) = all.split_at(b);
        let mut attribution = Vec::with_capacity(b * c * h * w);
        for bi in 0..b {
            let scores: Vec<f64> = fs[bi * wins.len()..(bi + 1) * wins.len()].iter().map(|f| f0[bi] - f).collect();
            attribution.extend(broadcast_channels(&average(h, w, &wins, &scores), c));
        }
        let attribution = Tensor::from_vec(attribution, (b, c, h, w), &Device::Cpu)?.to_device(inputs.device())?;
        Ok(Explanation::new("occlusion", attribution, target)
            .with_params(self.params())
            .with_perturbation(lumen_core::explanation::Perturbation { windows: wins.len(), samples: None, p_target: None }))
    }
}

lumen_core::submit_method!(Occlusion);
