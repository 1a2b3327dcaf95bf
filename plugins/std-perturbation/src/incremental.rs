//! Forward passes of many copies of one input that differ only inside a window
//! (occlusion's baselines, PDA's samples), computing only what the window changes.
//!
//! A copy is the clean input with one rectangle replaced by a patch. Through the
//! network's leading spatially local layers (conv2d, pooling, elementwise maps) the
//! copy stays equal to the clean activations outside a rectangle that grows by each
//! layer's receptive field. So each such layer runs once on the clean input (batch
//! 1) and, per copy, only on the crop that feeds the changed outputs; the crop is
//! gathered on the device from the clean map and the copy's patch. At the first
//! other layer (flatten, linear, global pooling, …) the copies are assembled in full
//! and the rest of the network runs as usual. Outputs outside the rectangle are the
//! clean ones exactly; inside they are the same sums in another blocking, so they
//! agree with a full forward pass to rounding.
//!
//! It applies to chain networks (every layer reads the previous one) whose model
//! forward is the network on the card-normalised input; anything else takes the plain
//! path, where the copies are assembled on the device by the same gather.

use lumen_core::candle::{self, CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use lumen_core::model::{Classifier, LayerKind, Network, Node};
use lumen_core::{Error, Result};
use std::sync::Arc;

/// Where copy `i`'s patch lies in a `[C, H, W]` map: its top-left corner.
pub type Pos = (usize, usize);

/// `n` copies of `clean` (`[1, C, H, W]`) where copy `i` has its `rh × rw` rectangle
/// at `pos[i]` replaced by `patches[i]` (`[n, C, rh, rw]`), as `[n, C, H, W]`: one
/// gather on the device.
pub fn assemble(clean: &Tensor, patches: &Tensor, pos: &[Pos]) -> Result<Tensor> {
    let (_, _, h, w) = clean.dims4()?;
    let (_, _, rh, rw) = patches.dims4()?;
    let starts = vec![(0, 0); pos.len()];
    Crops::new((h, w), 0, (rh, rw), pos, &starts, (h, w), clean.device())?.gather(clean, patches)
}

/// One gather of crops: copy `i` reads the `crop` at `starts[i]` (padded
/// coordinates) of an `hw` map padded by `pad`, with its `patch` at `pos[i]`.
#[derive(Clone)]
struct Crops {
    hw: (usize, usize),
    pad: usize,
    patch: (usize, usize),
    pos: Arc<Vec<Pos>>,
    starts: Arc<Vec<Pos>>,
    crop: (usize, usize),
    /// The same gather as an index, for devices without the CPU op.
    idx: Tensor,
}

impl Crops {
    fn new(
        hw: (usize, usize),
        pad: usize,
        patch: (usize, usize),
        pos: &[Pos],
        starts: &[Pos],
        crop: (usize, usize),
        dev: &candle::Device,
    ) -> Result<Self> {
        // The index also checks that every patch and crop lies inside its map.
        let idx = crop_index(hw.0, hw.1, pad, patch, pos, starts, crop, dev)?;
        Ok(Crops { hw, pad, patch, pos: Arc::new(pos.to_vec()), starts: Arc::new(starts.to_vec()), crop, idx })
    }

    /// The crops `[n, C, lh, lw]` of `clean` (`[1, C, hp, wp]`, padded) with the
    /// `patches` (`[n, C, rh, rw]`) in place. On the CPU one pass of row copies;
    /// elsewhere candle's `index_select` through the index.
    fn gather(&self, clean: &Tensor, patches: &Tensor) -> Result<Tensor> {
        let float = matches!(clean.dtype(), DType::F32 | DType::F64) && clean.dtype() == patches.dtype();
        if clean.device().is_cpu() && patches.device().is_cpu() && float {
            return Ok(clean.contiguous()?.apply_op2_no_bwd(&patches.contiguous()?, self)?);
        }
        gather(clean, patches, &self.idx, self.crop)
    }
}

fn crop_gather<T: Copy + Default + Send + Sync>(g: &Crops, clean: &[T], patches: &[T], c: usize) -> Vec<T> {
    use rayon::prelude::*;
    let ((lh, lw), (rh, rw)) = (g.crop, g.patch);
    let (hp, wp) = (g.hw.0 + 2 * g.pad, g.hw.1 + 2 * g.pad);
    let per = c * lh * lw;
    let mut out = vec![T::default(); g.pos.len() * per];
    out.par_chunks_mut(per.max(1)).enumerate().for_each(|(i, o)| {
        let ((y0, x0), (sy, sx)) = (g.pos[i], g.starts[i]);
        let (py0, px0) = (g.pad + y0, g.pad + x0);
        let p = &patches[i * c * rh * rw..][..c * rh * rw];
        // The patch's columns inside the crop, in padded coordinates.
        let (lo, hi) = (px0.max(sx), (px0 + rw).min(sx + lw));
        for ch in 0..c {
            for a in 0..lh {
                let py = sy + a;
                let dst = &mut o[(ch * lh + a) * lw..][..lw];
                dst.copy_from_slice(&clean[(ch * hp + py) * wp + sx..][..lw]);
                if (py0..py0 + rh).contains(&py) && lo < hi {
                    let src = &p[(ch * rh + py - py0) * rw + lo - px0..][..hi - lo];
                    dst[lo - sx..hi - sx].copy_from_slice(src);
                }
            }
        }
    });
    out
}

impl CustomOp2 for Crops {
    fn name(&self) -> &'static str {
        "lumen-crop-gather"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let (hp, wp) = (self.hw.0 + 2 * self.pad, self.hw.1 + 2 * self.pad);
        let (&[1, c, h1, w1], &[n, c2, rh, rw]) = (l1.dims(), l2.dims()) else {
            candle::bail!("crop gather: expected [1, C, H, W] and [n, C, h, w], got {:?} and {:?}", l1.dims(), l2.dims())
        };
        if (h1, w1) != (hp, wp) || c2 != c || n != self.pos.len() || (rh, rw) != self.patch {
            candle::bail!("crop gather: map {:?} and patches {:?} do not fit the plan", l1.dims(), l2.dims());
        }
        fn part<'a, T>(v: &'a [T], l: &Layout) -> candle::Result<&'a [T]> {
            match l.contiguous_offsets() {
                Some((a, b)) => Ok(&v[a..b]),
                None => candle::bail!("crop gather: expected contiguous inputs"),
            }
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(crop_gather(self, part(a, l1)?, part(b, l2)?, c)),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(crop_gather(self, part(a, l1)?, part(b, l2)?, c)),
            _ => candle::bail!("crop gather: f32 or f64, both alike"),
        };
        Ok((out, Shape::from((n, c, self.crop.0, self.crop.1))))
    }
}

