//! Shapley values of the feature game `v(S) = f(x_S, baseline_rest)`:
//!
//! `φ_i = Σ_{S ⊆ N∖{i}} |S|!(M−|S|−1)!/M! · (v(S ∪ {i}) − v(S))`
//!
//! [`ShapleyExact`] enumerates all 2^M coalitions (M ≤ 16). [`ShapleySampling`]
//! averages marginal contributions along random orderings (Castro et al. 2009),
//! optionally antithetic (each ordering with its reverse), and stops early once the
//! largest standard error falls below `tolerance`.

use crate::ablation::finish_shapley;
use crate::game::{Features, Game, Query};
use lumen_core::baseline::example_rng;
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::seq::SliceRandom;

/// The most features [`ShapleyExact`] takes (2^16 forwards per example).
pub const MAX_EXACT: usize = 16;

/// Configuration of [`ShapleyExact`].
#[derive(Debug, Clone, Default, Config)]
pub struct ShapleyExactConfig {
    #[param(flatten)]
    pub features: Features,
}

#[derive(Debug, Clone, Default)]
pub struct ShapleyExact {
    pub config: ShapleyExactConfig,
}

/// `|S|!(M−|S|−1)!/M!` for |S| = 0..M−1.
pub fn shapley_weights(m: usize) -> Vec<f64> {
    // w(k) = 1 / (M · C(M−1, k)), with C computed in f64 (exact for M ≤ 60).
    let mut c = 1.0f64;
    (0..m)
        .map(|k| {
            if k > 0 {
                c = c * (m - k) as f64 / k as f64;
            }
            1.0 / (m as f64 * c)
        })
        .collect()
}

/// Exact Shapley values from the worths of all coalitions, `v[s]` for bitmask `s`.
pub fn exact_from_worths(m: usize, v: &[f64]) -> Vec<f64> {
    let w = shapley_weights(m);
    let mut phi = vec![0.0; m];
    for s in 0..(1usize << m) {
        let k = s.count_ones() as usize;
        for (i, p) in phi.iter_mut().enumerate() {
            if s & (1 << i) == 0 {
                *p += w[k] * (v[s | (1 << i)] - v[s]);
            }
        }
    }
    phi
}

fn bits(s: usize, m: usize) -> Vec<bool> {
    (0..m).map(|i| s & (1 << i) != 0).collect()
}

impl Method for ShapleyExact {
    const NAME: &'static str = "shapley_exact";
    const SUMMARY: &'static str = "exact Shapley values over all 2^M feature coalitions (M ≤ 16)";
    type Config = ShapleyExactConfig;
    fn new(config: ShapleyExactConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        Ok(ShapleyExact { config })
    }
    fn config(&self) -> &ShapleyExactConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let mut game = Game::new(Self::NAME, model, inputs, target, &self.config.features)?;
        if let Some(m) = game.masks.iter().find(|m| m.n > MAX_EXACT) {
            return Err(Error::unsupported(
                Self::NAME,
                format!(
                    "the mask has {} features and exact enumeration takes at most {MAX_EXACT}; use shapley_sampling or kernel_shap (or a coarser mask)",
                    m.n
                ),
            ));
        }
        game.show_progress(game.masks.iter().map(|m| 1usize << m.n).sum(), Self::NAME);
        let mut values = vec![];
        let (mut f_x, mut f_b) = (vec![], vec![]);
        for ex in 0..game.len() {
            let m = game.masks[ex].n;
            let qs: Vec<Query> = (0..1usize << m).map(|s| Query::new(ex, bits(s, m))).collect();
            let v = game.eval(&qs)?;
            f_x.push(v[(1 << m) - 1]);
            f_b.push(v[0]);
            values.push(exact_from_worths(m, &v));
        }
        game.progress().finish_and_clear();
        finish_shapley(Self::NAME, &game, inputs, values, self.params(), f_x, f_b)
    }
}

