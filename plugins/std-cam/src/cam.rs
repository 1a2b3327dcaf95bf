//! What every gradient CAM shares: the layer, its activations `A` and gradient
//! `G = ∂y/∂A` for the target, a weighting of the channels, and the upsampling.
//!
//! Conventions (those of pytorch-grad-cam, which the tests compare against):
//! - the CAM at the layer is `Σ_c` of the weighted maps, then (with `relu=true`, the
//!   papers' choice) its positive part;
//! - it is upsampled to the input's spatial size by bilinear interpolation with
//!   half-pixel centres and the edge clamped (`align_corners=False` in torch,
//!   `cv2.INTER_LINEAR`), and repeated over the input's channels;
//! - lumen keeps the CAM's own scale: pytorch-grad-cam's output is the same map
//!   min-max scaled to [0, 1] per image (scaling and bilinear resizing commute).
//!
//! The CAM at the layer's resolution is the explanation's second tensor, `cam`.
//! `A` and `G` come from core's `method::layer_gradient`, whose backward stops at the
//! layer.

use lumen_core::candle::{DType, Tensor};
use lumen_core::method::{chunks, layer_gradient, objective_with_layer, per_chunk, prepare, resolve_layer};
use lumen_core::model::{ForwardOptions, Taps};
use lumen_core::target::objective;
use lumen_core::{Classifier, Error, Explanation, Result, Target};

/// Configuration shared by the gradient CAMs.
#[derive(Debug, Clone, lumen_core::Config)]
pub struct CamConfig {
    /// the layer whose maps are weighted (default: the last layer with spatial output)
    pub layer: Option<String>,
    /// keep only the positive part of the CAM at the layer, as the papers do
    pub relu: bool,
    /// reduce the weighted maps by their first principal component instead of their sum
    pub eigen_smooth: bool,
    /// average over mirrored and rescaled copies of the input (each map scaled to [0, 1])
    pub aug_smooth: bool,
    /// examples per backward pass (Score-CAM and Ablation-CAM: masked or ablated copies per forward pass)
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for CamConfig {
    fn default() -> Self {
        CamConfig { layer: None, relu: true, eigen_smooth: false, aug_smooth: false, batch_size: 64 }
    }
}

/// What a CAM weights a layer's maps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of the gradient weightings.
    Gradient(Weighting),
    /// Eigen-CAM (Muhammad & Yeasin 2020): the maps' first principal component;
    /// EigenGrad-CAM: that of `G ⊙ A`. Always a projection (`eigen_smooth` is moot).
    Eigen { of_gradient: bool },
    /// Score-CAM (Wang et al. 2020): `w = softmax_c(y(x ⊙ s(up(A_c))))`, where `up` is
    /// bilinear with the corners aligned (the reference implementation's
    /// `UpsamplingBilinear2d`) and `s` scales each mask to [0, 1].
    Score,
    /// Ablation-CAM (Desai & Ramaswamy 2020): `w_c = (y − y_c) / y`, where `y_c` is
    /// the objective with channel `c` of the layer set to zero.
    Ablation,
}

impl Kind {
    fn needs_gradient(self) -> bool {
        matches!(self, Kind::Gradient(_) | Kind::Eigen { of_gradient: true })
    }
}

/// How the channels of `A` are weighted by `G` (all sums over the spatial positions
/// `ij` of one channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// Grad-CAM (Selvaraju et al. 2017): `w_c = mean_ij G`, CAM `Σ_c w_c A_c`.
    GradCam,
    /// Grad-CAM++ (Chattopadhay et al. 2018), with the exponential closed form:
    /// `α = G² / (2G² + Σ_ij A · G³ + ε)` (0 where `G = 0`), `w_c = Σ_ij α relu(G)`.
    GradCamPlusPlus,
    /// HiResCAM (Draelos & Carin 2020): `Σ_c G ⊙ A`, element-wise.
    HiResCam,
    /// XGrad-CAM (Fu et al. 2020): `w_c = Σ_ij G A / (Σ_ij A + ε)`.
    XGradCam,
    /// LayerCAM (Jiang et al. 2021): `Σ_c relu(G) ⊙ A`, element-wise.
    LayerCam,
}