/// The `kh × kw` crops of `map` (`[1, C, H, W]`) at `pos`, as `[n, C, kh, kw]`.
pub fn crops(map: &Tensor, pos: &[Pos], (kh, kw): (usize, usize)) -> Result<Tensor> {
    let (_, c, h, w) = map.dims4()?;
    let mut idx = Vec::with_capacity(pos.len() * kh * kw);
    for &(y, x) in pos {
        if y + kh > h || x + kw > w {
            return Err(Error::msg("internal: a crop leaves its map"));
        }
        for yy in y..y + kh {
            idx.extend((x..x + kw).map(|xx| (yy * w + xx) as u32));
        }
    }
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, map.device())?;
    Ok(map.reshape((c, h * w))?.index_select(&idx, 1)?.reshape((c, pos.len(), kh, kw))?.transpose(0, 1)?.contiguous()?)
}

/// The gather index of crops `lh × lw` at `starts` (padded coordinates) of `n` copies
/// of an `h × w` map padded by `pad`, whose patches `rh × rw` lie at `pos`. Entries
/// below `hp · wp` read the padded clean map, the rest read the patches.
#[allow(clippy::too_many_arguments)]
fn crop_index(
    h: usize,
    w: usize,
    pad: usize,
    (rh, rw): (usize, usize),
    pos: &[Pos],
    starts: &[Pos],
    (lh, lw): (usize, usize),
    dev: &lumen_core::candle::Device,
) -> Result<Tensor> {
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let base = hp * wp;
    let mut idx = Vec::with_capacity(pos.len() * lh * lw);
    for (i, (&(y0, x0), &(sy, sx))) in pos.iter().zip(starts).enumerate() {
        if y0 + rh > h || x0 + rw > w || sy + lh > hp || sx + lw > wp {
            return Err(Error::msg("internal: a patch or crop leaves its map"));
        }
        for py in sy..sy + lh {
            for px in sx..sx + lw {
                let inside = py >= pad + y0 && py < pad + y0 + rh && px >= pad + x0 && px < pad + x0 + rw;
                let j = if inside { base + i * rh * rw + (py - pad - y0) * rw + (px - pad - x0) } else { py * wp + px };
                idx.push(u32::try_from(j).map_err(|_| Error::msg("patch batch too large for a u32 index"))?);
            }
        }
    }
    let n = idx.len();
    Ok(Tensor::from_vec(idx, n, dev)?)
}

