//! Prediction difference analysis (Zintgraf et al., 2017): the relevance of a
//! window is how much the prediction changes when the window's values are
//! marginalised out by sampling them from a patch model, given the rest.
//!
//! Every (window, sample) pair is one forward pass; they run as large batches.
//! Class targets are scored on the softmax output with the weight of evidence
//! (Laplace-corrected), or on the logits with the activation difference; hidden
//! targets (`Target::Hidden`) use the activation difference of the tapped unit or
//! feature-map mean. Several classes come from the same forward passes.

use crate::windows::{average, broadcast_channels, grid, paste};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::sampler::{HostImage, Sampler};
use lumen_core::target::objective;
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Registry, Result, Target};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What a class target is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdaOutput {
    /// Weight of evidence on the softmax probabilities (§2).
    Softmax,
    /// Activation difference on the pre-softmax logits (§3.3).
    Logits,
}

/// Which classes get a map (all from the same forward passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSet {
    /// Only the explained target.
    Target,
    /// `n` maps: the target, then the model's highest other classes on the input.
    Top(usize),
    /// Every class.
    All,
}

impl ClassSet {
    pub fn parse(s: &str) -> Option<ClassSet> {
        match s {
            "target" => Some(ClassSet::Target),
            "all" => Some(ClassSet::All),
            _ => s.strip_prefix("top").and_then(|n| n.parse().ok()).filter(|n| *n > 0).map(ClassSet::Top),
        }
    }
}

/// Configuration of [`Pda`].
#[derive(Debug, Clone, PartialEq)]
pub struct PdaConfig {
    /// Window side k; 0 picks 4 for inputs up to 64 pixels and 10 above.
    pub window: usize,
    pub stride: usize,
    /// Samples S per window.
    pub samples: usize,
    pub output: PdaOutput,
    pub classes: ClassSet,
    /// N in the Laplace correction; 0 takes it from the model card.
    pub num_train: usize,
    pub seed: u64,
    /// Forward passes per batch.
    pub batch_size: usize,
}

impl Default for PdaConfig {
    fn default() -> Self {
        PdaConfig {
            window: 0,
            stride: 1,
            samples: 10,
            output: PdaOutput::Softmax,
            classes: ClassSet::Target,
            num_train: 0,
            seed: 0,
            batch_size: 256,
        }
    }
}

pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("window", ParamKind::Int, "0", "window side k (0: 4 up to 64 px, else 10)").max(1024),
    ParamSpec::new("stride", ParamKind::Int, "1", "window stride").max(1024),
    ParamSpec::new("samples", ParamKind::Int, "10", "samples S per window").max(10_000),
    ParamSpec::new("sampler", ParamKind::Method, "conditional_gaussian", "registered sampler; its params as sampler.NAME"),
    ParamSpec::new("sampler_file", ParamKind::Str, "", "fitted sampler file: loaded if it exists, else fitted and saved"),
    ParamSpec::new("train", ParamKind::Str, "mnist", "training data to fit the sampler: mnist or a [N,C,H,W] .safetensors"),
    ParamSpec::new("output", ParamKind::Choice(&["softmax", "logits"]), "softmax", "score classes by weight of evidence (softmax) or activation difference (logits)"),
    ParamSpec::new("classes", ParamKind::Str, "target", "class maps to compute: target, all, or topN"),
    ParamSpec::new("num_train", ParamKind::Int, "0", "N of the Laplace correction (0: the model card's num_train)").max(1_000_000_000_000),
    ParamSpec::new("seed", ParamKind::Int, "0", "sampling seed"),
    ParamSpec::new("batch_size", ParamKind::Int, "256", "forward passes per batch").max(lumen_core::params::MAX_BATCH_SIZE),
];

impl PdaConfig {
    pub fn from_args(a: &Args) -> Result<Self> {
        let classes = a.string("classes")?;
        Ok(PdaConfig {
            window: a.usize("window")?,
            stride: a.positive("stride")?,
            samples: a.positive("samples")?,
            output: if a.string("output")? == "logits" { PdaOutput::Logits } else { PdaOutput::Softmax },
            classes: ClassSet::parse(&classes)
                .ok_or_else(|| Error::bad_param(a.method(), "classes", format!("'{classes}' is not target, all or topN")))?,
            num_train: a.usize("num_train")?,
            seed: a.u64("seed")?,
            batch_size: a.positive("batch_size")?,
        })
    }

