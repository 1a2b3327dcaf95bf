//! The conditional Gaussian sampler (Zintgraf et al. §3.2): a multivariate normal
//! over `(k + 2l) × (k + 2l)` patches, fitted on training patches. A window's values
//! are drawn from the Gaussian conditioned on the rest of its patch:
//! `μ₁ + Σ₁₂Σ₂₂⁻¹(x₂ − μ₂)` and `Σ₁₁ − Σ₁₂Σ₂₂⁻¹Σ₂₁`, through Cholesky factors.
//!
//! The model is stationary, so it is fitted once on `patch × patch` squares (large
//! enough for every window size used) and any smaller patch takes the top-left
//! block of its covariance. The regression matrix and the Cholesky factor depend
//! only on the window's offset inside the patch, so they are computed once per
//! offset and reused for every window.

use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::sampler::{HostImage, Sampler, Window};
use lumen_core::{Args, Error, Result};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Configuration of [`ConditionalGaussian`].
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianConfig {
    /// Padding `l` around the window: the window is conditioned on a
    /// `(k + 2l) × (k + 2l)` patch.
    pub padding: usize,
    /// Side of the fitted patches; bounds `k + 2l`.
    pub patch: usize,
    /// Number of training patches to fit on.
    pub patches: usize,
    /// Added to the covariance diagonal, so that it stays positive definite on flat
    /// backgrounds (MNIST's zeros).
    pub ridge: f64,
    /// One Gaussian over all channels jointly, instead of one per channel.
    pub joint: bool,
    /// Seed for choosing the training patches.
    pub seed: u64,
}

impl Default for GaussianConfig {
    fn default() -> Self {
        GaussianConfig { padding: 2, patch: 12, patches: 20_000, ridge: 1e-3, joint: false, seed: 0 }
    }
}

pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("padding", ParamKind::Int, "2", "l: the window is conditioned on a (k+2l)² patch").max(64),
    ParamSpec::new("patch", ParamKind::Int, "12", "side of the fitted patches (bounds k+2l)").max(256),
    ParamSpec::new("patches", ParamKind::Int, "20000", "training patches to fit on").max(1_000_000),
    ParamSpec::new("ridge", ParamKind::Float, "0.001", "added to the covariance diagonal"),
    ParamSpec::new("joint", ParamKind::Bool, "false", "one Gaussian over all channels (else one per channel)"),
    ParamSpec::new("seed", ParamKind::Int, "0", "seed for choosing training patches"),
];

impl GaussianConfig {
    pub fn from_args(a: &Args) -> Result<Self> {
        let c = GaussianConfig {
            padding: a.usize("padding")?,
            patch: a.positive("patch")?,
            patches: a.positive("patches")?,
            ridge: a.f64("ridge")?,
            joint: a.bool("joint")?,
            seed: a.u64("seed")?,
        };
        if c.ridge < 0.0 {
            return Err(Error::bad_param(a.method(), "ridge", "must be ≥ 0"));
        }
        if c.patches < 2 {
            return Err(Error::bad_param(a.method(), "patches", "must be ≥ 2"));
        }
        Ok(c)
    }
}

/// Start of the patch along one axis and its length: the patch is centred on the
/// window where possible and clamped inside the image near the borders, so that
/// there the window sits off-centre.
pub fn patch_span(pos: usize, k: usize, l: usize, n: usize) -> (usize, usize) {
    let len = (k + 2 * l).min(n);
    let start = pos.saturating_sub(l).min(n - len);
    (start, len)
}

/// The precomputed conditional for one window offset and one channel group.
struct Conditional {
    /// Patch-local indices (into the group's `[ch, py, px]` patch) of the window
    /// (`a`) and of the rest of the patch (`b`).
    a: Vec<(usize, usize, usize)>,
    b: Vec<(usize, usize, usize)>,
    mu_a: DVector<f64>,
    mu_b: DVector<f64>,
    /// Regression matrix `Σ₁₂Σ₂₂⁻¹`, `|a| × |b|`.
    reg: DMatrix<f64>,
    /// Lower Cholesky factor of the conditional covariance.
    chol: DMatrix<f64>,
    /// The conditional covariance itself (for tests and diagnostics).
    cov: DMatrix<f64>,
}

type Key = (usize, usize, usize, usize, usize, usize); // (h, w, ph, pw, oy, ox)

/// A fitted stationary Gaussian patch model.
pub struct ConditionalGaussian {
    config: GaussianConfig,
    /// Fitted patch side.
    p: usize,
    /// Image channels.
    c: usize,
    /// One mean and covariance per group (one group if joint, else one per channel),
    /// over `[ch, py, px]` of a `p × p` patch (`ch` only when joint).
    mean: Vec<DVector<f64>>,
    cov: Vec<DMatrix<f64>>,
    /// Data range; samples are clipped to it.
    range: (f32, f32),
    cache: Mutex<HashMap<Key, Arc<Vec<Conditional>>>>,
}

