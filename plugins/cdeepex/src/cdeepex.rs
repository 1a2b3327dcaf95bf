//! The `cdeepex` and `xgems` methods: invert the input into the generator's latent
//! space, then find the nearest latent where the classifier is undecided between
//! the true class and the probe (CDeepEx additionally forbids every other class
//! from overtaking either), and explain by the difference of the two images.
//!
//! Outputs: `generated` = G(z₀), `counterfactual` = G(z_e), `attribution` =
//! G(z₀) − G(z_e). A negative attribution is ink the probe class would need added
//! (rendered red), a positive one ink it would need removed (rendered blue).

use crate::inversion::{invert, InversionConfig};
use crate::solver::{LatentProblem, SolverConfig};
use lumen_core::candle::{DType, Tensor, D};
use lumen_core::generator::Generator;
use lumen_core::method::prepare;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::registry::{guard, GeneratorEntry, Registry};
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Result, Target};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Configuration of [`CDeepEx`] (and of xGEMs, with `solver.inequalities = false`).
#[derive(Debug, Clone)]
pub struct CDeepExConfig {
    /// Registered generator name.
    pub generator: String,
    pub solver: SolverConfig,
    pub inversion: InversionConfig,
}

impl Default for CDeepExConfig {
    fn default() -> Self {
        CDeepExConfig {
            generator: "mnist-vae".into(),
            solver: SolverConfig::default(),
            inversion: InversionConfig::default(),
        }
    }
}

impl CDeepExConfig {
    /// The xGEMs baseline: only the equality constraint.
    pub fn xgems() -> Self {
        let mut c = Self::default();
        c.solver.inequalities = false;
        c
    }
}

const COMMON: [ParamSpec; 12] = [
    ParamSpec::new("generator", ParamKind::Str, "mnist-vae", "registered generator G"),
    ParamSpec::new("tol", ParamKind::Float, "0.001", "constraint violation accepted as feasible"),
    ParamSpec::new("outer_iters", ParamKind::Int, "20", "augmented-Lagrangian outer iterations").max(1000),
    ParamSpec::new("inner_iters", ParamKind::Int, "25", "L-BFGS iterations per inner minimisation").max(10_000),
    ParamSpec::new("lbfgs_memory", ParamKind::Int, "7", "L-BFGS history length").max(100),
    ParamSpec::new("penalty", ParamKind::Float, "1.0", "initial penalty c"),
    ParamSpec::new("penalty_growth", ParamKind::Float, "5.0", "factor on c when the violation stalls"),
    ParamSpec::new("penalty_max", ParamKind::Float, "100000", "largest penalty"),
    ParamSpec::new("invert_steps", ParamKind::Int, "150", "Adam steps of the inversion (Procedure 2)").max(100_000),
    ParamSpec::new("invert_lr", ParamKind::Float, "0.05", "Adam step size of the inversion"),
    ParamSpec::new("restarts", ParamKind::Int, "2", "random inversion starts besides the encoder's").max(100),
    ParamSpec::new("seed", ParamKind::Int, "0", "seed of the random inversion starts"),
];

const fn with_margin() -> [ParamSpec; 13] {
    let mut out = [ParamSpec::new("margin", ParamKind::Float, "0.1", "other classes stay this far below true and probe (log-likelihood)"); 13];
    let mut i = 0;
    while i < 12 {
        out[i + 1] = COMMON[i];
        i += 1;
    }
    out
}

pub static PARAMS: &[ParamSpec] = &with_margin();
pub static XGEMS_PARAMS: &[ParamSpec] = &COMMON;

enum Source {
    Entry(&'static GeneratorEntry, String),
    Given(Arc<dyn Generator>),
}

/// CDeepEx or xGEMs, depending on `config.solver.inequalities`.
pub struct CDeepEx {
    pub config: CDeepExConfig,
    source: Source,
    loaded: Mutex<Option<Arc<dyn Generator>>>,
}

impl CDeepEx {
    /// With an explicit generator (library use and tests).
    pub fn with_generator(config: CDeepExConfig, gen: Arc<dyn Generator>) -> Self {
        CDeepEx { config, source: Source::Given(gen), loaded: Mutex::new(None) }
    }

