//! FullGrad (Srinivas & Fleuret 2019): the input-gradient map plus, for every layer
//! with a bias over spatial maps, the bias-gradient map `|b ⊙ ∂y/∂z|`, each passed
//! through ψ (absolute value, scaling to [0, 1] per image and channel, bilinear
//! upsampling) and summed. All gradients come from one backward pass with the bias
//! layers tapped (core's `method::layer_gradients`).
//!
//! Layers: conv (1-D and 2-D) with a bias, and batch norm (its bias `β − μ·γ/√(σ²+ε)`),
//! as pytorch-grad-cam takes them; ψ's scaling is `(x − min) / (1e-7 + max)`, also
//! its, and it scales before upsampling.

use crate::cam::{over_input, spatial, upsample};
use lumen_core::candle::{DType, Tensor};
use lumen_core::method::{chunks, layer_gradients, prepare, Batched};
use lumen_core::model::{ForwardOptions, LayerKind};
use lumen_core::{Attributor, Classifier, Error, Explanation, Method, Result, Target};

/// Configuration of [`FullGrad`]: `batch_size`, examples per backward pass.
pub type FullGradConfig = Batched;

/// ψ's ε (pytorch-grad-cam's).
const SCALE_EPS: f64 = 1e-7;

#[derive(Debug, Clone, Default)]
pub struct FullGrad {
    pub config: FullGradConfig,
}

/// ψ of `[n, C, h, w]` maps: each channel scaled to [0, 1], upsampled to `size`,
/// summed over channels: `[n, H, W]`.
fn psi(m: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let (n, c) = (m.dim(0)?, m.dim(1)?);
    let flat = m.abs()?.flatten_from(2)?; // [n, C, N]
    let lo = flat.min_keepdim(2)?;
    let shifted = flat.broadcast_sub(&lo)?;
    let scaled = shifted.broadcast_div(&shifted.max_keepdim(2)?.affine(1.0, SCALE_EPS)?)?;
    let (h, w) = spatial(m.dims()).ok_or_else(|| Error::msg("internal: FullGrad on non-spatial maps"))?;
    Ok(upsample(&scaled.reshape((n * c, h, w))?, size, false)?.reshape((n, c, size.0, size.1))?.sum(1)?)
}

impl Method for FullGrad {
    const NAME: &'static str = "full_grad";
    const SUMMARY: &'static str = "FullGrad: the input-gradient map plus every conv and batch-norm layer's bias-gradient map";
    type Config = FullGradConfig;
    const PROPS: lumen_core::MethodProps = crate::methods::PROPS;
    fn new(config: FullGradConfig) -> Result<Self> {
        Ok(FullGrad { config })
    }
    fn config(&self) -> &FullGradConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let net = model.network().ok_or_else(|| {
            Error::msg(format!("full_grad needs a model built from the explainable layer vocabulary; '{}' is not", model.info().name))
        })?;
        let Some(size) = spatial(inputs.dims()) else {
            return Err(Error::msg(format!("full_grad needs inputs with spatial dimensions, got {:?}", inputs.dims())));
        };
        // (layer, its bias over channels)
        let mut biased = vec![];
        for n in net.nodes() {
            let bias = match &n.kind {
                LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. } => n.bias.clone(),
                LayerKind::BatchNorm { eps, .. } => Some(n.batch_norm_affine(*eps)?.1),
                _ => None,
            };
            if let Some(b) = bias {
                biased.push((n.name.clone(), b));
            }
        }
        let names: Vec<String> = biased.iter().map(|(n, _)| n.clone()).collect();
        let mut maps = vec![];
        for r in chunks(inputs.dim(0)?, self.config.batch_size) {
            let x = inputs.narrow(0, r.start, r.len())?;
            let (input, layers) = layer_gradients(model, &x, &target.select(r), &names, ForwardOptions::default())?;
            let f64_ = |t: &Tensor| t.to_dtype(DType::F64);
            let mut total = psi(&(f64_(&input.grad)? * f64_(&x)?)?, size)?;
            for ((_, b), lg) in biased.iter().zip(&layers) {
                let g = f64_(&lg.grad)?;
                let mut bshape = vec![1, b.dim(0)?];
                bshape.extend(std::iter::repeat_n(1, g.rank() - 2));
                total = (total + psi(&g.broadcast_mul(&f64_(b)?.reshape(bshape.as_slice())?)?, size)?)?;
            }
            maps.push(total);
        }
        Ok(Explanation::new(Self::NAME, over_input(&Tensor::cat(&maps, 0)?, inputs)?, target)
            .with_params(self.params())
            .with_diag("layers", names.join(",")))
    }
}

lumen_core::submit_method!(FullGrad);