/// Grad-CAM++'s ε in the denominator (pytorch-grad-cam's value).
const PLUS_PLUS_EPS: f64 = 1e-6;
/// XGrad-CAM's ε (pytorch-grad-cam's value).
const XGRAD_EPS: f64 = 1e-7;

impl Weighting {
    /// The weighted maps `[B, C, N]` from activations and gradients flattened to
    /// `[B, C, N]`; the CAM is their sum over `C` (or, with `eigen_smooth`, their first
    /// principal component).
    pub fn weighted_maps(self, a: &Tensor, g: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weighting::GradCam => a.broadcast_mul(&g.mean_keepdim(2)?)?,
            Weighting::GradCamPlusPlus => {
                let g2 = g.sqr()?;
                let g3 = (&g2 * g)?;
                let s = a.sum_keepdim(2)?;
                let denom = ((&g2 * 2.0)? + g3.broadcast_mul(&s)?)?.affine(1.0, PLUS_PLUS_EPS)?;
                let alpha = (&g2 / denom)?;
                let alpha = g.ne(0.0)?.where_cond(&alpha, &alpha.zeros_like()?)?;
                a.broadcast_mul(&(alpha * g.relu()?)?.sum_keepdim(2)?)?
            }
            Weighting::HiResCam => (g * a)?,
            Weighting::XGradCam => {
                let s = a.sum_keepdim(2)?.affine(1.0, XGRAD_EPS)?;
                a.broadcast_mul(&(g * a)?.sum_keepdim(2)?.broadcast_div(&s)?)?
            }
            Weighting::LayerCam => (g.relu()? * a)?,
        })
    }

    /// The CAM `[B, N]`: the weighted maps summed over channels.
    pub fn combine(self, a: &Tensor, g: &Tensor) -> Result<Tensor> {
        Ok(self.weighted_maps(a, g)?.sum(1)?)
    }
}

