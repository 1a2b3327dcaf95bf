//! KernelSHAP (Lundberg & Lee 2017): Shapley values as the weighted least-squares fit
//! of a linear model over coalition vectors, with the Shapley kernel
//! `π(z) = (M−1) / (C(M,|z|) · |z| · (M−|z|))` and the efficiency constraint
//! `Σ φ = f(x) − f(baseline)` imposed exactly.
//!
//! Sampling follows the kernel's mass by coalition size: sizes whose coalitions the
//! budget can cover completely (the smallest and largest first, where the kernel puts
//! most of its mass) are enumerated with their exact weights; the rest are drawn by
//! size ∝ the remaining mass, uniformly within a size, each with its complement when
//! `paired`. With `samples ≥ 2^M − 2` every coalition is enumerated and the result
//! is the exact Shapley value.

use crate::ablation::finish_shapley;
use crate::game::{Features, Game};
use crate::surrogate::constrained_wls;
use lumen_core::baseline::example_rng;
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::Rng;

/// Configuration of [`KernelShap`].
#[derive(Debug, Clone, Config)]
pub struct KernelShapConfig {
    #[param(flatten)]
    pub features: Features,
    /// coalitions evaluated per example (besides the empty and full ones)
    #[param(positive, max = 10_000_000)]
    pub samples: usize,
    /// draw each coalition together with its complement
    pub paired: bool,
    /// seed of the coalitions
    pub seed: u64,
}

impl Default for KernelShapConfig {
    fn default() -> Self {
        KernelShapConfig { features: Features::default(), samples: 2048, paired: true, seed: 0 }
    }
}

#[derive(Debug, Clone, Default)]
pub struct KernelShap {
    pub config: KernelShapConfig,
}

fn binom(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
}

/// Coalitions (size 1..M−1) and their weights (summing to 1) for a budget of `n`.
pub fn kernel_coalitions(m: usize, n: usize, paired: bool, rng: &mut StdRng) -> (Vec<Vec<bool>>, Vec<f64>) {
    let mut zs = vec![];
    let mut ws = vec![];
    if m < 2 {
        return (zs, ws);
    }
    // Kernel mass per size, normalised over sizes 1..M−1.
    let mass: Vec<f64> = (1..m).map(|k| (m - 1) as f64 / (k * (m - k)) as f64).collect();
    let total: f64 = mass.iter().sum();
    let mass: Vec<f64> = mass.iter().map(|v| v / total).collect();
    let mut left = n as f64;
    let mut remaining = 1.0;
    let mut open: Vec<usize> = (1..m).collect(); // sizes not enumerated
    for k in 1..=m / 2 {
        let sizes: Vec<usize> = if k == m - k { vec![k] } else { vec![k, m - k] };
        let count: f64 = sizes.iter().map(|&s| binom(m, s)).sum();
        let share: f64 = sizes.iter().map(|&s| mass[s - 1]).sum::<f64>() / remaining;
        if left * share + 1e-8 < count || count > 1e7 {
            break;
        }
        for &s in &sizes {
            let w = mass[s - 1] / binom(m, s);
            for comb in combinations(m, s) {
                let mut z = vec![false; m];
                comb.iter().for_each(|&i| z[i] = true);
                zs.push(z);
                ws.push(w);
            }
            open.retain(|&o| o != s);
        }
        left -= count;
        remaining -= sizes.iter().map(|&s| mass[s - 1]).sum::<f64>();
    }
    let draws = left.max(0.0) as usize;
    if open.is_empty() || draws == 0 {
        return (zs, ws);
    }
    // The rest: sizes ∝ remaining mass, uniform subsets, complements when paired.
    let open_mass: Vec<f64> = open.iter().map(|&s| mass[s - 1]).collect();
    let open_total: f64 = open_mass.iter().sum();
    let units = if paired { draws.div_ceil(2) } else { draws };
    let per = remaining / (if paired { 2 * units } else { units }) as f64;
    for _ in 0..units {
        let mut u = rng.gen::<f64>() * open_total;
        let mut s = *open.last().unwrap_or(&1);
        for (&o, &w) in open.iter().zip(&open_mass) {
            if u < w {
                s = o;
                break;
            }
            u -= w;
        }
        let mut z = vec![false; m];
        sample(rng, m, s).into_iter().for_each(|i| z[i] = true);
        if paired {
            zs.push(z.iter().map(|p| !p).collect());
            ws.push(per);
        }
        zs.push(z);
        ws.push(per);
    }
    (zs, ws)
}

