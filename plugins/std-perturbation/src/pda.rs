//! Prediction difference analysis (Zintgraf et al., 2017): the relevance of a
//! window is how much the prediction changes when the window's values are
//! marginalised out by sampling them from a patch model, given the rest.
//!
//! Every (window, sample) pair is one forward pass; they run as large batches.
//! Class targets are scored on the softmax output with the weight of evidence
//! (Laplace-corrected), or on the logits with the activation difference; hidden
//! targets (`Target::Hidden`) use the activation difference of the tapped unit or
//! feature-map mean. Several classes come from the same forward passes.

use crate::incremental::{assemble, Incremental, Pos};
use crate::windows::{average, broadcast_channels, grid};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::config::{Builder, Choice, ParamType};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::params::{Args, ParamKind};
use lumen_core::sampler::{HostImage, Sampler};
use lumen_core::target::objective;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;
use std::sync::Arc;

/// What a class target is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
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

/// `target`, `all` or `topN` (N ≥ 1).
impl ParamType for ClassSet {
    fn kind() -> ParamKind {
        ParamKind::Str
    }
    fn text(&self) -> Option<String> {
        Some(match self {
            ClassSet::Target => "target".to_string(),
            ClassSet::All => "all".to_string(),
            ClassSet::Top(n) => format!("top{n}"),
        })
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        let w = args.string(name)?;
        ClassSet::parse(&w)
            .ok_or_else(|| Error::bad_param(args.method(), name, format!("'{w}' is not one of target, all, topN (N ≥ 1)")))
    }
}

/// The patch sampler: its registry name and, once parsed, the fitted sampler.
#[derive(Clone)]
pub struct SamplerRef {
    name: String,
    built: Option<Arc<dyn Sampler>>,
}

impl SamplerRef {
    /// Names a sampler without fitting it (the config's default).
    pub fn named(name: &str) -> Self {
        SamplerRef { name: name.to_string(), built: None }
    }
    /// A sampler fitted in Rust.
    pub fn built(sampler: Arc<dyn Sampler>) -> Self {
        SamplerRef { name: sampler.name().to_string(), built: Some(sampler) }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The fitted sampler; an error if only its name is known.
    pub fn get(&self) -> Result<&Arc<dyn Sampler>> {
        self.built.as_ref().ok_or_else(|| Error::msg(format!("sampler '{}' was named but not fitted", self.name)))
    }
}

impl std::fmt::Debug for SamplerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SamplerRef({}{})", self.name, if self.built.is_some() { "" } else { ", unfitted" })
    }
}

impl PartialEq for SamplerRef {
    /// The same name and the same fitted sampler (or neither fitted).
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && match (&self.built, &o.built) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// `sampler=NAME sampler.KEY=VALUE`, fitted on `train` or loaded from (and saved to)
/// `sampler_file`. Only the name is recorded, as before typed configs.
mod sampler {
    use super::{training_data, SamplerRef};
    use lumen_core::config::{leak, Builder};
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::sampler::Sampler;
    use lumen_core::Result;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    pub fn specs(name: &'static str, doc: &'static str, d: &SamplerRef) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(name, ParamKind::Method, leak(Some(d.name().to_string())), doc),
            ParamSpec::new("sampler_file", ParamKind::Str, "", "fitted sampler file: loaded if it exists, else fitted and saved"),
            ParamSpec::new("train", ParamKind::Str, "mnist", "training data to fit the sampler: mnist or a [N,C,H,W] .safetensors"),
        ]
    }

    pub fn read(a: &Args, name: &'static str, ctx: &dyn Builder) -> Result<SamplerRef> {
        let sampler = a.string(name)?;
        let sp = a.sub(name);
        // The file may be written, so it must be where the run may write (checked
        // before anything is fitted).
        let file = a.opt_string("sampler_file")?.map(|f| lumen_core::paths::check_write(Path::new(&f))).transpose()?;
        let built: Box<dyn Sampler> = match &file {
            Some(f) if f.exists() => ctx.load_sampler(&sampler, &sp, f)?,
            _ => {
                let s = ctx.build_sampler(&sampler, &sp, &training_data(&a.string("train")?)?)?;
                if let Some(f) = &file {
                    s.save(f)?;
                }
                s
            }
        };
        Ok(SamplerRef { name: built.name().to_string(), built: Some(Arc::from(built)) })
    }

    pub fn write(v: &SamplerRef, name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), v.name().to_string());
    }
}