    pub fn from_args(a: &Args, reg: &Registry, inequalities: bool) -> Result<Self> {
        let s = SolverConfig {
            inequalities,
            margin: if inequalities { a.f64("margin")? } else { 0.0 },
            tol: a.f64("tol")?,
            outer_iters: a.positive("outer_iters")?,
            inner_iters: a.positive("inner_iters")?,
            lbfgs_memory: a.positive("lbfgs_memory")?,
            penalty: a.f64("penalty")?,
            penalty_growth: a.f64("penalty_growth")?,
            penalty_max: a.f64("penalty_max")?,
        };
        let m = a.method();
        if s.tol <= 0.0 {
            return Err(Error::bad_param(m, "tol", "must be > 0"));
        }
        if s.margin < 0.0 {
            return Err(Error::bad_param(m, "margin", "must be ≥ 0"));
        }
        if s.penalty <= 0.0 || s.penalty_max < s.penalty {
            return Err(Error::bad_param(m, "penalty", "must be > 0 and ≤ penalty_max"));
        }
        if s.penalty_growth < 1.0 {
            return Err(Error::bad_param(m, "penalty_growth", "must be ≥ 1"));
        }
        let inv = InversionConfig {
            steps: a.usize("invert_steps")?,
            lr: a.f64("invert_lr")?,
            restarts: a.usize("restarts")?,
            seed: a.u64("seed")?,
            use_encoder: true,
        };
        if inv.lr <= 0.0 {
            return Err(Error::bad_param(m, "invert_lr", "must be > 0"));
        }
        let generator = a.string("generator")?;
        let entry = reg.generators().map(|(e, _)| e).find(|e| e.name == generator).ok_or_else(|| Error::Unknown {
            kind: "generator",
            name: generator.clone(),
            known: reg.generators().map(|(e, _)| e.name.to_string()).collect(),
        })?;
        let pack = reg.generators().find(|(e, _)| e.name == generator).map(|(_, o)| o.pack.clone()).unwrap_or_default();
        Ok(CDeepEx {
            config: CDeepExConfig { generator, solver: s, inversion: inv },
            source: Source::Entry(entry, pack),
            loaded: Mutex::new(None),
        })
    }

    fn generator(&self, model: &dyn Classifier) -> Result<Arc<dyn Generator>> {
        match &self.source {
            Source::Given(g) => Ok(g.clone()),
            Source::Entry(e, pack) => {
                let mut slot = self.loaded.lock().map_err(|_| Error::msg("generator cache poisoned"))?;
                if let Some(g) = slot.as_ref() {
                    return Ok(g.clone());
                }
                // A registered generator's files are its pack's: outside the run's file policy.
                let g = lumen_core::paths::trusted(|| guard(pack, || (e.load)(model.device())))?;
                *slot = Some(g.clone());
                Ok(g)
            }
        }
    }

    fn method_name(&self) -> &'static str {
        if self.config.solver.inequalities {
            "cdeepex"
        } else {
            "xgems"
        }
    }
}

/// The true class and the probe per example: `Contrast` gives both; otherwise the
/// probe is the most likely class other than the true one.
pub fn true_and_probe(model: &dyn Classifier, xs: &Tensor, target: &Target) -> Result<(Vec<usize>, Vec<usize>)> {
    if let Target::Contrast { a, b } = target {
        return Ok((a.clone(), b.clone()));
    }
    let trues = target
        .classes()
        .ok_or_else(|| Error::BadTarget("CDeepEx explains a class or a contrast pair, not a hidden unit".into()))?
        .to_vec();
    let logits = model.forward(xs)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let probes = trues
        .iter()
        .zip(&logits)
        .map(|(&t, row)| {
            row.iter()
                .enumerate()
                .filter(|(i, _)| *i != t)
                .fold((usize::MAX, f32::NEG_INFINITY), |a, (i, v)| if *v > a.1 { (i, *v) } else { a })
                .0
        })
        .collect();
    Ok((trues, probes))
}