impl std::fmt::Debug for ConditionalGaussian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionalGaussian")
            .field("config", &self.config)
            .field("p", &self.p)
            .field("c", &self.c)
            .field("range", &self.range)
            .finish()
    }
}

impl ConditionalGaussian {
    fn group_channels(&self) -> usize {
        if self.config.joint {
            self.c
        } else {
            1
        }
    }

    /// Builds a model from known moments (one group per channel, or one joint
    /// group), each over `[ch, py, px]` of a `p × p` patch.
    pub fn from_moments(
        config: GaussianConfig,
        p: usize,
        c: usize,
        mean: Vec<DVector<f64>>,
        cov: Vec<DMatrix<f64>>,
        range: (f32, f32),
    ) -> Result<Self> {
        let groups = if config.joint { 1 } else { c };
        let dim = if config.joint { c * p * p } else { p * p };
        if p == 0 || c == 0 || mean.len() != groups || cov.len() != groups {
            return Err(Error::shape(format!("{groups} means and covariances"), format!("{}", mean.len())));
        }
        for (m, s) in mean.iter().zip(&cov) {
            if m.len() != dim || s.nrows() != dim || s.ncols() != dim {
                return Err(Error::shape(
                    format!("mean of {dim} and covariance {dim}×{dim}"),
                    format!("{} and {}×{}", m.len(), s.nrows(), s.ncols()),
                ));
            }
        }
        if range.0.is_nan() || range.1.is_nan() || range.0 > range.1 {
            return Err(Error::Data(format!("bad data range {range:?}")));
        }
        Ok(ConditionalGaussian { config, p, c, mean, cov, range, cache: Mutex::new(HashMap::new()) })
    }

