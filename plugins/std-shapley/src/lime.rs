//! LIME (Ribeiro et al. 2016): a weighted ridge regression of the target on binary
//! coalition vectors drawn around the input (each feature kept with probability ½,
//! the input itself first), weighted by an exponential kernel
//! `π(z) = exp(−d(1, z)² / width²)` on the distance in the interpretable space:
//! cosine distance (LIME's image default), or L2 over √M so both lie in [0, 1].
//! The attribution is the surrogate's coefficient; its weighted R² is reported.

use crate::ablation::finish;
use crate::game::{Features, Game};
use crate::surrogate::weighted_ridge;
use lumen_core::baseline::example_rng;
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Choice, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::Rng;

/// The distance the kernel is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum Distance {
    /// 1 − cos(1, z) = 1 − √(|z|/M).
    Cosine,
    /// ‖1 − z‖ / √M = √((M − |z|)/M).
    L2,
}

impl Distance {
    pub fn of(self, kept: usize, m: usize) -> f64 {
        let frac = kept as f64 / m as f64;
        match self {
            Distance::Cosine => 1.0 - frac.sqrt(),
            Distance::L2 => (1.0 - frac).sqrt(),
        }
    }
}

/// Configuration of [`Lime`].
#[derive(Debug, Clone, Config)]
pub struct LimeConfig {
    #[param(flatten)]
    pub features: Features,
    /// perturbed samples per example (the input itself included)
    #[param(positive, max = 10_000_000)]
    pub samples: usize,
    /// kernel width (on distances in [0, 1])
    pub kernel_width: f64,
    /// distance of the kernel: cosine or l2
    pub distance: Distance,
    /// ridge penalty α of the surrogate
    pub alpha: f64,
    /// seed of the samples
    pub seed: u64,
}

impl Default for LimeConfig {
    fn default() -> Self {
        LimeConfig {
            features: Features::default(),
            samples: 1000,
            kernel_width: 0.25,
            distance: Distance::Cosine,
            alpha: 1.0,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Lime {
    pub config: LimeConfig,
}

impl Method for Lime {
    const NAME: &'static str = "lime";
    const SUMMARY: &'static str = "LIME: a kernel-weighted ridge surrogate over random feature coalitions, with its R²";
    type Config = LimeConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: LimeConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        if !(config.kernel_width.is_finite() && config.kernel_width > 0.0) {
            return Err(Error::bad_param(Self::NAME, "kernel_width", format!("must be a positive number, got {}", config.kernel_width)));
        }
        if !(config.alpha.is_finite() && config.alpha >= 0.0) {
            return Err(Error::bad_param(Self::NAME, "alpha", format!("must be a number ≥ 0, got {}", config.alpha)));
        }
        Ok(Lime { config })
    }
    fn config(&self) -> &LimeConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let c = &self.config;
        let mut game = Game::new(Self::NAME, model, inputs, target, &c.features)?;
        let mut plans = vec![];
        for ex in 0..game.len() {
            let m = game.masks[ex].n;
            let mut rng = example_rng(&game.xs[ex], c.seed, 2);
            let mut zs = vec![vec![true; m]];
            while zs.len() < c.samples {
                zs.push((0..m).map(|_| rng.gen::<bool>()).collect());
            }
            let ws: Vec<f64> = zs
                .iter()
                .map(|z| {
                    let d = c.distance.of(z.iter().filter(|p| **p).count(), m);
                    (-(d * d) / (c.kernel_width * c.kernel_width)).exp()
                })
                .collect();
            plans.push((zs, ws));
        }
        let (sets, weights): (Vec<_>, Vec<_>) = plans.into_iter().unzip();
        let worths = game.eval_sets(Self::NAME, &sets)?;
        let (mut values, mut r2, mut intercepts) = (vec![], vec![], vec![]);
        for ((zs, ws), v) in sets.iter().zip(&weights).zip(&worths) {
            let fit = weighted_ridge(zs, v, ws, c.alpha)?;
            values.push(fit.coef);
            r2.push(fit.r2);
            intercepts.push(fit.intercept);
        }
        let mut e = finish(Self::NAME, &game, inputs, values, self.params())?
            .with_diag("samples", sets.iter().map(|s| s.len()).collect::<Vec<_>>())
            .with_diag("surrogate_r2", r2)
            .with_diag("surrogate_intercept", intercepts);
        e.seed = Some(c.seed);
        Ok(e)
    }
}