/// Crops `[n, C, lh, lw]` read through `idx` from the (padded) clean map `[1, C, hp, wp]`
/// and the patches `[n, C, rh, rw]`.
fn gather(clean: &Tensor, patches: &Tensor, idx: &Tensor, (lh, lw): (usize, usize)) -> Result<Tensor> {
    let (_, c, hp, wp) = clean.dims4()?;
    let (n, pc, rh, rw) = patches.dims4()?;
    if pc != c {
        return Err(Error::shape(format!("patches with {c} channels"), format!("{:?}", patches.dims())));
    }
    let src = Tensor::cat(&[clean.reshape((c, hp * wp))?, patches.transpose(0, 1)?.reshape((c, n * rh * rw))?], 1)?;
    Ok(src.index_select(idx, 1)?.reshape((c, n, lh, lw))?.transpose(0, 1)?.contiguous()?)
}

/// How a leading layer maps a changed rectangle.
enum Local {
    /// Elementwise or per-channel: the same rectangle.
    Map,
    /// A sliding window (conv2d, pooling): kernel, stride, zero padding, and the layer
    /// to run on crops (conv2d without its padding, which the crop carries).
    Window { k: usize, s: usize, pad: usize, op: Node },
}

fn local(node: &Node) -> Option<Local> {
    match &node.kind {
        LayerKind::Relu | LayerKind::Prelu { .. } | LayerKind::Sigmoid | LayerKind::Tanh | LayerKind::BatchNorm { .. } => {
            Some(Local::Map)
        }
        // Exhaustive field lists: a new geometry field must be handled here.
        &LayerKind::Conv2d { in_channels, out_channels, kernel, stride, padding, bias } => {
            let mut op = node.clone();
            op.kind = LayerKind::Conv2d { in_channels, out_channels, kernel, stride, padding: 0, bias };
            Some(Local::Window { k: kernel, s: stride, pad: padding, op })
        }
        &LayerKind::MaxPool2d { kernel, stride } | &LayerKind::AvgPool2d { kernel, stride } => {
            Some(Local::Window { k: kernel, s: stride, pad: 0, op: node.clone() })
        }
        _ => None,
    }
}

/// One step of a [`Plan`] through a leading local layer.
enum Step {
    Map(usize),
    Crop { node: usize, op: Node, pad: usize, crops: Crops },
}

/// The precomputed geometry for one set of patch positions: reusable for every
/// input of the same shape.
pub struct Plan {
    steps: Vec<Step>,
    /// The value index (0: input, `i + 1`: after node `i`) where copies are assembled.
    full_at: usize,
    full: Crops,
    n: usize,
    patch: (usize, usize),
}

impl Plan {
    /// How many leading layers run on crops.
    pub fn local_layers(&self) -> usize {
        self.full_at
    }
}

/// The clean activations of one input that a [`Plan`] reads.
pub struct Clean {
    /// Per step: the clean map that the step crops, padded; then the map at `full_at`.
    maps: Vec<Option<Tensor>>,
    full: Tensor,
}

/// A network that copies can run through incrementally.
pub struct Incremental<'a> {
    net: &'a Network,
    /// The card's input normalisation `(mean, std)` as `[1, C, 1, 1]`.
    norm: Option<(Tensor, Tensor)>,
}