/// Configuration of [`ShapleySampling`].
#[derive(Debug, Clone, Config)]
pub struct ShapleySamplingConfig {
    #[param(flatten)]
    pub features: Features,
    /// feature orderings per example (the most, with tolerance=)
    #[param(positive, max = 1_000_000)]
    pub samples: usize,
    /// each ordering is followed by its reverse (variance reduction)
    pub antithetic: bool,
    /// stop once every feature's standard error is below this (absent: run all samples)
    pub tolerance: Option<f64>,
    /// seed of the orderings
    pub seed: u64,
}

impl Default for ShapleySamplingConfig {
    fn default() -> Self {
        ShapleySamplingConfig { features: Features::default(), samples: 25, antithetic: true, tolerance: None, seed: 0 }
    }
}

/// Checks a `tolerance=` value (shared with RISE).
pub fn check_tolerance(method: &str, t: Option<f64>) -> Result<()> {
    match t {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            Err(Error::bad_param(method, "tolerance", format!("must be a positive number, got {t}")))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Default)]
pub struct ShapleySampling {
    pub config: ShapleySamplingConfig,
}

/// Running mean and variance (Welford) of per-feature samples.
#[derive(Debug, Clone)]
pub struct Moments {
    pub n: usize,
    pub mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub fn new(m: usize) -> Moments {
        Moments { n: 0, mean: vec![0.0; m], m2: vec![0.0; m] }
    }
    pub fn push(&mut self, x: &[f64]) {
        self.n += 1;
        let n = self.n as f64;
        for ((mu, m2), x) in self.mean.iter_mut().zip(&mut self.m2).zip(x) {
            let d = x - *mu;
            *mu += d / n;
            *m2 += d * (x - *mu);
        }
    }
    /// Standard error of each mean (infinite below two samples).
    pub fn std_err(&self) -> Vec<f64> {
        if self.n < 2 {
            return vec![f64::INFINITY; self.mean.len()];
        }
        let n = self.n as f64;
        self.m2.iter().map(|m2| (m2 / (n - 1.0) / n).sqrt()).collect()
    }
    pub fn max_std_err(&self) -> f64 {
        self.std_err().into_iter().fold(0.0, f64::max)
    }
}

