//! A small convolutional VAE for 28×28 digits (Kingma & Welling). The decoder is
//! the generator `G`; the encoder's mean gives CDeepEx a starting latent for
//! inversion.
//!
//! Encoder: conv1 1→32 4×4 s2 p1 (28→14), ReLU; conv2 32→64 4×4 s2 p1 (14→7),
//! ReLU; fc 3136→256, ReLU; mu, logvar 256→d.
//! Decoder: fc1 d→256, ReLU; fc2 256→3136, ReLU, reshape 64×7×7; nearest ×2,
//! conv3 64→32 3×3 p1, ReLU; nearest ×2, conv4 32→1 3×3 p1, sigmoid.
//! Upsample + conv instead of transposed convolutions: the CPU conv2d goes through
//! im2col + GEMM and is much faster than candle's transposed-conv loop.

use lumen_core::candle::{DType, Device, Tensor, Var, D};
use lumen_core::generator::Generator;
use lumen_core::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// Shape of every parameter, by PyTorch-style name.
pub fn param_shapes(latent: usize) -> Vec<(String, Vec<usize>)> {
    let v = |n: &str, s: &[usize]| (n.to_string(), s.to_vec());
    vec![
        v("enc.conv1.weight", &[32, 1, 4, 4]),
        v("enc.conv1.bias", &[32]),
        v("enc.conv2.weight", &[64, 32, 4, 4]),
        v("enc.conv2.bias", &[64]),
        v("enc.fc.weight", &[256, 3136]),
        v("enc.fc.bias", &[256]),
        v("enc.mu.weight", &[latent, 256]),
        v("enc.mu.bias", &[latent]),
        v("enc.logvar.weight", &[latent, 256]),
        v("enc.logvar.bias", &[latent]),
        v("dec.fc1.weight", &[256, latent]),
        v("dec.fc1.bias", &[256]),
        v("dec.fc2.weight", &[3136, 256]),
        v("dec.fc2.bias", &[3136]),
        v("dec.conv3.weight", &[32, 64, 3, 3]),
        v("dec.conv3.bias", &[32]),
        v("dec.conv4.weight", &[1, 32, 3, 3]),
        v("dec.conv4.bias", &[1]),
    ]
}

/// The VAE's computation over a set of named parameter tensors (plain tensors for
/// inference, `Var`s for training).
#[derive(Debug, Clone)]
pub struct Vae {
    pub latent: usize,
    pub params: HashMap<String, Tensor>,
}

// lumen's kernels, not candle's ops: CDeepEx and xGEMs differentiate the decoder
// in z thousands of times, and candle's backward also forms every weight gradient
// and takes the conv input gradient through a direct loop (this was most of their
// time). Weight gradients still flow when the weights are tracked (training).
fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    lumen_core::kernels::linear(x, w, Some(b))
}

fn conv(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let p = lumen_core::kernels::ConvParams { stride: (stride, stride), padding: (pad, pad) };
    lumen_core::kernels::conv2d(x, w, Some(b), p)
}

fn relu(x: &Tensor) -> Result<Tensor> {
    lumen_core::kernels::relu(x)
}