    /// The window side for an `h × w` input.
    pub fn window_for(&self, h: usize, w: usize) -> usize {
        match self.window {
            0 if h.max(w) <= 64 => 4,
            0 => 10,
            k => k,
        }
    }
}

/// Training data for fitting a sampler: the bundled MNIST train split, or a
/// `[N, C, H, W]` tensor file.
pub fn training_data(spec: &str) -> Result<Tensor> {
    if spec == "mnist" {
        let m = lumen_core::data::Mnist::load()?;
        return Ok(m.all(lumen_core::data::Split::Train, &Device::Cpu)?.0);
    }
    let t = lumen_core::data::load_tensor_file(Path::new(spec), &Device::Cpu)?;
    if t.rank() != 4 {
        return Err(Error::shape("training data [N, C, H, W]", format!("{:?}", t.dims())));
    }
    Ok(t)
}

/// Prediction difference analysis with a given sampler.
#[derive(Clone)]
pub struct Pda {
    pub config: PdaConfig,
    pub sampler: Arc<dyn Sampler>,
}

/// `log2 odds` of a Laplace-corrected probability.
pub fn log2_odds_laplace(p: f64, n: f64, k: f64) -> f64 {
    let q = (p * n + 1.0) / (n + k);
    (q / (1.0 - q)).log2()
}

impl Pda {
    pub fn new(config: PdaConfig, sampler: Arc<dyn Sampler>) -> Self {
        Pda { config, sampler }
    }

    /// Builds the sampler through the registry (loading or fitting it) and the method.
    pub fn from_args(a: &Args, reg: &Registry) -> Result<Self> {
        let config = PdaConfig::from_args(a)?;
        let name = a.string("sampler")?;
        let sp = a.sub("sampler");
        let file = a.opt_string("sampler_file")?;
        // The file may be written, so it must be where the run may write (checked
        // before anything is fitted).
        let file = file.map(|f| lumen_core::paths::check_write(Path::new(&f))).transpose()?;
        let sampler: Box<dyn Sampler> = match &file {
            Some(f) if f.exists() => reg.load_sampler(&name, &sp, f)?,
            _ => {
                let s = reg.build_sampler(&name, &sp, &training_data(&a.string("train")?)?)?;
                if let Some(f) = &file {
                    s.save(f)?;
                }
                s
            }
        };
        Ok(Pda::new(config, Arc::from(sampler)))
    }

    fn laplace_n(&self, model: &dyn Classifier) -> Result<usize> {
        if self.config.num_train > 0 {
            return Ok(self.config.num_train);
        }
        match model.info().card.as_ref().map(|c| c.num_train) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(Error::bad_param(
                "pda",
                "num_train",
                format!("model '{}' has no num_train in its card; pass num_train", model.info().name),
            )),
        }
    }
}

/// The quantities a forward batch yields: one row of `m` values per input.
enum Quantity {
    /// Class outputs (softmax probabilities or logits), all classes.
    Classes { softmax: bool },
    /// A hidden target's objective.
    Hidden(Target),
}

impl Quantity {
    fn eval(&self, model: &dyn Classifier, xs: &Tensor) -> Result<Vec<Vec<f64>>> {
        let t = match self {
            Quantity::Classes { softmax } => {
                let z = model.forward(xs)?;
                if *softmax {
                    lumen_core::candle_nn::ops::softmax_last_dim(&z)?
                } else {
                    z
                }
            }
            Quantity::Hidden(t) => objective(model, xs, t, ForwardOptions::default())?.0.unsqueeze(1)?,
        };
        Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    }
}

impl Attributor for Pda {
    fn name(&self) -> &str {
        "pda"
    }

    fn props(&self) -> MethodProps {
        MethodProps { stochastic: true, ..MethodProps::NONE }
    }

