//! The quadrature along a path from a baseline to the input (Riemann left, right and
//! middle, trapezoid, Gauss–Legendre): Integrated Gradients and its relatives and the
//! layer and neuron methods take it; it lives in core because packs must not link
//! each other. Gauss–Legendre is Captum's default and gives Captum's nodes and weights
//! (`numpy.polynomial.legendre.leggauss` mapped to [0, 1]).
//!
//! Captum's `riemann_trapezoid` differs: its weights are `1/m` with halves at both
//! ends (they sum to `(m − 1)/m`), lumen's `1/(m − 1)` with halves (they sum to 1).

use crate::baseline::Baseline;
use crate::{Choice, Error, Result};

/// The parameters every straight-path method takes (Integrated Gradients, the layer
/// and neuron path methods), declared once: flatten it into a method's config.
#[derive(Debug, Clone, crate::Config)]
pub struct PathConfig {
    /// gradient evaluations along the path (conductance takes steps + 1 nodes, as Captum)
    #[param(positive, max = 10_000)]
    pub steps: usize,
    /// quadrature along the path
    pub scheme: Scheme,
    /// comma-separated baselines, averaged: zero, constant, blur, uniform, tensor
    #[param(name = "baseline", with = crate::baseline::param)]
    pub baselines: Vec<Baseline>,
    /// seed of the 'uniform' baselines
    pub seed: u64,
    /// path points per forward/backward pass
    #[param(positive, max = crate::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig { steps: 50, scheme: Scheme::GaussLegendre, baselines: vec![Baseline::Zero], seed: 0, batch_size: 64 }
    }
}

/// The quadrature along the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum Scheme {
    /// α_k = k/m, k = 0..m−1.
    RiemannLeft,
    /// α_k = (k+1)/m.
    RiemannRight,
    /// α_k = (k+½)/m.
    RiemannMiddle,
    /// α_k = k/(m−1), half weight at both ends (m ≥ 2).
    Trapezoid,
    /// Gauss–Legendre nodes and weights mapped to [0, 1].
    GaussLegendre,
}

impl Scheme {
    /// Nodes α_k ∈ [0, 1] and weights w_k (Σ w_k = 1) for `steps` gradient evaluations.
    pub fn nodes(self, method: &str, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let bad = |r: &str| Error::bad_param(method, "steps", r);
        if steps == 0 {
            return Err(bad("must be ≥ 1"));
        }
        let m = steps as f64;
        Ok(match self {
            Scheme::RiemannLeft => ((0..steps).map(|k| k as f64 / m).collect(), vec![1.0 / m; steps]),
            Scheme::RiemannRight => ((0..steps).map(|k| (k + 1) as f64 / m).collect(), vec![1.0 / m; steps]),
            Scheme::RiemannMiddle => ((0..steps).map(|k| (k as f64 + 0.5) / m).collect(), vec![1.0 / m; steps]),
            Scheme::Trapezoid => {
                if steps < 2 {
                    return Err(bad("the trapezoid rule needs at least 2 steps"));
                }
                let h = 1.0 / (m - 1.0);
                let mut w = vec![h; steps];
                w[0] = h / 2.0;
                w[steps - 1] = h / 2.0;
                ((0..steps).map(|k| k as f64 * h).collect(), w)
            }
            Scheme::GaussLegendre => {
                let (t, w) = gauss_legendre(steps);
                (t.iter().map(|t| (t + 1.0) / 2.0).collect(), w.iter().map(|w| w / 2.0).collect())
            }
        })
    }
}