impl Method for ShapleySampling {
    const NAME: &'static str = "shapley_sampling";
    const SUMMARY: &'static str =
        "Shapley value sampling: marginal contributions along random (antithetic) feature orderings, with standard errors";
    type Config = ShapleySamplingConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: ShapleySamplingConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        check_tolerance(Self::NAME, config.tolerance)?;
        if config.antithetic && config.samples < 2 {
            return Err(Error::bad_param(Self::NAME, "samples", "antithetic sampling needs at least 2 orderings"));
        }
        Ok(ShapleySampling { config })
    }
    fn config(&self) -> &ShapleySamplingConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let c = &self.config;
        let mut game = Game::new(Self::NAME, model, inputs, target, &c.features)?;
        let b = game.len();
        let (f_x, f_b) = game.endpoints()?;
        // One sampling unit: an ordering, or an ordering and its reverse.
        let per_unit = if c.antithetic { 2 } else { 1 };
        let units = c.samples / per_unit;
        let mut rngs: Vec<_> = game.xs.iter().map(|x| example_rng(x, c.seed, 0)).collect();
        let mut moments: Vec<Moments> = game.masks.iter().map(|m| Moments::new(m.n)).collect();
        let mut done = vec![false; b];
        let total: usize = game.masks.iter().map(|m| units * per_unit * m.n.saturating_sub(1)).sum();
        game.show_progress(total, Self::NAME);
        // Rounds of units over all unfinished examples, sized to fill a few batches.
        let max_m = game.masks.iter().map(|m| m.n).max().unwrap_or(1).max(1);
        let round = (4 * c.features.batch_size / (max_m * per_unit * b)).clamp(2, 64);
        let mut used = 0;
        while used < units {
            let k = round.min(units - used);
            let mut orders: Vec<(usize, Vec<usize>)> = vec![];
            let mut qs = vec![];
            for ex in (0..b).filter(|&e| !done[e]) {
                let m = game.masks[ex].n;
                for _ in 0..k {
                    let mut p: Vec<usize> = (0..m).collect();
                    p.shuffle(&mut rngs[ex]);
                    let mut pair = vec![p.clone()];
                    if c.antithetic {
                        pair.push(p.iter().rev().copied().collect());
                    }
                    for o in pair {
                        // The prefixes of sizes 1..M−1; sizes 0 and M are f(b) and f(x).
                        let mut present = vec![false; m];
                        for &f in &o[..m - 1] {
                            present[f] = true;
                            qs.push(Query::new(ex, present.clone()));
                        }
                        orders.push((ex, o));
                    }
                }
            }
            if qs.is_empty() && orders.is_empty() {
                break;
            }
            let v = game.eval(&qs)?;
            let mut at = 0;
            let mut unit: Vec<f64> = vec![];
            for (j, (ex, o)) in orders.iter().enumerate() {
                let m = o.len();
                let mut contrib = vec![0.0; m];
                let mut prev = f_b[*ex];
                for (pos, &f) in o.iter().enumerate() {
                    let cur = if pos + 1 == m { f_x[*ex] } else { v[at + pos] };
                    contrib[f] = cur - prev;
                    prev = cur;
                }
                at += m - 1;
                if unit.is_empty() {
                    unit = contrib;
                } else {
                    unit.iter_mut().zip(&contrib).for_each(|(u, c)| *u = (*u + c) / 2.0);
                }
                if (j + 1) % per_unit == 0 {
                    moments[*ex].push(&unit);
                    unit.clear();
                }
            }
            used += k;
            let worst = moments.iter().zip(&done).filter(|(_, d)| !**d).map(|(m, _)| m.max_std_err()).fold(0.0, f64::max);
            game.progress().set_message(format!("max std err {worst:.3e}"));
            if let Some(tol) = c.tolerance {
                for (d, m) in done.iter_mut().zip(&moments) {
                    *d = *d || m.max_std_err() < tol;
                }
                if done.iter().all(|d| *d) {
                    break;
                }
            }
        }
        game.progress().finish_and_clear();
        let values: Vec<Vec<f64>> = moments.iter().map(|m| m.mean.clone()).collect();
        let mut e = finish_shapley(Self::NAME, &game, inputs, values, self.params(), f_x, f_b)?
            .with_diag("samples", moments.iter().map(|m| m.n * per_unit).collect::<Vec<_>>())
            .with_diag("std_err", moments.iter().map(|m| m.std_err()).collect::<Vec<_>>())
            .with_diag("max_std_err", moments.iter().map(|m| m.max_std_err()).collect::<Vec<_>>());
        e.seed = Some(c.seed);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_per_player() {
        // Σ_k C(M−1, k) w(k) = 1: every ordering counted once.
        for m in 1..=16 {
            let w = shapley_weights(m);
            let mut c = 1.0;
            let mut total = 0.0;
            for (k, wk) in w.iter().enumerate() {
                if k > 0 {
                    c = c * (m - k) as f64 / k as f64;
                }
                total += c * wk;
            }
            assert!((total - 1.0).abs() < 1e-12, "m={m}: {total}");
        }
    }

    #[test]
    fn exact_values_of_a_small_game() {
        // v(S) = [0 ∈ S]·[1 ∈ S] (a unanimity game on {0, 1}) plus 3·[2 ∈ S].
        let v: Vec<f64> =
            (0..8usize).map(|s| ((s & 1 != 0) && (s & 2 != 0)) as u8 as f64 + 3.0 * ((s & 4) != 0) as u8 as f64).collect();
        let phi = exact_from_worths(3, &v);
        assert!((phi[0] - 0.5).abs() < 1e-12 && (phi[1] - 0.5).abs() < 1e-12 && (phi[2] - 3.0).abs() < 1e-12, "{phi:?}");
    }

    #[test]
    fn moments_match_two_pass() {
        let xs = [[1.0, 2.0], [3.0, -1.0], [2.0, 0.5], [7.0, 0.0]];
        let mut m = Moments::new(2);
        xs.iter().for_each(|x| m.push(x));
        let mean0 = 13.0 / 4.0;
        let var0 = xs.iter().map(|x| (x[0] - mean0).powi(2)).sum::<f64>() / 3.0;
        assert!((m.mean[0] - mean0).abs() < 1e-12);
        assert!((m.std_err()[0] - (var0 / 4.0).sqrt()).abs() < 1e-12);
    }
}
