//! The `cdeepex` and `xgems` methods: invert the input into the generator's latent
//! space, then find the nearest latent where the classifier is undecided between
//! the true class and the probe (CDeepEx additionally forbids every other class
//! from overtaking either), and explain by the difference of the two images.
//!
//! Outputs: `generated` = G(z₀), `counterfactual` = G(z_e), `attribution` =
//! G(z₀) − G(z_e). A negative attribution is ink the probe class would need added
//! (rendered red), a positive one ink it would need removed (rendered blue).

use crate::inversion::{invert, InversionConfig};
use crate::solver::{LatentBatch, SolverConfig};
use lumen_core::candle::{DType, Tensor, D};
use lumen_core::generator::{Generator, GeneratorRef};
use lumen_core::method::prepare;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The parameters CDeepEx and xGEMs share.
#[derive(Debug, Clone, Config)]
pub struct LatentConfig {
    /// registered generator G
    #[param(with = generator)]
    pub generator: GeneratorRef,
    #[param(flatten)]
    pub solver: SolverConfig,
    #[param(flatten)]
    pub inversion: InversionConfig,
}

impl Default for LatentConfig {
    fn default() -> Self {
        LatentConfig {
            generator: generator::named("mnist-vae"),
            solver: SolverConfig::default(),
            inversion: InversionConfig::default(),
        }
    }
}

impl LatentConfig {
    /// The defaults with an explicit generator (library use and tests).
    pub fn with_generator(gen: Arc<dyn Generator>) -> Self {
        LatentConfig { generator: GeneratorRef::given(gen), ..Default::default() }
    }
}

/// `generator=NAME`: named through the registry while parsing, loaded on first use.
mod generator {
    use lumen_core::config::{leak, Builder};
    use lumen_core::generator::GeneratorRef;
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::{Error, Result};
    use std::collections::BTreeMap;

    /// A default that names a generator without a registry to resolve it.
    pub fn named(name: &str) -> GeneratorRef {
        let n = name.to_string();
        GeneratorRef::new(name, move |_| Err(Error::msg(format!("generator '{n}' was named but not resolved through a registry"))))
    }
    pub fn specs(name: &'static str, doc: &'static str, d: &GeneratorRef) -> Vec<ParamSpec> {
        vec![ParamSpec::new(name, ParamKind::Str, leak(Some(d.name().to_string())), doc)]
    }
    pub fn read(a: &Args, name: &'static str, ctx: &dyn Builder) -> Result<GeneratorRef> {
        ctx.generator(&a.string(name)?)
    }
    pub fn write(g: &GeneratorRef, name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), g.name().to_string());
    }
}

/// Configuration of [`CDeepEx`].
#[derive(Debug, Clone, Config)]
pub struct CDeepExConfig {
    /// other classes stay this far below true and probe (log-likelihood)
    pub margin: f64,
    #[param(flatten)]
    pub latent: LatentConfig,
}

impl Default for CDeepExConfig {
    fn default() -> Self {
        CDeepExConfig { margin: 0.1, latent: LatentConfig::default() }
    }
}

impl CDeepExConfig {
    pub fn with_generator(gen: Arc<dyn Generator>) -> Self {
        CDeepExConfig { latent: LatentConfig::with_generator(gen), ..Default::default() }
    }
}

/// Configuration of [`XGems`]: CDeepEx's without the margin.
#[derive(Debug, Clone, Default, Config)]
pub struct XGemsConfig {
    #[param(flatten)]
    pub latent: LatentConfig,
}

impl XGemsConfig {
    pub fn with_generator(gen: Arc<dyn Generator>) -> Self {
        XGemsConfig { latent: LatentConfig::with_generator(gen) }
    }
}

/// What tells CDeepEx and xGEMs apart: the name, and whether the inequality
/// constraints (with their margin) apply.
pub trait Variant: Config + Clone + std::fmt::Debug {
    const NAME: &'static str;
    const SUMMARY: &'static str;
    fn latent(&self) -> &LatentConfig;
    /// The inequality constraints' margin; `None`: only the equality (xGEMs).
    fn margin(&self) -> Option<f64>;
}

impl Variant for CDeepExConfig {
    const NAME: &'static str = "cdeepex";
    const SUMMARY: &'static str =
        "CDeepEx: nearest latent point where true and probe tie and no other class wins (augmented Lagrangian, L-BFGS)";
    fn latent(&self) -> &LatentConfig {
        &self.latent
    }
    fn margin(&self) -> Option<f64> {
        Some(self.margin)
    }
}

