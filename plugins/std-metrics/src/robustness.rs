//! Infidelity and max-sensitivity (Yeh et al. 2019), as Captum defines them.
//!
//! Infidelity: `E_I[(Iᵀφ − (f(x) − f(x − I)))²]` over perturbations `I`, with `f`
//! the target's score (logit by default). `I ~ N(0, σ²)` per value (`noise=gaussian`)
//! or square removal (`noise=square`: `I = x` on one random square, 0 elsewhere, so
//! `x − I` zeroes it). For maps that multiply by the input, Captum divides the
//! perturbation by `x − baseline` (baseline 0; 0 where `x = 0`) before the dot
//! product (`multiply_by_inputs`; `auto` asks the method's props). `normalize`
//! rescales `Iᵀφ` by the least-squares `β = E[Iᵀφ Δf] / E[(Iᵀφ)²]` first, so only
//! the shape of the map matters. Lower is better.
//!
//! Max-sensitivity: `max_δ ‖φ(x + δ) − φ(x)‖ / ‖φ(x)‖` (Frobenius norms) over
//! `n_perturb` draws `δ ~ U[−r, r]ⁿ`, re-explaining with the method; `φ(x)` is the
//! map under evaluation. Lower is better.

use crate::util::{host, scores, Layout, Score};
use lumen_core::candle::Tensor;
use lumen_core::metric::{MetricInput, MetricNeeds, MetricOutput};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Error, Metric, Result, Target};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;

/// The perturbation distribution of [`Infidelity`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// `I ~ N(0, sigma²)` per value.
    Gaussian { sigma: f64 },
    /// Remove (zero) one random `side`×`side` square (`side` segment for sequences).
    Square { side: usize },
}

/// Configuration of [`Infidelity`].
#[derive(Debug, Clone)]
pub struct InfidelityConfig {
    pub noise: Noise,
    pub n_perturb: usize,
    /// `None`: ask the method (`props().multiplies_input`), false without one.
    pub multiply_by_inputs: Option<bool>,
    pub normalize: bool,
    pub score: Score,
    pub batch_size: usize,
}

impl Default for InfidelityConfig {
    fn default() -> Self {
        InfidelityConfig {
            noise: Noise::Gaussian { sigma: 0.1 },
            n_perturb: 50,
            multiply_by_inputs: None,
            normalize: false,
            score: Score::Logit,
            batch_size: 256,
        }
    }
}

