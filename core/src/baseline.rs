//! Baselines ("reference inputs"): what a feature is set to when it is absent (the
//! perturbation and Shapley family) or where a path starts (Integrated Gradients).
//! One enum and one parameter group, so every method spells them the same way:
//! `baseline=zero|constant|blur|uniform|tensor` with `baseline_value`, `blur_sigma`
//! and `baseline_tensor`.

use crate::method::gaussian_blur;
use crate::model::Classifier;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A baseline input, materialised per example by [`Baseline::materialize`].
#[derive(Debug, Clone)]
pub enum Baseline {
    /// All zeros.
    Zero,
    /// Every feature set to this value.
    Constant(f64),
    /// The input blurred by a Gaussian of this σ (in pixels) over its spatial dims.
    Blur { sigma: f64 },
    /// Uniform noise over the model's input range, from the seed (one draw per example).
    Uniform,
    /// A user tensor: one input (broadcast over the batch) or the whole batch.
    Tensor(Tensor),
}

impl Baseline {
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Zero => "zero",
            Baseline::Constant(_) => "constant",
            Baseline::Blur { .. } => "blur",
            Baseline::Uniform => "uniform",
            Baseline::Tensor(_) => "tensor",
        }
    }

    /// The baseline batch for `xs` (same shape, dtype and device). `seed` and `stream`
    /// draw the `uniform` baseline, per example (see [`example_rngs`]).
    pub fn materialize(&self, model: &dyn Classifier, xs: &Tensor, seed: u64, stream: u64) -> Result<Tensor> {
        Ok(match self {
            Baseline::Zero => xs.zeros_like()?,
            Baseline::Constant(c) => xs.zeros_like()?.affine(0.0, *c)?,
            Baseline::Blur { sigma } => gaussian_blur(xs, *sigma)?,
            Baseline::Uniform => {
                let (lo, hi) = model.info().input_range;
                let (lo, hi) = if hi > lo { (lo, hi) } else { (0.0, 1.0) };
                let d = xs.elem_count() / xs.dim(0)?;
                let mut data = Vec::with_capacity(xs.elem_count());
                for mut rng in example_rngs(xs, seed, stream)? {
                    data.extend((0..d).map(|_| rng.gen_range(lo..hi)));
                }
                Tensor::from_vec(data, xs.shape(), xs.device())?.to_dtype(xs.dtype())?
            }
            Baseline::Tensor(t) => {
                let t = t.to_device(xs.device())?.to_dtype(xs.dtype())?;
                if t.dims() == xs.dims() {
                    t
                } else if t.dims() == &xs.dims()[1..] || (t.rank() == xs.rank() && t.dim(0)? == 1 && t.dims()[1..] == xs.dims()[1..]) {
                    t.reshape(&xs.dims()[1..])?.unsqueeze(0)?.broadcast_as(xs.shape())?.contiguous()?
                } else {
                    return Err(Error::shape(
                        format!("a baseline of shape {:?} or {:?}", &xs.dims()[1..], xs.dims()),
                        format!("{:?}", t.dims()),
                    ));
                }
            }
        })
    }
}

/// One random stream per example, derived from the seed and the example's values
/// (not its position), so an example's draws are the same alone or in any batch.
pub fn example_rngs(xs: &Tensor, seed: u64, stream: u64) -> Result<Vec<StdRng>> {
    let flat = xs.flatten_from(1)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    Ok(flat.iter().map(|row| example_rng(row, seed, stream)).collect())
}

/// The random stream of one example's values (see [`example_rngs`]).
pub fn example_rng(row: &[f32], seed: u64, stream: u64) -> StdRng {
    // FNV-1a over the example's bits, mixed with the seed and stream.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.rotate_left(32);
    for v in row {
        h ^= v.to_bits() as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(h)
}

/// The `baseline` words and the parameters they read (`baseline_value`, `blur_sigma`,
/// `baseline_tensor`): one config field of type `Vec<Baseline>`, four parameters.
/// Use as `#[param(name = "baseline", with = lumen_core::baseline::param)]`.
pub mod param {
    use super::Baseline;
    use crate::config::{leak, Builder};
    use crate::params::{Args, ParamKind, ParamSpec};
    use crate::{Error, Result};
    use candle_core::Device;
    use std::collections::BTreeMap;

    const CONSTANT: f64 = 0.0;
    const BLUR_SIGMA: f64 = 5.0;
    const WORDS: &str = "zero, constant, blur, uniform, tensor";

    fn words(b: &[Baseline]) -> String {
        b.iter().map(|b| b.name()).collect::<Vec<_>>().join(",")
    }

    pub fn specs(name: &'static str, doc: &'static str, default: &[Baseline]) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(name, ParamKind::Str, leak(Some(words(default))), doc),
            ParamSpec::new("baseline_value", ParamKind::Float, leak(Some(CONSTANT.to_string())), "value of the 'constant' baseline"),
            ParamSpec::new("blur_sigma", ParamKind::Float, leak(Some(BLUR_SIGMA.to_string())), "σ (pixels) of the 'blur' baseline's Gaussian"),
            ParamSpec::new(
                "baseline_tensor",
                ParamKind::Tensor,
                "",
                "the 'tensor' baseline (.safetensors or .png): one input, or the whole batch",
            ),
        ]
    }

    pub fn read(a: &Args, name: &'static str, _: &dyn Builder) -> Result<Vec<Baseline>> {
        let bad = |p: &str, r: String| Error::bad_param(a.method(), p, r);
        let user = a.tensor("baseline_tensor", &Device::Cpu)?;
        let words = if !a.is_set(name) && user.is_some() { "tensor".to_string() } else { a.string(name)? };
        let mut baselines = vec![];
        for w in words.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            baselines.push(match w {
                "zero" => Baseline::Zero,
                "constant" => {
                    let v = a.f64("baseline_value")?;
                    if !v.is_finite() {
                        return Err(bad("baseline_value", format!("must be finite, got {v}")));
                    }
                    Baseline::Constant(v)
                }
                "blur" => {
                    let sigma = a.f64("blur_sigma")?;
                    if !(sigma >= 0.0 && sigma <= 1e3) {
                        return Err(bad("blur_sigma", format!("must be in [0, 1000], got {sigma}")));
                    }
                    Baseline::Blur { sigma }
                }
                "uniform" => Baseline::Uniform,
                "tensor" => Baseline::Tensor(
                    user.clone().ok_or_else(|| bad(name, "'tensor' needs baseline_tensor=PATH".into()))?,
                ),
                other => return Err(bad(name, format!("'{other}' is not one of {WORDS}"))),
            });
        }
        if baselines.is_empty() {
            return Err(bad(name, "no baseline given".into()));
        }
        Ok(baselines)
    }

    /// The words, and the value of each word that reads one (a tensor is not recorded).
    pub fn write(b: &[Baseline], name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), words(b));
        for b in b {
            match b {
                Baseline::Constant(v) => {
                    out.insert("baseline_value".into(), v.to_string());
                }
                Baseline::Blur { sigma } => {
                    out.insert("blur_sigma".into(), sigma.to_string());
                }
                _ => {}
            }
        }
    }
}