impl Variant for XGemsConfig {
    const NAME: &'static str = "xgems";
    const SUMMARY: &'static str =
        "xGEMs: nearest latent point where true and probe tie (equality constraint only; the CDeepEx baseline)";
    fn latent(&self) -> &LatentConfig {
        &self.latent
    }
    fn margin(&self) -> Option<f64> {
        None
    }
}

/// A latent-space contrastive method: [`CDeepEx`] or [`XGems`].
pub struct Latent<C> {
    pub config: C,
}

/// CDeepEx: the equality and the inequality constraints.
pub type CDeepEx = Latent<CDeepExConfig>;
/// xGEMs: only the equality constraint (the CDeepEx baseline).
pub type XGems = Latent<XGemsConfig>;

impl<C: Variant> Method for Latent<C> {
    const NAME: &'static str = C::NAME;
    const SUMMARY: &'static str = C::SUMMARY;
    type Config = C;
    // Both draw random inversion starts.
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: C) -> Result<Self> {
        check(C::NAME, config.latent(), config.margin().unwrap_or(0.0))?;
        Ok(Latent { config })
    }
    fn config(&self) -> &C {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        explain(C::NAME, self.config.latent(), self.config.margin(), self.params(), model, inputs, target)
    }
}

/// Method `name` ("cdeepex" or "xgems") with `latent` and, for CDeepEx, the default margin.
pub fn with_latent(name: &str, latent: LatentConfig) -> Result<Box<dyn Attributor>> {
    match name {
        "cdeepex" => Ok(Box::new(CDeepEx::new(CDeepExConfig { latent, ..Default::default() })?)),
        "xgems" => Ok(Box::new(XGems::new(XGemsConfig { latent })?)),
        other => Err(Error::Unknown { kind: "method", name: other.into(), known: vec!["cdeepex".into(), "xgems".into()] }),
    }
}