/// Gauss–Legendre nodes (ascending) and weights on [−1, 1]: the roots of the Legendre
/// polynomial P_n, found by Newton's method from Chebyshev-like initial guesses, with
/// `w_i = 2 / ((1 − x_i²) P_n'(x_i)²)`.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    // P_n(z) and P_n'(z) by the three-term recurrence.
    let legendre = |z: f64| {
        let (mut p0, mut p1) = (1.0, z);
        for k in 1..n {
            let k = k as f64;
            let p2 = ((2.0 * k + 1.0) * z * p1 - k * p0) / (k + 1.0);
            p0 = p1;
            p1 = p2;
        }
        let dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
        (p1, dp)
    };
    // The roots are symmetric about 0: find the ⌈n/2⌉ in [0, 1) (descending) and
    // mirror them. O(n) memory; O(n²) time, once per explanation, with n ≤ the
    // `steps` bound.
    let half = n.div_ceil(2);
    let mut pos = Vec::with_capacity(half);
    for i in 0..half {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            let (p, dp) = legendre(z);
            let dz = p / dp;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        if n % 2 == 1 && i == half - 1 {
            z = 0.0; // the middle root of an odd rule
        }
        let (_, dp) = legendre(z);
        pos.push((z, 2.0 / ((1.0 - z * z) * dp * dp)));
    }
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for &(z, w) in &pos {
        nodes.push(-z);
        weights.push(w);
    }
    for &(z, w) in pos.iter().rev().skip(n % 2) {
        nodes.push(z);
        weights.push(w);
    }
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_known_rules() {
        let (x, w) = gauss_legendre(3);
        let s = (0.6f64).sqrt();
        for (a, b) in x.iter().zip([-s, 0.0, s]) {
            assert!((a - b).abs() < 1e-14, "{x:?}");
        }
        for (a, b) in w.iter().zip([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0]) {
            assert!((a - b).abs() < 1e-14, "{w:?}");
        }
        // n points integrate polynomials of degree 2n − 1 exactly: ∫₀¹ α^(2n−1) = 1/(2n)
        for n in [1usize, 2, 5, 20, 64] {
            let (a, w) = Scheme::GaussLegendre.nodes("m", n).unwrap();
            let p = 2 * n as i32 - 1;
            let got: f64 = a.iter().zip(&w).map(|(a, w)| w * a.powi(p)).sum();
            assert!((got - 1.0 / (2 * n) as f64).abs() < 1e-12, "n={n}: {got}");
            assert!(a.windows(2).all(|p| p[0] < p[1]) && a[0] > 0.0 && a[n - 1] < 1.0);
        }
    }

    /// At the `steps` bound the rule is still exact for degree 2n − 1 and symmetric.
    #[test]
    fn gauss_legendre_at_large_n() {
        let n = 10_000;
        let (x, w) = gauss_legendre(n);
        assert_eq!((x.len(), w.len()), (n, n));
        assert!(x.windows(2).all(|p| p[0] < p[1]) && x[0] > -1.0 && x[n - 1] < 1.0);
        assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-10);
        assert!(x.iter().zip(x.iter().rev()).all(|(a, b)| a == &-b));
        // ∫₋₁¹ z^10 = 2/11; ∫₋₁¹ cos(z) = 2 sin 1
        let q = |f: &dyn Fn(f64) -> f64| x.iter().zip(&w).map(|(x, w)| w * f(*x)).sum::<f64>();
        assert!((q(&|z| z.powi(10)) - 2.0 / 11.0).abs() < 1e-10);
        assert!((q(&|z| z.cos()) - 2.0 * 1f64.sin()).abs() < 1e-10);
        let (x, _) = gauss_legendre(7);
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn quadrature_nodes_by_hand() {
        let (a, w) = Scheme::RiemannLeft.nodes("m", 4).unwrap();
        assert_eq!((a, w), (vec![0.0, 0.25, 0.5, 0.75], vec![0.25; 4]));
        let (a, _) = Scheme::RiemannRight.nodes("m", 4).unwrap();
        assert_eq!(a, vec![0.25, 0.5, 0.75, 1.0]);
        let (a, _) = Scheme::RiemannMiddle.nodes("m", 4).unwrap();
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        let (a, w) = Scheme::Trapezoid.nodes("m", 3).unwrap();
        assert_eq!((a, w), (vec![0.0, 0.5, 1.0], vec![0.25, 0.5, 0.25]));
        assert!(Scheme::Trapezoid.nodes("m", 1).is_err());
        // ∫₀¹ α² = 1/3: trapezoid error h²/6 with h = 1/(m−1); middle −h²/12 with h = 1/m
        let integ = |s: Scheme, m| {
            let (a, w) = s.nodes("m", m).unwrap();
            a.iter().zip(&w).map(|(a, w)| w * a * a).sum::<f64>()
        };
        assert!((integ(Scheme::Trapezoid, 11) - (1.0 / 3.0 + 0.01 / 6.0)).abs() < 1e-12);
        assert!((integ(Scheme::RiemannMiddle, 10) - (1.0 / 3.0 - 0.01 / 12.0)).abs() < 1e-12);
    }
}