/// Configuration of [`Pda`].
#[derive(Debug, Clone, PartialEq, Config)]
pub struct PdaConfig {
    /// window side k (0: 4 up to 64 px, else 10)
    #[param(max = 1024)]
    pub window: usize,
    /// window stride
    #[param(positive, max = 1024)]
    pub stride: usize,
    /// samples S per window
    #[param(positive, max = 10_000)]
    pub samples: usize,
    /// registered sampler; its params as sampler.NAME
    #[param(with = sampler)]
    pub sampler: SamplerRef,
    /// score classes by weight of evidence (softmax) or activation difference (logits)
    pub output: PdaOutput,
    /// class maps to compute: target, all, or topN
    pub classes: ClassSet,
    /// N of the Laplace correction (0: the model card's num_train)
    #[param(max = 1_000_000_000_000i64)]
    pub num_train: usize,
    /// sampling seed
    pub seed: u64,
    /// forward passes per batch
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for PdaConfig {
    fn default() -> Self {
        PdaConfig {
            window: 0,
            stride: 1,
            samples: 10,
            sampler: SamplerRef::named("conditional_gaussian"),
            output: PdaOutput::Softmax,
            classes: ClassSet::Target,
            num_train: 0,
            seed: 0,
            batch_size: 256,
        }
    }
}

impl PdaConfig {
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
#[derive(Debug, Clone)]
pub struct Pda {
    pub config: PdaConfig,
}

/// `log2 odds` of a Laplace-corrected probability.
pub fn log2_odds_laplace(p: f64, n: f64, k: f64) -> f64 {
    let q = (p * n + 1.0) / (n + k);
    (q / (1.0 - q)).log2()
}

impl Pda {
    /// Library use: `config` with `sampler` (which replaces `config.sampler`).
    pub fn new(config: PdaConfig, sampler: Arc<dyn Sampler>) -> Self {
        Pda { config: PdaConfig { sampler: SamplerRef::built(sampler), ..config } }
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
    /// From class logits `[n, K]`.
    fn of_logits(&self, z: Tensor) -> Result<Tensor> {
        Ok(match self {
            Quantity::Classes { softmax: true } => lumen_core::candle_nn::ops::softmax_last_dim(&z)?,
            _ => z,
        })
    }

    /// `[n, m]` on the model's device.
    fn eval(&self, model: &dyn Classifier, xs: &Tensor) -> Result<Tensor> {
        match self {
            Quantity::Classes { .. } => self.of_logits(model.forward(xs)?),
            Quantity::Hidden(t) => Ok(objective(model, xs, t, ForwardOptions::default())?.0.unsqueeze(1)?),
        }
    }
}

impl Method for Pda {
    const NAME: &'static str = "pda";
    const SUMMARY: &'static str =
        "prediction difference analysis: weight of evidence when each window is resampled from a patch model";
    type Config = PdaConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };

    fn new(config: PdaConfig) -> Result<Self> {
        config.sampler.get()?;
        Ok(Pda { config })
    }
    fn config(&self) -> &PdaConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let start = std::time::Instant::now();
        let target = prepare(model, inputs, target)?;
        let (b, c, h, w) = inputs.dims4().map_err(|_| {
            Error::unsupported("pda", format!("inputs must be images [B, C, H, W], got {:?}", inputs.dims()))
        })?;
        let cfg = &self.config;
        let sampler = cfg.sampler.get()?;
        let k = cfg.window_for(h, w);
        if k > h || k > w {
            return Err(Error::bad_param("pda", "window", format!("{k} does not fit a {h}×{w} input")));
        }
        let wins = grid(h, w, (k, k), (cfg.stride, cfg.stride))?;
        let dev = model.device().clone();
        // The samplers work on host images (their conditionals are host linear algebra).
        let host = inputs.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let xs_dev = inputs.to_dtype(DType::F32)?.to_device(&dev)?;
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
        let q0_all = quantity.eval(model, &inputs.to_device(&dev)?)?.to_dtype(DType::F64)?;
        let m = q0_all.dim(1)?;

