//! Weighted linear surrogates over binary coalition vectors: KernelSHAP's least
//! squares under the efficiency constraint, and LIME's weighted ridge.

use lumen_core::{Error, Result};
use nalgebra::{DMatrix, DVector};

/// A fitted surrogate: coefficients per feature, intercept and weighted R².
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub r2: f64,
}

fn solve(a: DMatrix<f64>, b: DVector<f64>) -> Result<DVector<f64>> {
    if let Some(ch) = a.clone().cholesky() {
        return Ok(ch.solve(&b));
    }
    // Rank-deficient designs (too few distinct coalitions): the minimum-norm solution.
    a.svd(true, true).solve(&b, 1e-12).map_err(|e| Error::msg(format!("surrogate fit failed: {e}")))
}

/// Weighted R² of predictions `p` for targets `y`.
fn r2(y: &[f64], p: &[f64], w: &[f64]) -> f64 {
    let sw: f64 = w.iter().sum();
    let mean = y.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / sw;
    let ss_res: f64 = y.iter().zip(p).zip(w).map(|((y, p), w)| w * (y - p).powi(2)).sum();
    let ss_tot: f64 = y.iter().zip(w).map(|(y, w)| w * (y - mean).powi(2)).sum();
    if ss_tot <= 1e-300 {
        if ss_res <= 1e-300 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// KernelSHAP's fit: minimise `Σ w_z (y_z − φ·z)²` subject to `Σ φ = delta`, where
/// `y_z = v(z) − v(∅)`. The constraint is eliminated by `φ_M = delta − Σ_{i<M} φ_i`.
pub fn constrained_wls(z: &[Vec<bool>], y: &[f64], w: &[f64], delta: f64) -> Result<Fit> {
    let m = z.first().map(|r| r.len()).unwrap_or(0);
    if m == 0 {
        return Err(Error::msg("surrogate fit: no features"));
    }
    if m == 1 {
        return Ok(Fit { coef: vec![delta], intercept: 0.0, r2: 1.0 });
    }
    let k = m - 1;
    let mut ata = DMatrix::<f64>::zeros(k, k);
    let mut atb = DVector::<f64>::zeros(k);
    let mut row = vec![0.0; k];
    for ((zr, &yz), &wz) in z.iter().zip(y).zip(w) {
        let last = zr[k] as u8 as f64;
        for i in 0..k {
            row[i] = zr[i] as u8 as f64 - last;
        }
        let t = yz - last * delta;
        for i in 0..k {
            if row[i] == 0.0 {
                continue;
            }
            atb[i] += wz * row[i] * t;
            for j in 0..k {
                ata[(i, j)] += wz * row[i] * row[j];
            }
        }
    }
    let sol = solve(ata, atb)?;
    let mut coef: Vec<f64> = sol.iter().copied().collect();
    coef.push(delta - coef.iter().sum::<f64>());
    let pred: Vec<f64> = z.iter().map(|zr| zr.iter().zip(&coef).filter(|(p, _)| **p).map(|(_, c)| c).sum()).collect();
    Ok(Fit { r2: r2(y, &pred, w), coef, intercept: 0.0 })
}

/// Weighted ridge with an (unpenalised) intercept: minimise
/// `Σ w_z (y_z − b − β·z)² + α‖β‖²`.
pub fn weighted_ridge(z: &[Vec<bool>], y: &[f64], w: &[f64], alpha: f64) -> Result<Fit> {
    let m = z.first().map(|r| r.len()).unwrap_or(0);
    let sw: f64 = w.iter().sum();
    if m == 0 || sw <= 0.0 {
        return Err(Error::msg("surrogate fit: no features or no weight"));
    }
    // Centre by the weighted means, so the intercept drops out of the normal equations.
    let mut zm = vec![0.0; m];
    for (zr, &wz) in z.iter().zip(w) {
        for (i, &p) in zr.iter().enumerate() {
            if p {
                zm[i] += wz;
            }
        }
    }
    zm.iter_mut().for_each(|v| *v /= sw);
    let ym = y.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / sw;
    let mut ata = DMatrix::<f64>::zeros(m, m);
    let mut atb = DVector::<f64>::zeros(m);
    let mut row = vec![0.0; m];
    for ((zr, &yz), &wz) in z.iter().zip(y).zip(w) {
        for i in 0..m {
            row[i] = zr[i] as u8 as f64 - zm[i];
        }
        for i in 0..m {
            atb[i] += wz * row[i] * (yz - ym);
            for j in 0..m {
                ata[(i, j)] += wz * row[i] * row[j];
            }
        }
    }
    for i in 0..m {
        ata[(i, i)] += alpha;
    }
    let coef: Vec<f64> = solve(ata, atb)?.iter().copied().collect();
    let intercept = ym - coef.iter().zip(&zm).map(|(c, m)| c * m).sum::<f64>();
    let pred: Vec<f64> = z
        .iter()
        .map(|zr| intercept + zr.iter().zip(&coef).filter(|(p, _)| **p).map(|(_, c)| c).sum::<f64>())
        .collect();
    Ok(Fit { r2: r2(y, &pred, w), coef, intercept })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(m: usize) -> Vec<Vec<bool>> {
        (0..1usize << m).map(|s| (0..m).map(|i| s & (1 << i) != 0).collect()).collect()
    }

    #[test]
    fn ridge_recovers_a_linear_function() {
        let coef = [1.5, -2.0, 0.25];
        let z = all(3);
        let y: Vec<f64> = z.iter().map(|r| 0.7 + r.iter().zip(&coef).filter(|(p, _)| **p).map(|(_, c)| c).sum::<f64>()).collect();
        let w: Vec<f64> = (0..8).map(|i| 1.0 + i as f64).collect();
        let f = weighted_ridge(&z, &y, &w, 0.0).unwrap();
        for (a, b) in f.coef.iter().zip(coef) {
            assert!((a - b).abs() < 1e-10, "{f:?}");
        }
        assert!((f.intercept - 0.7).abs() < 1e-10 && (f.r2 - 1.0).abs() < 1e-12);
        // A penalty shrinks the coefficients.
        let g = weighted_ridge(&z, &y, &w, 10.0).unwrap();
        assert!(g.coef[0].abs() < 1.5 && g.r2 < 1.0);
    }

    #[test]
    fn constrained_fit_meets_the_constraint() {
        let z = all(4)[1..15].to_vec();
        let y: Vec<f64> = z.iter().map(|r| (r.iter().filter(|p| **p).count() as f64).powi(2)).collect();
        let w = vec![1.0; z.len()];
        let f = constrained_wls(&z, &y, &w, 16.0).unwrap();
        assert!((f.coef.iter().sum::<f64>() - 16.0).abs() < 1e-10);
        // Symmetric players get equal shares.
        assert!(f.coef.iter().all(|c| (c - 4.0).abs() < 1e-10), "{f:?}");
    }
}
