//! `abs_input_x_gradient`: the magnitude of input × gradient (Shrikumar et al.),
//! optionally averaged over noisy copies of the input as in SmoothGrad, and capped at
//! a percentile of each map (SmoothGrad §3.1 caps outliers at the 99th percentile)
//! then scaled to [0, 1].
//!
//! For one example x and target class t, with n copies x_s = x + ε_s,
//! ε_s ~ N(0, (σ·(hi − lo))²):
//!   m = (1/n) Σ_s |x_s ⊙ ∇f_t(x_s)|,   c = P_p(m),   a = min(m, c) / c
//! where P_p is the nearest-rank p-th percentile over the example's elements.
//! The noisy copies are a `Var` that this pack creates and the host's model consumes:
//! the reason packs must share the host's candle.

use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, prepare, repeat_each};
use lumen_core::model::ForwardOptions;
use lumen_core::{Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// The method and its parameters in one: each field is a parameter, its doc comment
/// is what `lumen list` shows, and `Default` gives the defaults.
#[derive(Debug, Clone, Config)]
pub struct AbsInputXGradient {
    /// cap each map at this percentile, then scale to [0, 1]
    pub percentile: f64,
    /// noisy copies per example
    #[param(positive, max = 10_000)]
    pub n: usize,
    /// noise std as a fraction of the input range
    pub sigma: f64,
    /// seed of the noise
    pub seed: u64,
    /// copies per backward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for AbsInputXGradient {
    fn default() -> Self {
        AbsInputXGradient { percentile: 99.0, n: 1, sigma: 0.0, seed: 0, batch_size: 64 }
    }
}

impl Method for AbsInputXGradient {
    const NAME: &'static str = "abs_input_x_gradient";
    const SUMMARY: &'static str =
        "|input × gradient|, averaged over noisy copies, capped at a percentile (template pack)";
    type Config = Self;

    fn props_of(c: &Self) -> MethodProps {
        MethodProps { multiplies_input: true, stochastic: c.sigma > 0.0, ..MethodProps::NONE }
    }

    /// Checks what the types cannot say.
    fn new(c: Self) -> Result<Self> {
        if !(c.percentile > 0.0 && c.percentile <= 100.0) {
            return Err(Error::bad_param(Self::NAME, "percentile", format!("must be in (0, 100], got {}", c.percentile)));
        }
        if !(c.sigma >= 0.0 && c.sigma.is_finite()) {
            return Err(Error::bad_param(Self::NAME, "sigma", format!("must be a finite number ≥ 0, got {}", c.sigma)));
        }
        if c.n == 0 || c.batch_size == 0 {
            return Err(Error::bad_param(Self::NAME, if c.n == 0 { "n" } else { "batch_size" }, "must be at least 1"));
        }
        Ok(c)
    }

    fn config(&self) -> &Self {
        self
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let m = self.magnitude(model, inputs, &target)?;
        let a = cap(&m, self.percentile)?;
        let mut e = Explanation::new(Self::NAME, a, target).with_params(self.to_params());
        if self.sigma > 0.0 {
            e.seed = Some(self.seed);
        }
        Ok(e)
    }
}

lumen_core::submit_method!(AbsInputXGradient);

impl AbsInputXGradient {
    /// `m = mean_s |x_s ⊙ ∇f(x_s)|`, `[B, ...]`, before the percentile cap.
    pub fn magnitude(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Tensor> {
        let (lo, hi) = model.info().input_range;
        let std = self.sigma * (hi - lo) as f64;
        let normal = Normal::new(0f64, std).map_err(|e| Error::bad_param(Self::NAME, "sigma", e.to_string()))?;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let (b, n) = (inputs.dim(0)?, self.n);
        let mut parts = vec![];
        for r in chunks(b, (self.batch_size / n).max(1)) {
            let x = repeat_each(&inputs.narrow(0, r.start, r.len())?, n)?;
            let x = if std > 0.0 {
                let noise: Vec<f32> = (0..x.elem_count()).map(|_| normal.sample(&mut rng) as f32).collect();
                (&x + Tensor::from_vec(noise, x.shape(), x.device())?)?
            } else {
                x
            };
            // The noisy copies become a `Var` here, in the pack; the model's weights
            // were created by the host.
            let t = target.select(r.clone()).repeat_each(n);
            let g = gradient(model, &x, &t, ForwardOptions::default())?.grad;
            let m = (x * g)?.abs()?;
            let mut shape = inputs.dims().to_vec();
            shape[0] = r.len();
            let per: usize = shape[1..].iter().product();
            parts.push(m.reshape((r.len(), n, per))?.mean(1)?.reshape(shape)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

/// Nearest-rank percentile of `v` (not empty): the smallest value with at least p% of
/// the values at or below it.
pub fn percentile(v: &[f32], p: f64) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Caps every example of `m` at its p-th percentile and scales it to [0, 1].
pub fn cap(m: &Tensor, p: f64) -> Result<Tensor> {
    let b = m.dim(0)?;
    let rows = m.flatten_from(1)?.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(m.elem_count());
    for row in &rows {
        let c = percentile(row, p);
        out.extend(row.iter().map(|&v| if c > 0.0 { v.min(c) / c } else { 0.0 }));
    }
    debug_assert_eq!(rows.len(), b);
    Ok(Tensor::from_vec(out, m.shape(), m.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::{DType, Device};
    use lumen_core::Attributor;
    use lumen_core::candle_nn::VarBuilder;
    use lumen_core::model::{LayerKind, LayerSpec, ModelInfo, Network, NetworkModel};
    use std::collections::HashMap;

    /// y = W2 relu(W1 x + b1), the network of the saliency pack's test.
    fn tiny() -> NetworkModel {
        let d = Device::Cpu;
        let specs = vec![
            LayerSpec::new("fc1", LayerKind::Linear { in_features: 3, out_features: 2, bias: true }),
            LayerSpec::new("relu", LayerKind::Relu),
            LayerSpec::new("fc2", LayerKind::Linear { in_features: 2, out_features: 2, bias: false }),
        ];
        let mut m = HashMap::new();
        m.insert("fc1.weight".into(), Tensor::new(&[[1f32, -2., 0.5], [-1., 1., 1.]], &d).unwrap());
        m.insert("fc1.bias".into(), Tensor::new(&[0.1f32, -0.2], &d).unwrap());
        m.insert("fc2.weight".into(), Tensor::new(&[[2f32, -1.], [0.5, 3.]], &d).unwrap());
        let net = Network::from_spec(&specs, VarBuilder::from_tensors(m, DType::F32, &d)).unwrap();
        let info = ModelInfo {
            name: "tiny".into(),
            input_shape: vec![3],
            labels: vec!["a".into(), "b".into()],
            input_range: (0.0, 1.0),
            card: None,
        };
        NetworkModel::new(info, net, &d).unwrap()
    }

    #[test]
    fn matches_hand_derived_values() {
        let model = tiny();
        // x = (1, 0.2, 0.4): only hidden unit 0 is active, so ∇y0 = 2·(1, −2, 0.5)
        // = (2, −4, 1) and |x ⊙ ∇y0| = (2, 0.8, 0.4). With p = 100 the cap is the
        // maximum, 2: a = (1, 0.4, 0.2). With p = 50 (nearest rank: 2nd of 3 sorted
        // values 0.4, 0.8, 2) the cap is 0.8: a = (1, 1, 0.5).
        let x = Tensor::new(&[[1f32, 0.2, 0.4]], &Device::Cpu).unwrap();
        let m = AbsInputXGradient::new(AbsInputXGradient { percentile: 100.0, ..Default::default() }).unwrap();
        let a = m.attribute(&model, &x, &Target::Class(0)).unwrap().attribution().to_vec2::<f32>().unwrap();
        for (got, want) in a[0].iter().zip([1.0, 0.4, 0.2]) {
            assert!((got - want).abs() < 1e-6, "{a:?}");
        }
        let m = AbsInputXGradient::new(AbsInputXGradient { percentile: 50.0, ..Default::default() }).unwrap();
        let a = m.attribute(&model, &x, &Target::Class(0)).unwrap().attribution().to_vec2::<f32>().unwrap();
        for (got, want) in a[0].iter().zip([1.0, 1.0, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{a:?}");
        }
    }

    /// With noise, compare against a naive loop: one copy at a time, the same noise
    /// stream, finite-difference-free because the network is piecewise linear.
    #[test]
    fn noisy_average_matches_a_naive_loop() {
        let model = tiny();
        let d = Device::Cpu;
        let x = Tensor::new(&[[1f32, 0.2, 0.4], [0.3, 0.9, 0.1]], &d).unwrap();
        let cfg = AbsInputXGradient { percentile: 100.0, n: 5, sigma: 0.2, seed: 7, batch_size: 5 };
        let m = AbsInputXGradient::new(cfg.clone()).unwrap();
        let got = m.magnitude(&model, &x, &Target::Classes(vec![0, 1])).unwrap().to_vec2::<f32>().unwrap();
        // batch_size 5 with n = 5: one example per chunk, noise drawn in order.
        let normal = Normal::new(0f64, 0.2).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let xs = x.to_vec2::<f32>().unwrap();
        for (b, class) in [(0usize, 0usize), (1, 1)] {
            let mut acc = [0f32; 3];
            for _ in 0..5 {
                let xn: Vec<f32> = xs[b].iter().map(|v| v + normal.sample(&mut rng) as f32).collect();
                let xt = Tensor::new(&[[xn[0], xn[1], xn[2]]], &d).unwrap();
                let g = lumen_core::method::gradient(&model, &xt, &Target::Classes(vec![class]), ForwardOptions::default())
                    .unwrap()
                    .grad
                    .to_vec2::<f32>()
                    .unwrap();
                for i in 0..3 {
                    acc[i] += (xn[i] * g[0][i]).abs() / 5.0;
                }
            }
            for i in 0..3 {
                assert!((got[b][i] - acc[i]).abs() < 1e-5, "example {b}: {:?} vs {acc:?}", got[b]);
            }
        }
        // same seed, same answer; another seed, another answer
        let again = m.magnitude(&model, &x, &Target::Classes(vec![0, 1])).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, again);
        let other = AbsInputXGradient::new(AbsInputXGradient { seed: 8, ..cfg }).unwrap();
        let o = other.magnitude(&model, &x, &Target::Classes(vec![0, 1])).unwrap().to_vec2::<f32>().unwrap();
        assert_ne!(got, o);
    }

    #[test]
    fn percentile_is_nearest_rank_and_bad_parameters_are_named() {
        let v = [5f32, 1., 4., 2., 3.];
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&v, 60.0), 3.0);
        assert_eq!(percentile(&v, 61.0), 4.0);
        assert_eq!(percentile(&v, 0.1), 1.0);
        let e = AbsInputXGradient::new(AbsInputXGradient { percentile: 0.0, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("percentile"), "{e}");
        let e = AbsInputXGradient::new(AbsInputXGradient { sigma: -1.0, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("sigma"), "{e}");
        // an all-zero map stays zero instead of dividing by zero
        let z = cap(&Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap(), 99.0).unwrap();
        assert_eq!(z.to_vec2::<f32>().unwrap(), vec![vec![0f32; 4]]);
    }
}