        let s = cfg.samples;
        let wins_per_batch = (cfg.batch_size / s).max(1);
        let parts: Vec<_> = chunks(wins.len(), wins_per_batch).collect();
        // Class outputs of a network model: only what each window changes is recomputed.
        let inc = match &quantity {
            Quantity::Classes { .. } if b > 0 => Incremental::new(model, &xs_dev.narrow(0, 0, 1)?)?,
            _ => None,
        };
        let positions: Vec<Vec<Pos>> = parts
            .iter()
            .map(|r| wins[r.clone()].iter().flat_map(|v| std::iter::repeat((v.y, v.x)).take(s)).collect())
            .collect();
        let plans = match &inc {
            Some(inc) => Some(
                positions.iter().map(|pos| inc.plan(&xs_dev.narrow(0, 0, 1)?, (k, k), pos)).collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let pb = indicatif::ProgressBar::new((b * wins.len()) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("pda {bar:40} {pos}/{len} windows  {elapsed} (ETA {eta})")
                .map_err(|e| Error::msg(e.to_string()))?,
        );

        // Per image and window, the mean quantity over the samples, `[windows, m]`; it
        // stays on the device until the end.
        let mut means: Vec<Tensor> = Vec::with_capacity(b * parts.len());
        // Where the time goes: sampling on the host, or forward passes.
        let (mut t_sample, mut t_forward) = (0f64, 0f64);
        let mut patches = Vec::new();
        for bi in 0..b {
            let img = &host[bi * img_len..(bi + 1) * img_len];
            let hi = HostImage::new(img, c, h, w)?;
            let x0 = xs_dev.narrow(0, bi, 1)?;
            let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(bi as u64));
            for (pi, r) in parts.iter().enumerate() {
                let part = &wins[r.clone()];
                let t0 = std::time::Instant::now();
                patches.clear();
                sampler.sample_windows(&hi, part, s, &mut rng, &mut patches)?;
                if patches.len() != part.len() * c * k * k * s {
                    return Err(Error::msg(format!(
                        "sampler '{}' returned {} values for {} windows",
                        sampler.name(),
                        patches.len(),
                        part.len()
                    )));
                }
                let p = Tensor::from_slice(&patches, (part.len() * s, c, k, k), &dev)?;
                let t1 = std::time::Instant::now();
                t_sample += (t1 - t0).as_secs_f64();
                let q = match (&inc, &plans) {
                    (Some(inc), Some(plans)) => {
                        let clean = inc.clean(&plans[pi], &x0)?;
                        quantity.of_logits(inc.forward(&plans[pi], &clean, &p)?)?
                    }
                    _ => quantity.eval(model, &assemble(&x0, &p, &positions[pi])?)?,
                };
                let mean = (q.to_dtype(DType::F64)?.reshape((part.len(), s, m))?.sum(1)? / s as f64)?;
                means.push(mean);
                t_forward += t1.elapsed().as_secs_f64();
                pb.inc(part.len() as u64);
            }
        }
        pb.finish_and_clear();
        // The one copy to the host: the clean quantities, then every window's mean.
        let mut all = vec![q0_all.flatten_all()?];
        all.extend(means.iter().map(|t| t.flatten_all()).collect::<std::result::Result<Vec<_>, _>>()?);
        let all = Tensor::cat(&all, 0)?.to_device(&Device::Cpu)?.to_vec1::<f64>()?;
        if inc.is_some() && all.iter().any(|v| !v.is_finite()) {
            return Err(Error::msg(format!("model '{}': the outputs are NaN or infinite", model.info().name)));
        }
        let (q0_host, mean_host) = all.split_at(b * m);

        let mut attribution = Vec::with_capacity(b * img_len);
        let mut class_maps: Vec<f32> = vec![];
        let mut class_ids: Vec<u32> = vec![];
        let mut m_classes = 0;
        let mut p_target = vec![];
        for bi in 0..b {
            let q0 = &q0_host[bi * m..(bi + 1) * m];
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
            let score = |p: f64| match laplace {
                Some((n, kk)) => log2_odds_laplace(p, n, kk),
                None => p,
            };
            let rows = &mean_host[bi * wins.len() * m..(bi + 1) * wins.len() * m];
            let maps: Vec<Vec<f64>> = cols
                .iter()
                .map(|&j| {
                    let s0 = score(q0[j]);
                    let sc: Vec<f64> = (0..wins.len()).map(|wi| s0 - score(rows[wi * m + j])).collect();
                    average(h, w, &wins, &sc)
                })
                .collect();
            attribution.extend(broadcast_channels(&maps[0], c));
            if matches!(target, Target::Classes(_)) {
                m_classes = cols.len();
                for m in &maps {
                    class_maps.extend(m.iter().map(|v| *v as f32));
                }
                class_ids.extend(cols.iter().map(|&j| j as u32));
            }
        }
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

lumen_core::submit_method!(Pda);