pub static INFIDELITY_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("noise", ParamKind::Choice(&["gaussian", "square"]), "gaussian", "perturbation I: Gaussian noise, or removal of a random square"),
    ParamSpec::new("sigma", ParamKind::Float, "0.1", "standard deviation of the Gaussian perturbation"),
    ParamSpec::new("square", ParamKind::Int, "7", "side of the removed square (segment length for sequences)").max(1024),
    ParamSpec::new("n_perturb", ParamKind::Int, "50", "perturbations per example").max(10_000),
    ParamSpec::new("multiply_by_inputs", ParamKind::Choice(&["auto", "true", "false"]), "auto", "divide I by the input before the dot product (for maps multiplied by the input); auto: ask the method"),
    ParamSpec::new("normalize", ParamKind::Bool, "false", "rescale Iᵀφ by the optimal β first (Captum's normalize)"),
    ParamSpec::new("score", ParamKind::Choice(Score::CHOICES), "logit", "f: the target's logit or softmax probability"),
    ParamSpec::new("batch_size", ParamKind::Int, "256", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

#[derive(Debug, Clone, Default)]
pub struct Infidelity {
    pub config: InfidelityConfig,
}

impl Infidelity {
    pub fn new(config: InfidelityConfig) -> Self {
        Infidelity { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        let noise = match a.string("noise")?.as_str() {
            "square" => Noise::Square { side: a.positive("square")? },
            _ => {
                let sigma = a.f64("sigma")?;
                if sigma <= 0.0 {
                    return Err(Error::bad_param(a.method(), "sigma", "must be > 0"));
                }
                Noise::Gaussian { sigma }
            }
        };
        let mbi = match a.string("multiply_by_inputs")?.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        Ok(Infidelity::new(InfidelityConfig {
            noise,
            n_perturb: a.positive("n_perturb")?,
            multiply_by_inputs: mbi,
            normalize: a.bool("normalize")?,
            score: Score::parse(&a.string("score")?)?,
            batch_size: a.positive("batch_size")?,
        }))
    }
}

impl Metric for Infidelity {
    fn name(&self) -> &str {
        "infidelity"
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn params(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut m = BTreeMap::from([
            ("n_perturb".to_string(), c.n_perturb.to_string()),
            ("normalize".to_string(), c.normalize.to_string()),
            ("score".to_string(), c.score.as_str().to_string()),
            ("batch_size".to_string(), c.batch_size.to_string()),
            (
                "multiply_by_inputs".to_string(),
                c.multiply_by_inputs.map(|b| b.to_string()).unwrap_or_else(|| "auto".into()),
            ),
        ]);
        match c.noise {
            Noise::Gaussian { sigma } => {
                m.insert("noise".into(), "gaussian".into());
                m.insert("sigma".into(), sigma.to_string());
            }
            Noise::Square { side } => {
                m.insert("noise".into(), "square".into());
                m.insert("square".into(), side.to_string());
            }
        }
        m
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check("infidelity")?;
        let c = &self.config;
        let l = Layout::of(input.inputs.dims())?;
        let (n, k) = (l.n(), c.n_perturb);
        let shape = &input.inputs.dims()[1..];
        let xs = host(input.inputs)?;
        let attr = host(input.attributions)?;
        let mbi = c.multiply_by_inputs.unwrap_or_else(|| input.method.is_some_and(|m| m.props().multiplies_input));
        let f0 = scores(input.model, &xs, shape, input.targets, c.score, c.batch_size)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        let sigma = match c.noise {
            Noise::Gaussian { sigma } => sigma,
            Noise::Square { .. } => 1.0,
        };
        let normal = Normal::new(0.0, sigma).map_err(|e| Error::bad_param("infidelity", "sigma", e.to_string()))?;
        let (h, w) = crate::util::hw(&l.spatial);
        let mut per_example = Vec::with_capacity(l.b);
        let mut betas = Vec::with_capacity(l.b);
        for i in 0..l.b {
            let x = &xs[i * n..(i + 1) * n];
            let phi = &attr[i * n..(i + 1) * n];
            let mut perturbed = Vec::with_capacity(k * n);
            let mut dots = Vec::with_capacity(k);
            for _ in 0..k {
                let pert: Vec<f32> = match c.noise {
                    Noise::Gaussian { .. } => (0..n).map(|_| normal.sample(&mut rng) as f32).collect(),
                    Noise::Square { side } => {
                        let (sh, sw) = (side.min(h), side.min(w));
                        let y0 = rng.gen_range(0..=h - sh);
                        let x0 = rng.gen_range(0..=w - sw);
                        let p = l.p();
                        let mut v = vec![0f32; n];
                        for ch in 0..l.c {
                            for y in y0..y0 + sh {
                                for xx in x0..x0 + sw {
                                    let j = ch * p + y * w + xx;
                                    v[j] = x[j];
                                }
                            }
                        }
                        v
                    }
                };
                let dot: f64 = (0..n)
                    .map(|j| {
                        let ij = if mbi {
                            if x[j] == 0.0 { 0.0 } else { pert[j] as f64 / x[j] as f64 }
                        } else {
                            pert[j] as f64
                        };
                        ij * phi[j] as f64
                    })
                    .sum();
                dots.push(dot);
                perturbed.extend((0..n).map(|j| x[j] - pert[j]));
            }
            let f = scores(input.model, &perturbed, shape, &vec![input.targets[i]; k], c.score, c.batch_size)?;
            let diffs: Vec<f64> = f.iter().map(|v| f0[i] - v).collect();
            let beta = if c.normalize {
                let num: f64 = dots.iter().zip(&diffs).map(|(a, b)| a * b).sum();
                let den: f64 = dots.iter().map(|a| a * a).sum();
                if den == 0.0 { 0.0 } else { num / den }
            } else {
                1.0
            };
            betas.push(beta);
            per_example.push(dots.iter().zip(&diffs).map(|(a, d)| (beta * a - d).powi(2)).sum::<f64>() / k as f64);
        }
        let mut out = MetricOutput::new("infidelity", per_example);
        out.extra.insert("beta".into(), betas);
        out.notes.push(format!("multiply_by_inputs = {mbi}"));
        Ok(out)
    }
}

/// Configuration of [`MaxSensitivity`].
#[derive(Debug, Clone)]
pub struct MaxSensitivityConfig {
    /// Half-width `r` of the L∞ ball the perturbations are drawn from.
    pub radius: f64,
    pub n_perturb: usize,
    /// Perturbed inputs explained per call of the method.
    pub batch_size: usize,
}

impl Default for MaxSensitivityConfig {
    fn default() -> Self {
        MaxSensitivityConfig { radius: 0.02, n_perturb: 10, batch_size: 64 }
    }
}

pub static MAX_SENSITIVITY_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("radius", ParamKind::Float, "0.02", "half-width r of the L∞ ball: δ ~ U[−r, r] per value"),
    ParamSpec::new("n_perturb", ParamKind::Int, "10", "perturbations per example (the max is over these)").max(10_000),
    ParamSpec::new("batch_size", ParamKind::Int, "64", "perturbed inputs explained per call of the method").max(lumen_core::params::MAX_BATCH_SIZE),
];

#[derive(Debug, Clone, Default)]
pub struct MaxSensitivity {
    pub config: MaxSensitivityConfig,
}

impl MaxSensitivity {
    pub fn new(config: MaxSensitivityConfig) -> Self {
        MaxSensitivity { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        let radius = a.f64("radius")?;
        if radius < 0.0 {
            return Err(Error::bad_param(a.method(), "radius", "must be ≥ 0"));
        }
        Ok(MaxSensitivity::new(MaxSensitivityConfig {
            radius,
            n_perturb: a.positive("n_perturb")?,
            batch_size: a.positive("batch_size")?,
        }))
    }
}

impl Metric for MaxSensitivity {
    fn name(&self) -> &str {
        "max_sensitivity"
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("radius".to_string(), self.config.radius.to_string()),
            ("n_perturb".to_string(), self.config.n_perturb.to_string()),
            ("batch_size".to_string(), self.config.batch_size.to_string()),
        ])
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check("max_sensitivity")?;
        let method = input.require_method("max_sensitivity")?;
        let c = &self.config;
        let l = Layout::of(input.inputs.dims())?;
        let (n, k) = (l.n(), c.n_perturb);
        let xs = host(input.inputs)?;
        let attr = host(input.attributions)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        // All perturbed copies, example-major, explained `batch_size` at a time.
        let mut pert = Vec::with_capacity(l.b * k * n);
        let mut targets = Vec::with_capacity(l.b * k);
        for i in 0..l.b {
            for _ in 0..k {
                pert.extend(xs[i * n..(i + 1) * n].iter().map(|v| {
                    let d = if c.radius > 0.0 { rng.gen_range(-c.radius..=c.radius) } else { 0.0 };
                    v + d as f32
                }));
                targets.push(input.targets[i]);
            }
        }
        let dev = input.model.device();
        let mut maps = Vec::with_capacity(pert.len());
        for r in lumen_core::method::chunks(targets.len(), c.batch_size) {
            let mut shape = vec![r.len()];
            shape.extend_from_slice(&input.inputs.dims()[1..]);
            let xb = Tensor::from_vec(pert[r.start * n..r.end * n].to_vec(), shape, dev)?;
            let e = method.attribute(input.model, &xb, &Target::Classes(targets[r].to_vec()))?;
            maps.extend(host(e.attribution())?);
        }
        let mut per_example = Vec::with_capacity(l.b);
        let mut notes = vec![];
        for i in 0..l.b {
            let phi = &attr[i * n..(i + 1) * n];
            let norm: f64 = phi.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            let worst = (0..k)
                .map(|s| {
                    let m = &maps[(i * k + s) * n..(i * k + s + 1) * n];
                    m.iter().zip(phi).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt()
                })
                .fold(0.0, f64::max);
            if norm == 0.0 {
                notes.push("an all-zero map has no relative sensitivity (NaN)".to_string());
                per_example.push(f64::NAN);
            } else {
                per_example.push(worst / norm);
            }
        }
        notes.dedup();
        let mut out = MetricOutput::new("max_sensitivity", per_example);
        out.notes = notes;
        Ok(out)
    }
}

lumen_core::submit_metric!(
    "infidelity",
    "Yeh et al. (Captum): E[(Iᵀφ − (f(x) − f(x − I)))²] over Gaussian or square-removal perturbations (lower is better)",
    INFIDELITY_PARAMS,
    false,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Infidelity::from_args(a)?)),
);

lumen_core::submit_metric!(
    "max_sensitivity",
    "Yeh et al. (Captum): max over δ in an L∞ ball of ‖φ(x+δ) − φ(x)‖ / ‖φ(x)‖, re-explaining (lower is better)",
    MAX_SENSITIVITY_PARAMS,
    false,
    MetricNeeds { method: true, masks: false, network: false },
    |a| Ok(Box::new(MaxSensitivity::from_args(a)?)),
);