impl Vae {
    /// Checks that every parameter is present with the right shape.
    pub fn new(latent: usize, params: HashMap<String, Tensor>) -> Result<Self> {
        for (name, shape) in param_shapes(latent) {
            match params.get(&name) {
                None => return Err(Error::msg(format!("VAE: missing parameter '{name}'"))),
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(Error::shape(format!("{name} {shape:?}"), format!("{:?}", t.dims())))
                }
                Some(_) => {}
            }
        }
        Ok(Vae { latent, params })
    }

    /// Fresh trainable parameters, initialised from `seed` on the host (He-uniform
    /// weights, zero biases) so that training is reproducible.
    pub fn init_vars(latent: usize, seed: u64, device: &Device) -> Result<(Vae, Vec<Var>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = HashMap::new();
        let mut vars = vec![];
        for (name, shape) in param_shapes(latent) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let bound = (6.0 / fan_in as f64).sqrt() as f32;
                // The logvar head starts small so early KL terms stay finite.
                let bound = if name.starts_with("enc.logvar") { bound * 0.1 } else { bound };
                (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
            };
            let var = Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?;
            params.insert(name, var.as_tensor().clone());
            vars.push(var);
        }
        Ok((Vae::new(latent, params)?, vars))
    }

    fn p(&self, name: &str) -> &Tensor {
        // Presence is checked in `new`.
        &self.params[name]
    }

    /// `[B, 1, 28, 28] -> (mu, logvar)`, each `[B, d]`.
    pub fn encode_dist(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = relu(&conv(x, self.p("enc.conv1.weight"), self.p("enc.conv1.bias"), 1, 2)?)?;
        let h = relu(&conv(&h, self.p("enc.conv2.weight"), self.p("enc.conv2.bias"), 1, 2)?)?;
        let h = h.flatten_from(1)?;
        let h = relu(&linear(&h, self.p("enc.fc.weight"), self.p("enc.fc.bias"))?)?;
        let mu = linear(&h, self.p("enc.mu.weight"), self.p("enc.mu.bias"))?;
        let logvar = linear(&h, self.p("enc.logvar.weight"), self.p("enc.logvar.bias"))?;
        Ok((mu, logvar))
    }

    /// Decoder logits `[B, 1, 28, 28]` (before the sigmoid).
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let h = relu(&linear(z, self.p("dec.fc1.weight"), self.p("dec.fc1.bias"))?)?;
        let h = relu(&linear(&h, self.p("dec.fc2.weight"), self.p("dec.fc2.bias"))?)?;
        let h = h.reshape((b, 64, 7, 7))?.upsample_nearest2d(14, 14)?;
        let h = relu(&conv(&h, self.p("dec.conv3.weight"), self.p("dec.conv3.bias"), 1, 1)?)?;
        let h = h.upsample_nearest2d(28, 28)?;
        conv(&h, self.p("dec.conv4.weight"), self.p("dec.conv4.bias"), 1, 1)
    }

    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(candle_sigmoid(&self.decode_logits(z)?)?)
    }

    /// The negative ELBO per example, averaged over the batch: Bernoulli
    /// reconstruction (binary cross-entropy on logits, summed over pixels) plus
    /// `beta` × KL(q(z|x) ‖ N(0, I)). `eps` is `[B, d]` standard normal noise.
    pub fn loss(&self, x: &Tensor, eps: &Tensor, beta: f64) -> Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.encode_dist(x)?;
        let z = (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?;
        let logits = self.decode_logits(&z)?;
        let b = x.dim(0)? as f64;
        // BCE with logits, stable form: max(l, 0) − l·x + log(1 + exp(−|l|)).
        let bce = (logits.relu()? - (&logits * x)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
        let rec = (bce?.sum_all()? / b)?;
        let kl = ((mu.sqr()? + logvar.exp()? - &logvar)? - 1.0)?;
        let kl = ((kl.sum_all()? * 0.5)? / b)?;
        let total = (&rec + (&kl * beta)?)?;
        Ok((total, rec, kl))
    }
}