impl<'a> Incremental<'a> {
    /// The incremental runner of `model`, or `None` when it does not apply: no
    /// explainable network, not a chain, or a model forward that is not the network
    /// on the card-normalised input (checked on `probe`, `[1, C, H, W]` on the model's
    /// device, by exact equality of the logits).
    pub fn new(model: &'a dyn Classifier, probe: &Tensor) -> Result<Option<Self>> {
        let Some(net) = model.network() else { return Ok(None) };
        let chain = net.nodes().iter().enumerate().all(|(i, n)| n.inputs == [i]);
        if net.nodes().is_empty() || !chain || net.dtype() != probe.dtype() || probe.rank() != 4 {
            return Ok(None);
        }
        let c = probe.dim(1)?;
        let norm = match model.info().card.as_ref().and_then(|c| c.normalization.clone()) {
            Some(n) if n.mean.len() == c && n.std.len() == c => Some((
                Tensor::from_vec(n.mean, (1, c, 1, 1), probe.device())?,
                Tensor::from_vec(n.std, (1, c, 1, 1), probe.device())?,
            )),
            Some(_) => return Ok(None),
            None => None,
        };
        let me = Incremental { net, norm };
        let want = model.forward(probe)?;
        let got = me.net.forward(&me.normalize(probe)?)?;
        if want.dims() != got.dims() {
            return Ok(None);
        }
        // One scalar crosses to the host, once per call.
        let same = want.ne(&got)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? == 0.0;
        Ok(same.then_some(me))
    }

    /// Inputs or patches in the network's input space.
    pub fn normalize(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(match &self.norm {
            Some((m, s)) => xs.broadcast_sub(m)?.broadcast_div(s)?,
            None => xs.clone(),
        })
    }

    /// The clean activations of the layers up to where a plan assembles copies.
    fn prefix(&self, x: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        let mut vals = vec![x.clone()];
        for node in &self.net.nodes()[..upto] {
            let next = node.forward(&[vals.last().expect("starts with the input")])?;
            vals.push(next);
        }
        Ok(vals)
    }

    /// Plans patches of `rh × rw` at `pos` on inputs shaped like `probe` (`[1, C, H, W]`).
    pub fn plan(&self, probe: &Tensor, (rh, rw): (usize, usize), pos: &[Pos]) -> Result<Plan> {
        let nodes = self.net.nodes();
        // Shapes of every leading value, from one clean pass.
        let mut dims = vec![probe.dims().to_vec()];
        let mut x = self.normalize(probe)?;
        for node in nodes {
            if local(node).is_none() {
                break;
            }
            x = node.forward(&[&x])?;
            dims.push(x.dims().to_vec());
        }
        let dev = probe.device();
        let (mut pos, mut patch) = (pos.to_vec(), (rh, rw));
        let mut steps = vec![];
        let mut l = 0;
        while l + 1 < dims.len() {
            let node = &nodes[l];
            let (din, dout) = (&dims[l], &dims[l + 1]);
            if din.len() != 4 || dout.len() != 4 {
                break;
            }
            match local(node) {
                Some(Local::Map) => {
                    if din != dout {
                        break;
                    }
                    steps.push(Step::Map(l));
                }
                Some(Local::Window { k, s, pad, op }) => {
                    let (h, w, oh, ow) = (din[2], din[3], dout[2], dout[3]);
                    // The geometry this code assumes must give the shape the layer gave.
                    let out = |n: usize| (n + 2 * pad).checked_sub(k).map(|v| v / s + 1);
                    if s == 0 || out(h) != Some(oh) || out(w) != Some(ow) {
                        break;
                    }
                    // Outputs a patch [y, y + r) can change: [ceil((y + p + 1 − k) / s),
                    // floor((y + r − 1 + p) / s)], at most (r + k − 2) / s + 1 of them; a
                    // fixed count, moved inside the map at its borders.
                    let count = |r: usize, o: usize| ((r + k - 2) / s + 1).min(o);
                    let (nh, nw) = (count(patch.0, oh), count(patch.1, ow));
                    let first = |y: usize, n: usize, o: usize| {
                        let lo = (y + pad + 1).saturating_sub(k).div_ceil(s);
                        lo.min(o - n)
                    };
                    let outs: Vec<Pos> = pos.iter().map(|&(y, x)| (first(y, nh, oh), first(x, nw, ow))).collect();
                    let starts: Vec<Pos> = outs.iter().map(|&(y, x)| (y * s, x * s)).collect();
                    let crop = ((nh - 1) * s + k, (nw - 1) * s + k);
                    let crops = Crops::new((h, w), pad, patch, &pos, &starts, crop, dev)?;
                    steps.push(Step::Crop { node: l, op, pad, crops });
                    pos = outs;
                    patch = (nh, nw);
                }
                None => break,
            }
            l += 1;
        }
        let d = &dims[l];
        let (h, w) = (d[2], d[3]);
        let full = Crops::new((h, w), 0, patch, &pos, &vec![(0, 0); pos.len()], (h, w), dev)?;
        Ok(Plan { steps, full_at: l, full, n: pos.len(), patch: (rh, rw) })
    }