    fn params(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        BTreeMap::from([
            ("window".to_string(), c.window.to_string()),
            ("stride".to_string(), c.stride.to_string()),
            ("samples".to_string(), c.samples.to_string()),
            ("sampler".to_string(), self.sampler.name().to_string()),
            ("output".to_string(), if c.output == PdaOutput::Softmax { "softmax" } else { "logits" }.to_string()),
            (
                "classes".to_string(),
                match c.classes {
                    ClassSet::Target => "target".to_string(),
                    ClassSet::All => "all".to_string(),
                    ClassSet::Top(n) => format!("top{n}"),
                },
            ),
            ("num_train".to_string(), c.num_train.to_string()),
            ("seed".to_string(), c.seed.to_string()),
            ("batch_size".to_string(), c.batch_size.to_string()),
        ])
    }

    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let start = std::time::Instant::now();
        let target = prepare(model, inputs, target)?;
        let (b, c, h, w) = inputs.dims4().map_err(|_| {
            Error::unsupported("pda", format!("inputs must be images [B, C, H, W], got {:?}", inputs.dims()))
        })?;
        let cfg = &self.config;
        let k = cfg.window_for(h, w);
        if k > h || k > w {
            return Err(Error::bad_param("pda", "window", format!("{k} does not fit a {h}×{w} input")));
        }
        let wins = grid(h, w, (k, k), (cfg.stride, cfg.stride))?;
        let dev = model.device().clone();
        let host = inputs.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let img_len = c * h * w;

        let quantity = match &target {
            Target::Classes(_) => Quantity::Classes { softmax: cfg.output == PdaOutput::Softmax },
            Target::Hidden { .. } => Quantity::Hidden(target.clone()),
            _ => return Err(Error::BadTarget("pda explains classes or hidden units, not contrasts".into())),
        };
        let laplace = match (&quantity, cfg.output) {
            (Quantity::Classes { .. }, PdaOutput::Softmax) => {
                Some((self.laplace_n(model)? as f64, model.info().num_classes() as f64))
            }
            _ => None,
        };
        // The quantities on the original inputs, one forward pass for the batch.
        let q0_all = quantity.eval(model, &inputs.to_device(&dev)?)?;

        let s = cfg.samples;
        let wins_per_batch = (cfg.batch_size / s).max(1);
        let pb = indicatif::ProgressBar::new((b * wins.len()) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("pda {bar:40} {pos}/{len} windows  {elapsed} (ETA {eta})")
                .map_err(|e| Error::msg(e.to_string()))?,
        );