    /// Fits on `config.patches` random `patch × patch` squares of `train`
    /// (`[N, C, H, W]`).
    pub fn fit(config: GaussianConfig, train: &Tensor) -> Result<Self> {
        let (n, c, h, w) = train
            .dims4()
            .map_err(|_| Error::shape("training data [N, C, H, W]", format!("{:?}", train.dims())))?;
        let p = config.patch;
        if n == 0 || p > h || p > w {
            return Err(Error::Data(format!(
                "cannot fit {p}×{p} patches on {n} training images of {h}×{w}"
            )));
        }
        let data = train.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let lo = data.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let groups = if config.joint { 1 } else { c };
        let gc = if config.joint { c } else { 1 };
        let dim = gc * p * p;
        let m = config.patches;
        let mut rng = StdRng::seed_from_u64(config.seed);
        // One row per patch (and per channel when channels are independent).
        let mut rows: Vec<Vec<f64>> = vec![Vec::with_capacity(m * dim); groups];
        for _ in 0..m {
            let (i, y, x) = (rng.gen_range(0..n), rng.gen_range(0..=h - p), rng.gen_range(0..=w - p));
            for ch in 0..c {
                let g = if config.joint { 0 } else { ch };
                let plane = &data[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
                for py in 0..p {
                    rows[g].extend(plane[(y + py) * w + x..(y + py) * w + x + p].iter().map(|v| *v as f64));
                }
            }
        }
        let mut means = vec![];
        let mut covs = vec![];
        for r in rows {
            let xs = DMatrix::from_row_slice(m, dim, &r);
            let mu = DVector::from_iterator(dim, xs.column_iter().map(|col| col.mean()));
            let mut xc = xs;
            for (j, mut col) in xc.column_iter_mut().enumerate() {
                col.add_scalar_mut(-mu[j]);
            }
            let cov = xc.tr_mul(&xc) / (m as f64 - 1.0);
            means.push(mu);
            covs.push(cov);
        }
        Self::from_moments(config, p, c, means, covs, (lo, hi))
    }

    /// Loads a model that [`Sampler::save`] wrote; sampling settings (padding,
    /// ridge) come from `config`, the fitted moments from the file.
    pub fn load(mut config: GaussianConfig, path: &Path) -> Result<Self> {
        let path = &lumen_core::paths::check_read(path)?;
        let bad = |why: &str| Error::Data(format!("{}: not a conditional Gaussian sampler ({why})", path.display()));
        if !path.exists() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "file not found")));
        }
        let m = lumen_core::candle::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Weights {
            path: path.into(),
            reason: format!("not a valid safetensors file ({e})"),
        })?;
        let get = |k: &str| -> Result<Vec<f64>> {
            Ok(m.get(k).ok_or_else(|| bad(&format!("no '{k}'")))?.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
        };
        let meta = get("meta")?;
        if meta.len() != 5 {
            return Err(bad("meta has the wrong length"));
        }
        let (p, c, joint) = (meta[0] as usize, meta[1] as usize, meta[2] != 0.0);
        config.joint = joint;
        config.patch = p;
        let (groups, dim) = if joint { (1, c * p * p) } else { (c, p * p) };
        let mean = get("mean")?;
        let cov = get("cov")?;
        if mean.len() != groups * dim || cov.len() != groups * dim * dim {
            return Err(bad("moments do not match the recorded sizes"));
        }
        let means = mean.chunks(dim).map(|v| DVector::from_column_slice(v)).collect();
        let covs = cov.chunks(dim * dim).map(|v| DMatrix::from_row_slice(dim, dim, v)).collect();
        Self::from_moments(config, p, c, means, covs, (meta[3] as f32, meta[4] as f32))
    }

    pub fn config(&self) -> &GaussianConfig {
        &self.config
    }

    pub fn range(&self) -> (f32, f32) {
        self.range
    }

    /// The number of distinct precomputed offsets so far.
    pub fn cached_offsets(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn key(&self, image: &HostImage, win: &Window) -> Result<(Key, usize, usize)> {
        let l = self.config.padding;
        let (py0, ph) = patch_span(win.y, win.h, l, image.h);
        let (px0, pw) = patch_span(win.x, win.w, l, image.w);
        if ph > self.p || pw > self.p {
            return Err(Error::msg(format!(
                "a {}×{} window with padding {l} needs {ph}×{pw} patches, but the sampler was fitted on {p}×{p}; refit with patch ≥ {}",
                win.h,
                win.w,
                ph.max(pw),
                p = self.p
            )));
        }
        Ok(((win.h, win.w, ph, pw, win.y - py0, win.x - px0), py0, px0))
    }

    /// The conditionals of every group for one window offset, computed once.
    fn conditionals(&self, key: Key) -> Result<Arc<Vec<Conditional>>> {
        if let Some(c) = self.cache.lock().map_err(|_| Error::msg("sampler cache poisoned"))?.get(&key) {
            return Ok(c.clone());
        }
        let (h, w, ph, pw, oy, ox) = key;
        let gc = self.group_channels();
        let p = self.p;
        let fitted = |(ch, y, x): (usize, usize, usize)| (ch * p + y) * p + x;
        let mut out = vec![];
        for (mu, sigma) in self.mean.iter().zip(&self.cov) {
            let mut a = vec![];
            let mut b = vec![];
            for ch in 0..gc {
                for y in 0..ph {
                    for x in 0..pw {
                        let inside = (oy..oy + h).contains(&y) && (ox..ox + w).contains(&x);
                        if inside {
                            a.push((ch, y, x));
                        } else {
                            b.push((ch, y, x));
                        }
                    }
                }
            }
            let ia: Vec<usize> = a.iter().map(|t| fitted(*t)).collect();
            let ib: Vec<usize> = b.iter().map(|t| fitted(*t)).collect();
            let ridge = self.config.ridge;
            let s_aa = DMatrix::from_fn(ia.len(), ia.len(), |i, j| sigma[(ia[i], ia[j])] + if i == j { ridge } else { 0.0 });
            let mu_a = DVector::from_iterator(ia.len(), ia.iter().map(|&i| mu[i]));
            let mu_b = DVector::from_iterator(ib.len(), ib.iter().map(|&i| mu[i]));
            let (reg, cov) = if ib.is_empty() {
                (DMatrix::zeros(ia.len(), 0), s_aa)
            } else {
                let s_bb = DMatrix::from_fn(ib.len(), ib.len(), |i, j| sigma[(ib[i], ib[j])] + if i == j { ridge } else { 0.0 });
                let s_ba = DMatrix::from_fn(ib.len(), ia.len(), |i, j| sigma[(ib[i], ia[j])]);
                let chol_bb = nalgebra::Cholesky::new(s_bb).ok_or_else(|| {
                    Error::Solver("the patch covariance is not positive definite; increase the ridge".into())
                })?;
                // Σ₂₂ X = Σ₂₁ gives X = Σ₂₂⁻¹Σ₂₁ = (Σ₁₂Σ₂₂⁻¹)ᵀ without forming an inverse.
                let reg = chol_bb.solve(&s_ba).transpose();
                let cov = &s_aa - &reg * &s_ba;
                (reg, cov)
            };
            let cov = (&cov + cov.transpose()) * 0.5;
            let chol = nalgebra::Cholesky::new(cov.clone())
                .ok_or_else(|| {
                    Error::Solver("the conditional covariance is not positive definite; increase the ridge".into())
                })?
                .l();
            out.push(Conditional { a, b, mu_a, mu_b, reg, chol, cov });
        }
        let out = Arc::new(out);
        self.cache.lock().map_err(|_| Error::msg("sampler cache poisoned"))?.insert(key, out.clone());
        Ok(out)
    }

    /// The conditional mean `[C, h, w]` and, per group, the conditional covariance
    /// of a window's values given the rest of its patch in `image`.
    pub fn conditional_moments(&self, image: &HostImage, win: &Window) -> Result<(Vec<f64>, Vec<DMatrix<f64>>)> {
        image.check_windows(std::slice::from_ref(win))?;
        let (key, py0, px0) = self.key(image, win)?;
        let conds = self.conditionals(key)?;
        let mut mean = vec![0f64; self.c * win.h * win.w];
        let mut covs = vec![];
        for (g, cd) in conds.iter().enumerate() {
            let m = self.cond_mean(image, cd, g, py0, px0);
            for (i, &(ch, y, x)) in cd.a.iter().enumerate() {
                let ch = if self.config.joint { ch } else { g };
                mean[(ch * win.h + y - key.4) * win.w + x - key.5] = m[i];
            }
            covs.push(cd.cov.clone());
        }
        Ok((mean, covs))
    }

    fn cond_mean(&self, image: &HostImage, cd: &Conditional, g: usize, py0: usize, px0: usize) -> DVector<f64> {
        let joint = self.config.joint;
        let xb = DVector::from_iterator(
            cd.b.len(),
            cd.b.iter().map(|&(ch, y, x)| image.at(if joint { ch } else { g }, py0 + y, px0 + x) as f64),
        );
        &cd.mu_a + &cd.reg * (xb - &cd.mu_b)
    }
}