/// The checks of both methods (xGEMs has margin 0).
fn check(m: &str, c: &LatentConfig, margin: f64) -> Result<()> {
    let s = &c.solver;
    if s.tol <= 0.0 {
        return Err(Error::bad_param(m, "tol", "must be > 0"));
    }
    if margin < 0.0 {
        return Err(Error::bad_param(m, "margin", "must be ≥ 0"));
    }
    if s.penalty <= 0.0 || s.penalty_max < s.penalty {
        return Err(Error::bad_param(m, "penalty", "must be > 0 and ≤ penalty_max"));
    }
    if s.penalty_growth < 1.0 {
        return Err(Error::bad_param(m, "penalty_growth", "must be ≥ 1"));
    }
    if c.inversion.lr <= 0.0 {
        return Err(Error::bad_param(m, "invert_lr", "must be > 0"));
    }
    Ok(())
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

/// Inverts, solves every example's contrast problem in one batch, and explains by
/// `G(z₀) − G(z_e)`; `margin` is `None` for xGEMs (no inequality constraints).
fn explain(
    name: &str,
    cfg: &LatentConfig,
    margin: Option<f64>,
    params: BTreeMap<String, String>,
    model: &dyn Classifier,
    inputs: &Tensor,
    target: &Target,
) -> Result<Explanation> {
    let gen = cfg.generator.get(model.device())?;
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
    let inv = invert(gen.as_ref(), &xs, &cfg.inversion)?;
    let delta = (&inv.generated - &xs)?;
    let z0 = inv.z0.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let batch = LatentBatch {
        gen: gen.as_ref(),
        model,
        delta,
        z0,
        true_class: trues.clone(),
        probe: probes.clone(),
        margin: margin.unwrap_or(0.0),
        inequalities: margin.is_some(),
    };
    let solutions = batch.solve(&cfg.solver)?;
    let n = xs.dim(0)?;
    let d = gen.latent_dim();
    let ze: Vec<f32> = solutions.iter().flat_map(|s| s.z.iter().map(|v| *v as f32)).collect();
    let counterfactual = gen.generate(&Tensor::from_vec(ze, (n, d), xs.device())?)?.detach();
    let attribution = (&inv.generated - &counterfactual)?;
    let n_success = solutions.iter().filter(|s| s.success).count();
    let n_third = solutions.iter().filter(|s| s.third_class_wins).count();
    let runs = solutions
        .into_iter()
        .zip(&inv.mse)
        .map(|(s, mse)| lumen_core::explanation::SolverRun { inversion_mse: *mse as f64, ..s.run })
        .collect();
    let mut e = Explanation::new(name, attribution, Target::Contrast { a: trues, b: probes })
        .with_tensor("generated", inv.generated.clone())
        .with_tensor("counterfactual", counterfactual)
        .with_params(params)
        .with_solver_runs(runs)
        .with_diag("success_rate", n_success as f64 / n as f64)
        .with_diag("third_class_wins", n_third as f64 / n as f64)
        .with_diag("inversion_mse_mean", inv.mse.iter().map(|v| *v as f64).sum::<f64>() / n as f64);
    e.seed = Some(cfg.inversion.seed);
    Ok(e)
}

/// Highest class per row of `llh` `[B, K]` (helper for reports).
pub fn argmax_rows(t: &Tensor) -> Result<Vec<usize>> {
    Ok(t.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().map(|v| v as usize).collect())
}

lumen_core::submit_method!(CDeepEx);
lumen_core::submit_method!(XGems);

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::config::{Builder, NoMethods};
    use lumen_core::params::Params;

    /// Names any generator (nothing is loaded in these tests).
    struct Names;
    impl Builder for Names {
        fn build_method(&self, name: &str, p: &Params) -> Result<Box<dyn Attributor>> {
            NoMethods.build_method(name, p)
        }
        fn generator(&self, name: &str) -> Result<GeneratorRef> {
            Ok(generator::named(name))
        }
    }

    fn names(s: &[lumen_core::params::ParamSpec]) -> Vec<&'static str> {
        s.iter().map(|p| p.name).collect()
    }

    /// The schema, the recorded parameters and the checks are those of the
    /// hand-written registration they replace (margin only for CDeepEx).
    #[test]
    fn schema_params_and_checks() {
        let common = [
            "generator", "tol", "outer_iters", "inner_iters", "lbfgs_memory", "penalty", "penalty_growth", "penalty_max",
            "invert_steps", "invert_lr", "restarts", "seed",
        ];
        let mut with_margin = vec!["margin"];
        with_margin.extend(common);
        assert_eq!(names(CDeepExConfig::schema()), with_margin);
        assert_eq!(names(XGemsConfig::schema()), common);
        let s = CDeepExConfig::schema();
        let find = |n: &str| s.iter().find(|p| p.name == n).unwrap();
        assert_eq!((find("generator").default, find("tol").default, find("penalty_max").default), ("mnist-vae", "0.001", "100000"));
        assert_eq!((find("outer_iters").max, find("invert_steps").max, find("restarts").max), (Some(1000), Some(100_000), Some(100)));
        assert_eq!(find("margin").doc, "other classes stay this far below true and probe (log-likelihood)");

        let c = CDeepEx::from_params(&Params::new().with("margin", 0.2).with("seed", 3i64), &Names).unwrap();
        let want: BTreeMap<String, String> = [
            ("generator", "mnist-vae"), ("tol", "0.001"), ("outer_iters", "20"), ("inner_iters", "25"), ("lbfgs_memory", "7"),
            ("penalty", "1"), ("penalty_growth", "5"), ("penalty_max", "100000"), ("invert_steps", "150"), ("invert_lr", "0.05"),
            ("restarts", "2"), ("seed", "3"), ("margin", "0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(c.params(), want);
        let x = XGems::from_params(&Params::new(), &Names).unwrap();
        let mut want_x = want.clone();
        want_x.remove("margin");
        want_x.insert("seed".into(), "0".into());
        assert_eq!(x.params(), want_x);
        assert!(XGems::from_params(&Params::new().with("margin", 0.1), &Names).is_err(), "xgems has no margin");

        let err = |p: Params| CDeepEx::from_params(&p, &Names).err().map(|e| e.to_string()).unwrap_or_default();
        for (k, v, msg) in [
            ("tol", "0", "must be > 0"),
            ("margin", "-1", "must be ≥ 0"),
            ("penalty", "1000000", "must be > 0 and ≤ penalty_max"),
            ("penalty_growth", "0.5", "must be ≥ 1"),
            ("invert_lr", "0", "must be > 0"),
            ("outer_iters", "0", "must be ≥ 1"),
        ] {
            let e = err(Params::new().with(k, v));
            assert!(e.contains(k) && e.contains(msg) && e.contains("cdeepex"), "{k}={v}: {e}");
        }
        let e = XGems::from_params(&Params::new().with("tol", "-1"), &Names).err().unwrap().to_string();
        assert!(e.contains("xgems") && e.contains("tol"), "{e}");
        // Without a registry the generator cannot be named.
        assert!(CDeepEx::from_params(&Params::new(), &NoMethods).is_err());
        assert_eq!(<CDeepEx as Method>::props_of(&CDeepExConfig::default()), MethodProps { stochastic: true, ..MethodProps::NONE });
    }
}