/// Each example's maps `[B, C, N]` projected on their first principal component
/// (over the `N` positions, channels centred), `[B, N]`. A component's sign is
/// arbitrary; lumen's convention: the projection's largest magnitude is positive.
pub fn principal_projection(maps: &Tensor) -> Result<Tensor> {
    let (b, c, n) = maps.dims3()?;
    let v = maps.to_dtype(DType::F64)?.to_vec3::<f64>()?;
    let mut out = Vec::with_capacity(b * n);
    for m in &v {
        // x[p][k] = maps[k][p] − mean_p maps[k]
        let x = nalgebra::DMatrix::from_fn(n, c, |p, k| m[k][p] - m[k].iter().sum::<f64>() / n as f64);
        let eig = nalgebra::SymmetricEigen::new(x.transpose() * &x);
        let top = eig.eigenvalues.iamax();
        let proj = &x * eig.eigenvectors.column(top);
        let (lo, hi) = proj.iter().fold((0f64, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let sign = if -lo > hi { -1.0 } else { 1.0 };
        out.extend(proj.iter().map(|v| v * sign));
    }
    Ok(Tensor::from_vec(out, (b, n), maps.device())?.to_dtype(maps.dtype())?)
}

/// The `[out, inp]` matrix of 1-D linear interpolation: with half-pixel centres and
/// the edge clamped (torch's `align_corners=False`, OpenCV's `INTER_LINEAR`), or with
/// the corner samples aligned (`align_corners=True`).
pub fn interpolation_matrix(out: usize, inp: usize, align_corners: bool) -> Vec<f64> {
    let mut m = vec![0.0; out * inp];
    for d in 0..out {
        let src = if align_corners {
            if out > 1 { d as f64 * (inp - 1) as f64 / (out - 1) as f64 } else { 0.0 }
        } else {
            ((d as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let l = if i0 == inp - 1 { 0.0 } else { src - i0 as f64 };
        m[d * inp + i0] += 1.0 - l;
        m[d * inp + i1] += l;
    }
    m
}

/// Bilinear upsampling of `[B, h, w]` maps to `[B, H, W]` (two small matrix
/// products, so it runs on the maps' device).
pub fn upsample(cam: &Tensor, (oh, ow): (usize, usize), align_corners: bool) -> Result<Tensor> {
    let (b, h, w) = cam.dims3()?;
    let dev = cam.device();
    let mat = |o, i| -> Result<Tensor> {
        Ok(Tensor::from_vec(interpolation_matrix(o, i, align_corners), (o, i), dev)?.to_dtype(cam.dtype())?)
    };
    let (ry, rx) = (mat(oh, h)?, mat(ow, w)?);
    let t = cam.broadcast_matmul(&rx.t()?)?; // [B, h, W]
    Ok(ry.broadcast_left(b)?.contiguous()?.matmul(&t.contiguous()?)?)
}

/// Spatial size `(H, W)` of `[B, C, H, W]` or `(1, L)` of `[B, C, L]`.
pub(crate) fn spatial(dims: &[usize]) -> Option<(usize, usize)> {
    match dims.len() {
        3 => Some((1, dims[2])),
        4 => Some((dims[2], dims[3])),
        _ => None,
    }
}

/// The layer's activations for a chunk (and their gradient when `kind` needs it).
fn activations(kind: Kind, model: &dyn Classifier, x: &Tensor, target: &Target, layer: &str) -> Result<(Tensor, Option<Tensor>)> {
    if kind.needs_gradient() {
        let lg = layer_gradient(model, x, target, layer, None, ForwardOptions::default())?;
        return Ok((lg.activation, Some(lg.grad)));
    }
    let opts = ForwardOptions { taps: Taps::Names(vec![layer.to_string()]), stop_after: Some(layer.to_string()), ..Default::default() };
    Ok((model.forward_with(x, &opts)?.tap(layer)?.detach(), None))
}

/// The objective for `copies` `[K, ...]` of one example, `batch_size` at a time;
/// `replace` gives the layer's replacement rows for each chunk (Ablation-CAM).
fn scores(
    model: &dyn Classifier,
    copies: &Tensor,
    target: &Target,
    batch_size: usize,
    layer: Option<(&str, &Tensor)>,
) -> Result<Tensor> {
    per_chunk(copies, batch_size, |r, x| {
        let t = target.repeat_each(r.len());
        match layer {
            Some((name, rep)) => objective_with_layer(model, x, &t, name, &rep.narrow(0, r.start, r.len())?, ForwardOptions::default()),
            None => Ok(objective(model, x, &t, ForwardOptions::default())?.0.detach()),
        }
    })
}

/// Score-CAM's and Ablation-CAM's channel weights `[n, C, 1]` for a chunk, from
/// one forward pass per channel and example.
fn perturbation_weights(
    kind: Kind,
    model: &dyn Classifier,
    x: &Tensor,
    target: &Target,
    layer: &str,
    a: &Tensor,
    batch_size: usize,
) -> Result<Tensor> {
    let (n, c) = (a.dim(0)?, a.dim(1)?);
    let mut rows = Vec::with_capacity(n);
    let y = if kind == Kind::Ablation { Some(objective(model, x, target, ForwardOptions::default())?.0.detach()) } else { None };
    for b in 0..n {
        let xb = x.narrow(0, b, 1)?;
        let mut shape = x.dims().to_vec();
        shape[0] = c;
        let copies = xb.broadcast_as(shape.as_slice())?.contiguous()?;
        let tb = target.select(b..b + 1);
        let ab = a.narrow(0, b, 1)?; // [1, C, ...]
        let w = if kind == Kind::Score {
            let size = spatial(x.dims()).ok_or_else(|| Error::msg("internal: Score-CAM on non-spatial input"))?;
            let (h, w) = spatial(a.dims()).ok_or_else(|| Error::msg("internal: Score-CAM on a non-spatial layer"))?;
            let up = upsample(&ab.reshape((c, h, w))?, size, true)?.flatten_from(1)?; // [C, H·W]
            let (lo, hi) = (up.min_keepdim(1)?, up.max_keepdim(1)?);
            let masks = up.broadcast_sub(&lo)?.broadcast_div(&(hi - &lo)?.affine(1.0, SCORE_EPS)?)?;
            let mut mshape = vec![c, 1];
            mshape.extend(x.dims()[2..].iter());
            let masked = copies.broadcast_mul(&masks.reshape(mshape.as_slice())?.to_dtype(x.dtype())?)?;
            let s = scores(model, &masked, &tb, batch_size, None)?;
            lumen_core::candle_nn::ops::softmax_last_dim(&s.to_dtype(DType::F64)?)?
        } else {
            // Channel k of copy k set to zero.
            let keep = (Tensor::ones((c, c), a.dtype(), a.device())? - Tensor::eye(c, a.dtype(), a.device())?)?;
            let mut kshape = vec![c, c];
            kshape.extend(std::iter::repeat_n(1, a.rank() - 2));
            let ablated = ab.broadcast_mul(&keep.reshape(kshape.as_slice())?)?;
            let s = scores(model, &copies, &tb, batch_size, Some((layer, &ablated)))?.to_dtype(DType::F64)?;
            let yb = y.as_ref().map(|y| y.narrow(0, b, 1)).transpose()?.ok_or_else(|| Error::msg("internal: no score"))?;
            let yb = yb.to_dtype(DType::F64)?;
            s.broadcast_sub(&yb)?.neg()?.broadcast_div(&yb)?
        };
        rows.push(w.reshape((1, c, 1))?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// Score-CAM's ε in its mask scaling (the reference implementation's value).
const SCORE_EPS: f64 = 1e-8;

/// Runs CAM `kind` with `config`: the attribution (the upsampled CAM, with the
/// input's shape) and the CAM at the layer as tensor `cam`.
///
/// With `aug_smooth`, both are the mean over six test-time augmentations (the input
/// as it is and mirrored left to right, each times 0.9, 1 and 1.1), each mirrored
/// back and scaled to [0, 1] first, as pytorch-grad-cam's `aug_smooth` does.
pub fn explain(
    method: &'static str,
    kind: Kind,
    config: &CamConfig,
    model: &dyn Classifier,
    inputs: &Tensor,
    target: &Target,
) -> Result<Explanation> {
    let target = prepare(model, inputs, target)?;
    let Some(size) = spatial(inputs.dims()) else {
        return Err(Error::msg(format!(
            "{method} needs inputs with spatial dimensions ([B, C, H, W] or [B, C, L]), got {:?}",
            inputs.dims()
        )));
    };
    let layer = resolve_layer(method, model, inputs, config.layer.as_deref())?;
    let (map, cam) = if config.aug_smooth {
        let (mut map, mut cam) = (None::<Tensor>, None::<Tensor>);
        for mirror in [false, true] {
            for factor in AUG_FACTORS {
                let x = (if mirror { flip_last(inputs)? } else { inputs.clone() } * factor)?;
                let (m, c) = cam_maps(method, kind, config, model, &x, &target, &layer, size)?;
                let back = |t: Tensor| -> Result<Tensor> { unit_scale(&if mirror { flip_last(&t)? } else { t }) };
                let (m, c) = (back(m)?, back(c)?);
                map = Some(match map { Some(s) => (s + m)?, None => m });
                cam = Some(match cam { Some(s) => (s + c)?, None => c });
            }
        }
        let n = (2 * AUG_FACTORS.len()) as f64;
        let mean = |t: Option<Tensor>| -> Result<Tensor> { Ok((t.ok_or_else(|| Error::msg("internal: no augmentation"))? / n)?) };
        (mean(map)?, mean(cam)?)
    } else {
        cam_maps(method, kind, config, model, inputs, &target, &layer, size)?
    };
    Ok(Explanation::new(method, over_input(&map, inputs)?, target)
        .with_tensor("cam", cam)
        .with_diag("layer", layer.as_str()))
}

/// Maps `[B, H, W]` as an attribution of the input's shape and dtype: the same map
/// in every input channel.
pub(crate) fn over_input(map: &Tensor, inputs: &Tensor) -> Result<Tensor> {
    let (b, hw) = (map.dim(0)?, map.elem_count() / map.dim(0)?.max(1));
    Ok(map.reshape((b, 1, hw))?.broadcast_as((b, inputs.dim(1)?, hw))?.reshape(inputs.dims())?.to_dtype(inputs.dtype())?)
}

/// `aug_smooth`'s input scalings (pytorch-grad-cam's defaults).
const AUG_FACTORS: [f64; 3] = [0.9, 1.0, 1.1];

/// Mirrors along the last (width) dimension.
fn flip_last(t: &Tensor) -> Result<Tensor> {
    let w = t.dim(t.rank() - 1)?;
    let idx = Tensor::from_vec((0..w as u32).rev().collect::<Vec<_>>(), w, t.device())?;
    Ok(t.index_select(&idx, t.rank() - 1)?)
}

/// Each example scaled to [0, 1] by `s(x) = (x − min) / (1e-7 + max)` (pytorch-grad-cam's
/// scaling) twice, so that its ε counts against 1 rather than the CAM's own scale,
/// as in pytorch-grad-cam, which scales before and after upsampling; a constant map
/// becomes 0.
fn unit_scale(t: &Tensor) -> Result<Tensor> {
    let s = |t: &Tensor| -> Result<Tensor> {
        let shifted = t.broadcast_sub(&t.min_keepdim(1)?)?;
        Ok(shifted.broadcast_div(&shifted.max_keepdim(1)?.affine(1.0, 1e-7)?)?)
    };
    Ok(s(&s(&t.flatten_from(1)?)?)?.reshape(t.dims())?)
}

/// The upsampled CAMs `[B, H, W]` and the CAMs at the layer `[B, ...]` of one input
/// batch (no augmentation).
#[allow(clippy::too_many_arguments)]
fn cam_maps(
    method: &'static str,
    kind: Kind,
    config: &CamConfig,
    model: &dyn Classifier,
    inputs: &Tensor,
    target: &Target,
    layer: &str,
    size: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let layer = layer.to_string();
    let (mut maps, mut cams) = (vec![], vec![]);
    for r in chunks(inputs.dim(0)?, config.batch_size) {
        let x = inputs.narrow(0, r.start, r.len())?;
        let t = target.select(r);
        let (a, g) = activations(kind, model, &x, &t, &layer)?;
        let dims = a.dims().to_vec();
        let Some((h, w)) = spatial(&dims).filter(|_| dims.len() == inputs.rank()) else {
            return Err(Error::bad_param(
                method,
                "layer",
                format!(
                    "layer '{layer}' has output shape {dims:?}; a CAM weights spatial maps, so it needs a layer \
                     of shape {} like the input",
                    if inputs.rank() == 4 { "[B, C, H, W]" } else { "[B, C, L]" }
                ),
            ));
        };
        let (n, c) = (dims[0], dims[1]);
        // f64 stays f64; half precisions are summed in f32.
        let dt = if a.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
        let flat = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(dt)?.reshape((n, c, h * w))?) };
        let fa = flat(&a)?;
        let grad = || g.as_ref().map(flat).transpose()?.ok_or_else(|| Error::msg("internal: no gradient"));
        let weighted = match kind {
            Kind::Gradient(wt) => wt.weighted_maps(&fa, &grad()?)?,
            Kind::Eigen { of_gradient: false } => fa.clone(),
            Kind::Eigen { of_gradient: true } => (grad()? * &fa)?,
            Kind::Score | Kind::Ablation => {
                let wts = perturbation_weights(kind, model, &x, &t, &layer, &a, config.batch_size)?;
                fa.broadcast_mul(&wts.to_dtype(dt)?)?
            }
        };
        let mut cam = if config.eigen_smooth || matches!(kind, Kind::Eigen { .. }) {
            principal_projection(&weighted)?
        } else {
            weighted.sum(1)?
        };
        if config.relu {
            cam = cam.relu()?;
        }
        let cam = cam.reshape((n, h, w))?;
        maps.push(upsample(&cam, size, false)?);
        let mut shape = vec![n];
        shape.extend(&dims[2..]);
        cams.push(cam.reshape(shape)?);
    }
    Ok((Tensor::cat(&maps, 0)?, Tensor::cat(&cams, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::Device;

    /// 2 → 4 with half-pixel centres: sources -0.25 (clamped), 0.25, 0.75, 1.25.
    #[test]
    fn interpolation_matches_hand_values() {
        let m = interpolation_matrix(4, 2, false);
        assert_eq!(m, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
        // 3 → 7: scale 3/7; row 3's source is 3.5 * 3/7 - 0.5 = 1 exactly.
        let m = interpolation_matrix(7, 3, false);
        assert!((m[3 * 3 + 1] - 1.0).abs() < 1e-12, "{m:?}");
        for row in m.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // the same size is the identity
        assert_eq!(interpolation_matrix(3, 3, false), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        // corners aligned, 2 → 4: sources 0, 1/3, 2/3, 1
        let m = interpolation_matrix(4, 2, true);
        let want = [1.0, 0.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0, 0.0, 1.0];
        assert!(m.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{m:?}");
    }

    #[test]
    fn upsampling_a_2x2_map() {
        let d = Device::Cpu;
        let cam = Tensor::new(&[[[0f32, 4.], [8., 12.]]], &d).unwrap();
        let up = upsample(&cam, (4, 4), false).unwrap().to_vec3::<f32>().unwrap();
        // row 1 mixes the two rows 3:1; column 1 mixes the two columns 3:1
        assert_eq!(up[0][0], vec![0., 1., 3., 4.]);
        assert_eq!(up[0][1], vec![2., 3., 5., 6.]);
        assert_eq!(up[0][3], vec![8., 9., 11., 12.]);
    }

    /// Each weighting on one example with two channels of two positions, by hand.
    #[test]
    fn weightings_match_hand_computation() {
        let d = Device::Cpu;
        let a = Tensor::new(&[[[1f32, 3.], [2., 0.]]], &d).unwrap();
        let g = Tensor::new(&[[[0.5f32, -1.], [2., 0.]]], &d).unwrap();
        let run = |w: Weighting| w.combine(&a, &g).unwrap().to_vec2::<f32>().unwrap()[0].clone();
        // Grad-CAM: w = (-0.25, 1); cam = -0.25 (1, 3) + (2, 0) = (1.75, -0.75)
        assert_eq!(run(Weighting::GradCam), vec![1.75, -0.75]);
        // HiResCAM: (0.5·1 + 2·2, -1·3 + 0) = (4.5, -3)
        assert_eq!(run(Weighting::HiResCam), vec![4.5, -3.0]);
        // LayerCAM: (0.5·1 + 2·2, 0·3 + 0) = (4.5, 0)
        assert_eq!(run(Weighting::LayerCam), vec![4.5, 0.0]);
        // XGrad-CAM: w0 = (0.5 - 3)/4 = -0.625, w1 = 4/2 = 2 → (-0.625 + 4, -1.875)
        let x = run(Weighting::XGradCam);
        assert!((x[0] - 3.375).abs() < 1e-5 && (x[1] + 1.875).abs() < 1e-5, "{x:?}");
        // Grad-CAM++: channel 0, S = 4: α(0.5) = 0.25/(0.5 + 0.5) = 0.25, α(-1) has
        // relu(G) = 0; w0 = 0.25·0.5 = 0.125. Channel 1, S = 2: α(2) = 4/(8 + 16) = 1/6,
        // G = 0 gives α = 0; w1 = 2/6. cam = 0.125 (1, 3) + (1/3)(2, 0).
        let p = run(Weighting::GradCamPlusPlus);
        assert!((p[0] - (0.125 + 2.0 / 3.0)).abs() < 1e-5 && (p[1] - 0.375).abs() < 1e-5, "{p:?}");
    }
}