impl Sampler for ConditionalGaussian {
    fn name(&self) -> &str {
        "conditional_gaussian"
    }

    fn sample_windows(
        &self,
        image: &HostImage,
        wins: &[Window],
        n: usize,
        rng: &mut StdRng,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if image.c != self.c {
            return Err(Error::shape(format!("images with {} channels", self.c), format!("{} channels", image.c)));
        }
        image.check_windows(wins)?;
        let (lo, hi) = self.range;
        let joint = self.config.joint;
        for win in wins {
            let (key, py0, px0) = self.key(image, win)?;
            let conds = self.conditionals(key)?;
            let (oy, ox) = (key.4, key.5);
            let plane = win.h * win.w;
            let block = self.c * plane;
            let base = out.len();
            out.resize(base + n * block, 0.0);
            for (g, cd) in conds.iter().enumerate() {
                let m = self.cond_mean(image, cd, g, py0, px0);
                let d = m.len();
                let mut z = DVector::<f64>::zeros(d);
                for s in 0..n {
                    z.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
                    let x = &m + &cd.chol * &z;
                    for (i, &(ch, y, xx)) in cd.a.iter().enumerate() {
                        let ch = if joint { ch } else { g };
                        out[base + s * block + ch * plane + (y - oy) * win.w + (xx - ox)] = (x[i] as f32).clamp(lo, hi);
                    }
                }
            }
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        let dev = Device::Cpu;
        let meta = vec![self.p as f64, self.c as f64, self.config.joint as u8 as f64, self.range.0 as f64, self.range.1 as f64];
        let dim = self.mean[0].len();
        let g = self.mean.len();
        let mean: Vec<f64> = self.mean.iter().flat_map(|m| m.iter().copied()).collect();
        // Row-major, as `load` reads it.
        let cov: Vec<f64> = self.cov.iter().flat_map(|s| s.transpose().iter().copied().collect::<Vec<_>>()).collect();
        let tensors = HashMap::from([
            ("meta".to_string(), Tensor::from_vec(meta, 5, &dev)?),
            ("mean".to_string(), Tensor::from_vec(mean, (g, dim), &dev)?),
            ("cov".to_string(), Tensor::from_vec(cov, (g, dim, dim), &dev)?),
        ]);
        lumen_core::io::save_safetensors(path, &tensors)
    }
}

lumen_core::submit_sampler!(
    "conditional_gaussian",
    "window values from a patch Gaussian conditioned on the surrounding pixels (Cholesky, per-offset cache)",
    PARAMS,
    |a: &Args, train: &Tensor| Ok(Box::new(ConditionalGaussian::fit(GaussianConfig::from_args(a)?, train)?)),
    |a: &Args, path: &Path| Ok(Box::new(ConditionalGaussian::load(GaussianConfig::from_args(a)?, path)?)),
);