/// All `k`-subsets of `0..n`, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![];
    if k > n {
        return out;
    }
    let mut c: Vec<usize> = (0..k).collect();
    loop {
        out.push(c.clone());
        // The rightmost position that can still move right.
        let mut i = k;
        while i > 0 && c[i - 1] == n - k + i - 1 {
            i -= 1;
        }
        if i == 0 {
            return out;
        }
        c[i - 1] += 1;
        for j in i..k {
            c[j] = c[j - 1] + 1;
        }
    }
}

impl Method for KernelShap {
    const NAME: &'static str = "kernel_shap";
    const SUMMARY: &'static str =
        "KernelSHAP: Shapley values from a kernel-weighted linear fit over sampled coalitions, efficiency exact";
    type Config = KernelShapConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..MethodProps::NONE };
    fn new(config: KernelShapConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        Ok(KernelShap { config })
    }
    fn config(&self) -> &KernelShapConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let c = &self.config;
        let mut game = Game::new(Self::NAME, model, inputs, target, &c.features)?;
        let (f_x, f_b) = game.endpoints()?;
        let (sets, weights): (Vec<_>, Vec<_>) = (0..game.len())
            .map(|ex| kernel_coalitions(game.masks[ex].n, c.samples, c.paired, &mut example_rng(&game.xs[ex], c.seed, 1)))
            .unzip();
        let worths = game.eval_sets(Self::NAME, &sets)?;
        let (mut values, mut r2, mut counts) = (vec![], vec![], vec![]);
        for (ex, ((zs, ws), v)) in sets.iter().zip(&weights).zip(&worths).enumerate() {
            let delta = f_x[ex] - f_b[ex];
            let y: Vec<f64> = v.iter().map(|v| v - f_b[ex]).collect();
            let fit = if zs.is_empty() {
                if game.masks[ex].n > 1 {
                    return Err(Error::bad_param(Self::NAME, "samples", "too few samples for a fit"));
                }
                crate::surrogate::Fit { coef: vec![delta], intercept: 0.0, r2: 1.0 }
            } else {
                constrained_wls(zs, &y, ws, delta)?
            };
            values.push(fit.coef);
            r2.push(fit.r2);
            counts.push(zs.len());
        }
        let mut e = finish_shapley(Self::NAME, &game, inputs, values, self.params(), f_x, f_b)?
            .with_diag("samples", counts)
            .with_diag("surrogate_r2", r2);
        e.seed = Some(c.seed);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn combinations_are_complete() {
        assert_eq!(combinations(4, 2).len(), 6);
        assert_eq!(combinations(5, 5), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(combinations(3, 1), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(combinations(16, 8).len(), 12_870);
    }

    #[test]
    fn full_budget_enumerates_every_coalition_with_kernel_weights() {
        let mut rng = StdRng::seed_from_u64(0);
        let (zs, ws) = kernel_coalitions(5, 30, true, &mut rng);
        assert_eq!(zs.len(), 30);
        assert!((ws.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // π(z) ∝ (M−1) / (C(M,k) k (M−k)).
        let k1 = ws[0];
        let k2 = ws[zs.iter().position(|z| z.iter().filter(|p| **p).count() == 2).unwrap()];
        assert!((k1 / k2 - (4.0 / (5.0 * 4.0)) / (4.0 / (10.0 * 6.0))).abs() < 1e-12);
    }

    #[test]
    fn partial_budget_mixes_enumeration_and_paired_draws() {
        let mut rng = StdRng::seed_from_u64(3);
        let (zs, ws) = kernel_coalitions(16, 100, true, &mut rng);
        // Sizes 1 and 15 (32 coalitions) fit; sizes 2 and 14 (240) do not.
        assert_eq!(zs.iter().filter(|z| z.iter().filter(|p| **p).count() == 1).count(), 16);
        assert!((ws.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(zs.len() >= 100 && zs.len() <= 101);
        let tail = &zs[32..];
        for pair in tail.chunks(2) {
            assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| a != b));
        }
    }
}