fn candle_sigmoid(x: &Tensor) -> lumen_core::candle::Result<Tensor> {
    // 1 / (1 + exp(−x)); differentiable with the core ops.
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The decoder as a [`Generator`].
#[derive(Debug, Clone)]
pub struct VaeGenerator {
    pub name: String,
    pub vae: Vae,
    shape: [usize; 3],
}

impl VaeGenerator {
    pub fn new(name: impl Into<String>, vae: Vae) -> Self {
        VaeGenerator { name: name.into(), vae, shape: [1, 28, 28] }
    }

    /// Loads weights saved by training (safetensors with the names of
    /// [`param_shapes`]); the latent size is read from the weights.
    pub fn load(name: &str, path: &std::path::Path, device: &Device) -> Result<Self> {
        let params = lumen_core::model::load_safetensors(path, device)?;
        let latent = params
            .get("enc.mu.weight")
            .map(|t| t.dim(0))
            .transpose()?
            .ok_or_else(|| Error::Weights { path: path.into(), reason: "no 'enc.mu.weight'".into() })?;
        let vae = Vae::new(latent, params).map_err(|e| Error::Weights { path: path.into(), reason: e.to_string() })?;
        Ok(VaeGenerator::new(name, vae))
    }
}

impl Generator for VaeGenerator {
    fn name(&self) -> &str {
        &self.name
    }
    fn latent_dim(&self) -> usize {
        self.vae.latent
    }
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        if z.rank() != 2 || z.dim(1)? != self.vae.latent {
            return Err(Error::shape(format!("[batch, {}]", self.vae.latent), format!("{:?}", z.dims())));
        }
        let z = if z.dtype() == DType::F32 { z.clone() } else { z.to_dtype(DType::F32)? };
        self.vae.decode(&z)
    }
    fn encode(&self, x: &Tensor) -> Option<Result<Tensor>> {
        Some((|| {
            if x.rank() != 4 || x.dims()[1..] != self.shape {
                return Err(Error::shape("[batch, 1, 28, 28]", format!("{:?}", x.dims())));
            }
            Ok(self.vae.encode_dist(x)?.0)
        })())
    }
}

/// Standard normal noise `[n, d]` from a seeded host rng.
pub fn normal(rng: &mut StdRng, n: usize, d: usize, device: &Device) -> Result<Tensor> {
    use rand_distr::{Distribution, StandardNormal};
    let v: Vec<f32> = (0..n * d).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, (n, d), device)?)
}

/// Mean over the last dimension, kept for callers that report per-example values.
pub fn per_example_mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.flatten_from(1)?.mean(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss matches a naive per-pixel computation, and the shapes are right.
    #[test]
    fn loss_matches_naive_formula() {
        let d = Device::Cpu;
        let (vae, _) = Vae::init_vars(3, 7, &d).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f32> = (0..2 * 784).map(|_| rng.gen_range(0.0..1.0)).collect();
        let x = Tensor::from_vec(x, (2, 1, 28, 28), &d).unwrap();
        let eps = normal(&mut rng, 2, 3, &d).unwrap();
        let (total, rec, kl) = vae.loss(&x, &eps, 1.0).unwrap();
        let (mu, lv) = vae.encode_dist(&x).unwrap();
        let z = (&mu + (&eps * (&lv * 0.5).unwrap().exp().unwrap()).unwrap()).unwrap();
        let p = vae.decode(&z).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let naive_rec: f64 = p
            .iter()
            .zip(&xv)
            .map(|(p, x)| -((*x as f64) * (*p as f64).ln() + (1.0 - *x as f64) * (1.0 - *p as f64).ln()))
            .sum::<f64>()
            / 2.0;
        let mu = mu.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lv = lv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let naive_kl: f64 = mu
            .iter()
            .zip(&lv)
            .map(|(m, l)| 0.5 * ((*m as f64).powi(2) + (*l as f64).exp() - *l as f64 - 1.0))
            .sum::<f64>()
            / 2.0;
        let rec = rec.to_scalar::<f32>().unwrap() as f64;
        let kl = kl.to_scalar::<f32>().unwrap() as f64;
        assert!((rec - naive_rec).abs() / naive_rec < 1e-4, "{rec} vs {naive_rec}");
        assert!((kl - naive_kl).abs() < 1e-4 * (1.0 + naive_kl), "{kl} vs {naive_kl}");
        assert!((total.to_scalar::<f32>().unwrap() as f64 - rec - kl).abs() < 1e-2);
        let g = VaeGenerator::new("t", vae);
        assert_eq!(g.generate(&Tensor::zeros((4, 3), DType::F32, &d).unwrap()).unwrap().dims(), &[4, 1, 28, 28]);
        assert!(g.generate(&Tensor::zeros((4, 5), DType::F32, &d).unwrap()).is_err());
    }
}