        let mut attribution = Vec::with_capacity(b * img_len);
        let mut class_maps: Vec<f32> = vec![];
        let mut class_ids: Vec<u32> = vec![];
        let mut m_classes = 0;
        let mut p_target = vec![];
        // Where the time goes: sampling and pasting on the host, or forward passes.
        let (mut t_sample, mut t_forward) = (0f64, 0f64);
        for bi in 0..b {
            let img = &host[bi * img_len..(bi + 1) * img_len];
            let hi = HostImage::new(img, c, h, w)?;
            let q0 = &q0_all[bi];
            // Which output columns get a map; the first is the explained target.
            let cols: Vec<usize> = match &target {
                Target::Classes(v) => {
                    let t = v[bi];
                    let mut cols = vec![t];
                    let mut rest: Vec<usize> = match cfg.classes {
                        ClassSet::Target => vec![],
                        ClassSet::All => (0..q0.len()).collect(),
                        ClassSet::Top(n) => {
                            let mut order: Vec<usize> = (0..q0.len()).collect();
                            order.sort_by(|&i, &j| q0[j].total_cmp(&q0[i]));
                            order.truncate(n);
                            order
                        }
                    };
                    rest.retain(|&j| j != t);
                    cols.extend(rest);
                    if let ClassSet::Top(n) = cfg.classes {
                        cols.truncate(n); // the same count for every image
                    }
                    p_target.push(q0[t]);
                    cols
                }
                _ => vec![0],
            };
            let score0: Vec<f64> = cols
                .iter()
                .map(|&j| match laplace {
                    Some((n, kk)) => log2_odds_laplace(q0[j], n, kk),
                    None => q0[j],
                })
                .collect();
            let mut scores: Vec<Vec<f64>> = vec![Vec::with_capacity(wins.len()); cols.len()];
            let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(bi as u64));
            let mut patches = Vec::new();
            let mut batch = Vec::new();
            for r in chunks(wins.len(), wins_per_batch) {
                let part = &wins[r];
                let t0 = std::time::Instant::now();
                patches.clear();
                self.sampler.sample_windows(&hi, part, s, &mut rng, &mut patches)?;
                let per = c * k * k * s;
                if patches.len() != part.len() * per {
                    return Err(Error::msg(format!(
                        "sampler '{}' returned {} values for {} windows",
                        self.sampler.name(),
                        patches.len(),
                        part.len()
                    )));
                }
                batch.clear();
                for (i, win) in part.iter().enumerate() {
                    paste(img, c, h, w, win, &patches[i * per..(i + 1) * per], s, &mut batch);
                }
                let t1 = std::time::Instant::now();
                t_sample += (t1 - t0).as_secs_f64();
                let xs = Tensor::from_slice(&batch, (part.len() * s, c, h, w), &dev)?;
                let q = quantity.eval(model, &xs)?;
                t_forward += t1.elapsed().as_secs_f64();
                for wi in 0..part.len() {
                    let rows = &q[wi * s..(wi + 1) * s];
                    for (ci, &j) in cols.iter().enumerate() {
                        let mean = rows.iter().map(|row| row[j]).sum::<f64>() / s as f64;
                        let after = match laplace {
                            Some((n, kk)) => log2_odds_laplace(mean, n, kk),
                            None => mean,
                        };
                        scores[ci].push(score0[ci] - after);
                    }
                }
                pb.inc(part.len() as u64);
            }
            let maps: Vec<Vec<f64>> = scores.iter().map(|sc| average(h, w, &wins, sc)).collect();
            attribution.extend(broadcast_channels(&maps[0], c));
            if matches!(target, Target::Classes(_)) {
                m_classes = cols.len();
                for m in &maps {
                    class_maps.extend(m.iter().map(|v| *v as f32));
                }
                class_ids.extend(cols.iter().map(|&j| j as u32));
            }
        }
        pb.finish_and_clear();
        let attribution = Tensor::from_vec(attribution, (b, c, h, w), &Device::Cpu)?.to_device(inputs.device())?;
        let secs = start.elapsed().as_secs_f64();
        let mut params = self.params();
        params.insert("window".into(), k.to_string());
        let mut e = Explanation::new("pda", attribution, target.clone())
            .with_params(params)
            .with_perturbation(lumen_core::explanation::Perturbation {
                windows: wins.len(),
                samples: Some(s),
                p_target: (!p_target.is_empty()).then_some(p_target),
            })
            .with_timings(lumen_core::explanation::Timings {
                seconds: secs,
                phases: vec![("sampling".into(), t_sample), ("forward".into(), t_forward)],
                forward_passes: Some(b * wins.len() * s + b),
            })
            .with_diag("score", if laplace.is_some() { "weight_of_evidence" } else { "activation_difference" });
        if matches!(target, Target::Classes(_)) {
            if class_maps.len() != b * m_classes * h * w {
                return Err(Error::msg("internal: class maps of unequal length"));
            }
            e = e
                .with_tensor("class_maps", Tensor::from_vec(class_maps, (b, m_classes, h, w), &Device::Cpu)?)
                .with_tensor("class_ids", Tensor::from_vec(class_ids, (b, m_classes), &Device::Cpu)?);
        }
        e.seed = Some(cfg.seed);
        Ok(e)
    }
}

lumen_core::submit_method!(
    "pda",
    "prediction difference analysis: weight of evidence when each window is resampled from a patch model",
    PARAMS,
    MethodProps { stochastic: true, ..MethodProps::NONE },
    |a, reg| Ok(Box::new(Pda::from_args(a, reg)?)),
);