    /// The clean activations of `x` (`[1, C, H, W]`, input space) that `plan` reads.
    pub fn clean(&self, plan: &Plan, x: &Tensor) -> Result<Clean> {
        let vals = self.prefix(&self.normalize(x)?, plan.full_at)?;
        let maps = plan
            .steps
            .iter()
            .map(|s| match s {
                Step::Map(_) => Ok(None),
                Step::Crop { node, pad, .. } => {
                    let v = &vals[*node];
                    Ok(Some(if *pad > 0 { v.pad_with_zeros(2, *pad, *pad)?.pad_with_zeros(3, *pad, *pad)? } else { v.clone() }))
                }
            })
            .collect::<Result<_>>()?;
        Ok(Clean { maps, full: vals[plan.full_at].clone() })
    }

    /// The network outputs of the plan's copies of the clean input, whose patches are
    /// `patches` (`[n, C, rh, rw]`, input space, not normalised).
    pub fn forward(&self, plan: &Plan, clean: &Clean, patches: &Tensor) -> Result<Tensor> {
        let (n, _, rh, rw) = patches.dims4()?;
        if n != plan.n || (rh, rw) != plan.patch {
            return Err(Error::msg(format!(
                "internal: {n} patches of {rh}×{rw} for a plan of {} of {:?}",
                plan.n, plan.patch
            )));
        }
        let nodes = self.net.nodes();
        let mut p = self.normalize(patches)?;
        for (step, map) in plan.steps.iter().zip(&clean.maps) {
            p = match step {
                Step::Map(i) => nodes[*i].forward(&[&p])?,
                Step::Crop { op, crops, .. } => {
                    let map = map.as_ref().ok_or_else(|| Error::msg("internal: no clean map for a crop"))?;
                    op.forward(&[&crops.gather(map, &p)?])?
                }
            };
        }
        let mut x = plan.full.gather(&clean.full, &p)?;
        for node in &nodes[plan.full_at..] {
            x = node.forward(&[&x])?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::Device;
    use lumen_core::model::{network::init_params, LayerSpec, ModelCard, ModelInfo, NetworkModel, Normalization};

    fn net(specs: &[LayerSpec], seed: u64) -> NetworkModel {
        // Odd seeds: with the card's input normalisation.
        let card = (seed % 2 == 1).then(|| ModelCard {
            normalization: Some(Normalization { mean: vec![0.2, -0.1], std: vec![0.5, 2.0] }),
            ..Default::default()
        });
        let dev = Device::Cpu;
        let params = init_params(specs, seed, &dev).unwrap();
        let vb = lumen_core::candle_nn::VarBuilder::from_tensors(params, DType::F32, &dev);
        let network = Network::from_spec(specs, vb).unwrap();
        let info = ModelInfo {
            name: "t".into(),
            input_shape: vec![2, 11, 9],
            labels: (0..5).map(|i| i.to_string()).collect(),
            input_range: (0.0, 1.0),
            card,
        };
        NetworkModel::new(info, network, &dev).unwrap()
    }

    fn conv(name: &str, i: usize, o: usize, k: usize, s: usize, p: usize) -> LayerSpec {
        LayerSpec::new(
            name,
            LayerKind::Conv2d { in_channels: i, out_channels: o, kernel: k, stride: s, padding: p, bias: true },
        )
    }

    /// Incremental outputs equal the full forward of the assembled copies, for first
    /// convs with stride and padding, pooling, and windows at every border.
    #[test]
    fn incremental_equals_full_forward() {
        for (k1, s1, p1, pool) in [(3, 1, 1, true), (3, 2, 0, false), (4, 2, 2, true), (5, 1, 2, false), (1, 3, 0, false)] {
            let mut specs = vec![conv("c1", 2, 4, k1, s1, p1), LayerSpec::new("r1", LayerKind::Relu)];
            if pool {
                specs.push(LayerSpec::new("p", LayerKind::MaxPool2d { kernel: 2, stride: 2 }));
            }
            specs.push(conv("c2", 4, 3, 3, 1, 1));
            specs.push(LayerSpec::new("t", LayerKind::Tanh));
            specs.push(LayerSpec::new("f", LayerKind::Flatten));
            let x = Tensor::randn(0f32, 1.0, (1, 2, 11, 9), &Device::Cpu).unwrap();
            let probe = net(&specs[..specs.len()], 0);
            let d = probe.network().unwrap().forward(&x).unwrap().dim(1).unwrap();
            let mut specs = specs;
            specs.push(LayerSpec::new("fc", LayerKind::Linear { in_features: d, out_features: 5, bias: true }));
            let m = net(&specs, k1 as u64);
            let inc = Incremental::new(&m, &x).unwrap().expect("a chain network");
            for (rh, rw) in [(2, 3), (1, 1), (4, 4)] {
                let pos: Vec<Pos> = (0..=11 - rh).flat_map(|y| (0..=9 - rw).map(move |x| (y, x))).collect();
                let patches = Tensor::randn(0f32, 1.0, (pos.len(), 2, rh, rw), &Device::Cpu).unwrap();
                let plan = inc.plan(&x, (rh, rw), &pos).unwrap();
                assert!(plan.local_layers() >= 3, "{k1} {s1} {p1}");
                let clean = inc.clean(&plan, &x).unwrap();
                let fast = inc.forward(&plan, &clean, &patches).unwrap();
                let full = m.forward(&assemble(&x, &patches, &pos).unwrap()).unwrap();
                let diff = (&fast - &full).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let scale = full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff <= 1e-5 * scale, "conv {k1}/{s1}/{p1} patch {rh}×{rw}: {diff} vs {scale}");
            }
        }
    }

    /// The CPU op and the index path give the same crops, with padding and patches
    /// that reach past their crops.
    #[test]
    fn crop_op_equals_the_index_gather() {
        let d = Device::Cpu;
        let (h, w, pad, c) = (7, 6, 2, 3);
        let clean = Tensor::randn(0f32, 1.0, (1, c, h + 2 * pad, w + 2 * pad), &d).unwrap();
        let pos = [(0, 0), (5, 4), (2, 3)];
        let starts = [(0, 0), (6, 4), (1, 2)];
        let patches = Tensor::randn(0f32, 1.0, (3, c, 2, 2), &d).unwrap();
        let crops = Crops::new((h, w), pad, (2, 2), &pos, &starts, (4, 5), &d).unwrap();
        let fast = crops.gather(&clean, &patches).unwrap();
        let slow = gather(&clean, &patches, &crops.idx, crops.crop).unwrap();
        assert_eq!(fast.dims(), slow.dims());
        let diff = (fast - slow).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
        // A crop that leaves the padded map is refused up front.
        assert!(Crops::new((h, w), pad, (2, 2), &pos[..1], &[(8, 0)], (4, 5), &d).is_err());
    }

    #[test]
    fn assemble_replaces_only_the_rectangle() {
        let x = Tensor::arange(0f32, 2.0 * 4.0 * 5.0, &Device::Cpu).unwrap().reshape((1, 2, 4, 5)).unwrap();
        let patches = Tensor::full(-1f32, (2, 2, 2, 3), &Device::Cpu).unwrap();
        let pos = [(0, 0), (2, 2)];
        let out = assemble(&x, &patches, &pos).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, &(y0, x0)) in pos.iter().enumerate() {
            for c in 0..2 {
                for y in 0..4 {
                    for xx in 0..5 {
                        let v = out[((i * 2 + c) * 4 + y) * 5 + xx];
                        let inside = (y0..y0 + 2).contains(&y) && (x0..x0 + 3).contains(&xx);
                        assert_eq!(v, if inside { -1.0 } else { ((c * 4 + y) * 5 + xx) as f32 });
                    }
                }
            }
        }
    }
}
