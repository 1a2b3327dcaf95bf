//! Feature ablation and feature permutation: one feature at a time is removed, and
//! the drop of the target is the feature's attribution (Captum's FeatureAblation and
//! FeaturePermutation definitions).

use crate::game::{Features, Fill, Game, Query};
use lumen_core::baseline::example_rng;
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::seq::SliceRandom;

/// Configuration of [`FeatureAblation`].
#[derive(Debug, Clone, Default, Config)]
pub struct FeatureAblationConfig {
    #[param(flatten)]
    pub features: Features,
}

/// `φ_i = f(x) − f(x with feature i set to the baseline)`.
#[derive(Debug, Clone, Default)]
pub struct FeatureAblation {
    pub config: FeatureAblationConfig,
}

impl Method for FeatureAblation {
    const NAME: &'static str = "feature_ablation";
    const SUMMARY: &'static str = "feature ablation: the drop of the target when one feature (mask) is set to the baseline";
    type Config = FeatureAblationConfig;
    fn new(config: FeatureAblationConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        Ok(FeatureAblation { config })
    }
    fn config(&self) -> &FeatureAblationConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let mut game = Game::new(Self::NAME, model, inputs, target, &self.config.features)?;
        let total: usize = game.masks.iter().map(|m| m.n + 1).sum();
        game.show_progress(total, Self::NAME);
        let mut qs = vec![];
        for (ex, m) in game.masks.iter().enumerate() {
            qs.push(Query::new(ex, vec![true; m.n]));
            for i in 0..m.n {
                let mut p = vec![true; m.n];
                p[i] = false;
                qs.push(Query::new(ex, p));
            }
        }
        let v = game.eval(&qs)?;
        game.progress().finish_and_clear();
        let mut values = vec![];
        let mut at = 0;
        for m in &game.masks {
            let f = v[at];
            values.push(v[at + 1..at + 1 + m.n].iter().map(|g| f - g).collect::<Vec<f64>>());
            at += m.n + 1;
        }
        finish(Self::NAME, &game, inputs, values, self.params())
    }
}

/// Configuration of [`FeaturePermutation`].
#[derive(Debug, Clone, Config)]
pub struct FeaturePermutationConfig {
    #[param(flatten)]
    pub features: Features,
    /// seed of the permutations
    pub seed: u64,
}

impl Default for FeaturePermutationConfig {
    fn default() -> Self {
        FeaturePermutationConfig { features: Features::default(), seed: 0 }
    }
}

/// `φ_i(x_b) = f(x_b) − f(x_b with feature i taken from example π(b))`, one random
/// permutation π of the batch per feature. Needs a batch of at least two, and the
/// examples' masks must agree; unlike every other method here, an example's map
/// depends on the rest of its batch (that is the definition).
#[derive(Debug, Clone, Default)]
pub struct FeaturePermutation {
    pub config: FeaturePermutationConfig,
}

impl Method for FeaturePermutation {
    const NAME: &'static str = "feature_permutation";
    const SUMMARY: &'static str =
        "feature permutation: the drop of the target when one feature is shuffled across the batch";
    type Config = FeaturePermutationConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: FeaturePermutationConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        Ok(FeaturePermutation { config })
    }
    fn config(&self) -> &FeaturePermutationConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let mut game = Game::new(Self::NAME, model, inputs, target, &self.config.features)?;
        let b = game.len();
        if b < 2 {
            return Err(Error::unsupported(Self::NAME, "permutes features across the batch: give at least 2 inputs"));
        }
        if game.masks.iter().any(|m| m.ids != game.masks[0].ids) {
            return Err(Error::unsupported(Self::NAME, "the examples' masks differ (mask=slic); use a grid or file mask"));
        }
        let n = game.masks[0].n;
        // The permutation of each feature, seeded by the seed and the whole batch.
        let all: Vec<f32> = game.xs.concat();
        let mut rng = example_rng(&all, self.config.seed, 0);
        let perms: Vec<Vec<usize>> = (0..n)
            .map(|_| {
                let mut p: Vec<usize> = (0..b).collect();
                p.shuffle(&mut rng);
                p
            })
            .collect();
        game.show_progress(b * (n + 1), Self::NAME);
        let mut qs = vec![];
        for ex in 0..b {
            qs.push(Query::new(ex, vec![true; n]));
            for (i, p) in perms.iter().enumerate() {
                let mut present = vec![true; n];
                present[i] = false;
                qs.push(Query { ex, present, fill: Fill::Example(p[ex]) });
            }
        }
        let v = game.eval(&qs)?;
        game.progress().finish_and_clear();
        let values: Vec<Vec<f64>> =
            v.chunks(n + 1).map(|c| c[1..].iter().map(|g| c[0] - g).collect()).collect();
        let mut e = finish(Self::NAME, &game, inputs, values, self.params())?;
        e.seed = Some(self.config.seed);
        Ok(e)
    }
}

/// The explanation of per-feature values: the map, the mask and the feature values.
pub fn finish(
    method: &str,
    game: &Game,
    inputs: &Tensor,
    values: Vec<Vec<f64>>,
    params: std::collections::BTreeMap<String, String>,
) -> Result<Explanation> {
    let (attr, mask) = game.assemble(inputs, &values)?;
    Ok(Explanation::new(method, attr, game.target.clone())
        .with_tensor("mask", mask)
        .with_params(params)
        .with_diag("features", game.masks.iter().map(|m| m.n).collect::<Vec<_>>())
        .with_diag("evaluations", game.evaluations())
        .with_diag("feature_values", values))
}

/// [`finish`] for the Shapley family: adds the efficiency gap
/// `Σφ − (f(x) − f(baseline))` and both endpoints, per example.
pub fn finish_shapley(
    method: &str,
    game: &Game,
    inputs: &Tensor,
    values: Vec<Vec<f64>>,
    params: std::collections::BTreeMap<String, String>,
    f_x: Vec<f64>,
    f_b: Vec<f64>,
) -> Result<Explanation> {
    let gaps = crate::game::efficiency_gaps(&values, &f_x, &f_b);
    Ok(finish(method, game, inputs, values, params)?
        .with_diag("efficiency_gap", gaps)
        .with_diag("f_input", f_x)
        .with_diag("f_baseline", f_b))
}