impl Attributor for CDeepEx {
    fn name(&self) -> &str {
        self.method_name()
    }
    fn props(&self) -> MethodProps {
        MethodProps { stochastic: true, ..MethodProps::NONE }
    }
    fn params(&self) -> BTreeMap<String, String> {
        let s = &self.config.solver;
        let i = &self.config.inversion;
        let mut m = BTreeMap::from([
            ("generator".to_string(), self.config.generator.clone()),
            ("tol".into(), s.tol.to_string()),
            ("outer_iters".into(), s.outer_iters.to_string()),
            ("inner_iters".into(), s.inner_iters.to_string()),
            ("lbfgs_memory".into(), s.lbfgs_memory.to_string()),
            ("penalty".into(), s.penalty.to_string()),
            ("penalty_growth".into(), s.penalty_growth.to_string()),
            ("penalty_max".into(), s.penalty_max.to_string()),
            ("invert_steps".into(), i.steps.to_string()),
            ("invert_lr".into(), i.lr.to_string()),
            ("restarts".into(), i.restarts.to_string()),
            ("seed".into(), i.seed.to_string()),
        ]);
        if s.inequalities {
            m.insert("margin".into(), s.margin.to_string());
        }
        m
    }

    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let gen = self.generator(model)?;
        let name = self.method_name();
        if gen.output_shape() != model.info().input_shape.as_slice() {
            return Err(Error::unsupported(
                name,
                format!(
                    "generator '{}' makes {:?} but model '{}' takes {:?}",
                    gen.name(),
                    gen.output_shape(),
                    model.info().name,
                    model.info().input_shape
                ),
            ));
        }
        let target = prepare(model, inputs, target)?;
        let xs = inputs.to_dtype(DType::F32)?;
        let (trues, probes) = true_and_probe(model, &xs, &target)?;
        let inv = invert(gen.as_ref(), &xs, &self.config.inversion)?;
        let delta = (&inv.generated - &xs)?;
        let mut counterfactuals = vec![];
        let mut per_example = vec![];
        let (mut n_success, mut n_third) = (0usize, 0usize);
        for i in 0..xs.dim(0)? {
            let z0 = inv.z0.get(i)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let problem = LatentProblem {
                gen: gen.as_ref(),
                model,
                delta: delta.narrow(0, i, 1)?,
                z0,
                true_class: trues[i],
                probe: probes[i],
                margin: self.config.solver.margin,
                inequalities: self.config.solver.inequalities,
            };
            let sol = problem.solve(&self.config.solver)?;
            n_success += sol.success as usize;
            n_third += sol.third_class_wins as usize;
            let ze = Tensor::from_vec(sol.z.iter().map(|v| *v as f32).collect::<Vec<_>>(), (1, sol.z.len()), xs.device())?;
            counterfactuals.push(gen.generate(&ze)?.detach());
            per_example.push(sol.to_run(trues[i], probes[i], inv.mse[i] as f64));
        }
        let counterfactual = Tensor::cat(&counterfactuals, 0)?;
        let attribution = (&inv.generated - &counterfactual)?;
        let n = xs.dim(0)?;
        let mut e = Explanation::new(name, attribution, Target::Contrast { a: trues, b: probes })
            .with_tensor("generated", inv.generated.clone())
            .with_tensor("counterfactual", counterfactual)
            .with_params(self.params())
            .with_solver_runs(per_example)
            .with_diag("success_rate", n_success as f64 / n as f64)
            .with_diag("third_class_wins", n_third as f64 / n as f64)
            .with_diag("inversion_mse_mean", inv.mse.iter().map(|v| *v as f64).sum::<f64>() / n as f64);
        e.seed = Some(self.config.inversion.seed);
        Ok(e)
    }
}

/// Highest class per row of `llh` `[B, K]` (helper for reports).
pub fn argmax_rows(t: &Tensor) -> Result<Vec<usize>> {
    Ok(t.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().map(|v| v as usize).collect())
}

lumen_core::submit_method!(
    "cdeepex",
    "CDeepEx: nearest latent point where true and probe tie and no other class wins (augmented Lagrangian, L-BFGS)",
    PARAMS,
    MethodProps { stochastic: true, ..MethodProps::NONE },
    |a, reg| Ok(Box::new(CDeepEx::from_args(a, reg, true)?)),
);

lumen_core::submit_method!(
    "xgems",
    "xGEMs: nearest latent point where true and probe tie (equality constraint only; the CDeepEx baseline)",
    XGEMS_PARAMS,
    MethodProps { stochastic: true, ..MethodProps::NONE },
    |a, reg| Ok(Box::new(CDeepEx::from_args(a, reg, false)?)),
);
