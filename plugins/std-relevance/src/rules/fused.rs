//! Fused CPU paths for DeepLIFT's hot rules (ReLU Rescale and max-pool routing).
//!
//! The tensor-op forms in `deeplift.rs` take 15–40 elementwise passes over the
//! activations per layer; these compute the same numbers in one pass over CPU
//! storage, as candle custom ops (no host copy). Other devices keep the tensor-op
//! forms, which `deeplift.rs` selects with [`on_cpu`]. Tests there compare both.

use lumen_core::candle::{self, CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use lumen_core::Result;

/// Whether the fused paths apply: CPU storage (tests can force the tensor-op forms).
pub fn on_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && !tensor_ops_forced()
}

#[cfg(test)]
thread_local! {
    /// Set by tests to run the tensor-op forms on the CPU.
    pub static FORCE_TENSOR_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn tensor_ops_forced() -> bool {
    #[cfg(test)]
    return FORCE_TENSOR_OPS.with(|f| f.get());
    #[cfg(not(test))]
    false
}

fn slice<'a, T>(v: &'a [T], l: &Layout) -> candle::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle::bail!("lumen fused op: expected a contiguous input"),
    }
}

// ---------------------------------------------------------------- value with a multiplier

/// The value of `value` with the gradient `m ⊙ g` into `x` (what `surrogate(value,
/// x·m)` gives, in one copy instead of four passes forward and back).
struct WithMultiplier {
    m: Tensor,
}

impl CustomOp2 for WithMultiplier {
    fn name(&self) -> &'static str {
        "lumen-with-multiplier"
    }
    fn cpu_fwd(&self, _s1: &CpuStorage, _l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let out = match s2 {
            CpuStorage::F32(v) => CpuStorage::F32(slice(v, l2)?.to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(slice(v, l2)?.to_vec()),
            _ => candle::bail!("lumen-with-multiplier: f32 or f64 only"),
        };
        Ok((out, l2.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _v: &Tensor, _res: &Tensor, g: &Tensor) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.mul(&self.m)?), None))
    }
}

/// `value` (detached) carrying the gradient `m ⊙ ∂/∂out` into `x`; CPU only.
pub fn with_multiplier(x: &Tensor, value: &Tensor, m: &Tensor) -> Result<Tensor> {
    let value = value.detach().contiguous()?;
    Ok(x.contiguous()?.apply_op2(&value, WithMultiplier { m: m.detach() })?)
}

// ---------------------------------------------------------------- ReLU Rescale

/// The Rescale multiplier of a ReLU over a `[inputs; references]` batch: `δy/δx`
/// where `|δx| ≥ eps`, else the gradient `[x ≥ 0]` at the input (as candle's ReLU
/// backward and lumen's kernel form it); the references' rows repeat the inputs'.
struct ReluRescale {
    eps: f64,
}

fn relu_rescale<T: candle::WithDType + PartialOrd>(x: &[T], y: &[T], eps: T) -> Vec<T> {
    let half = x.len() / 2;
    let mut m = Vec::with_capacity(x.len());
    m.extend((0..half).map(|i| {
        let dx = x[i] - x[half + i];
        let d = if dx >= T::zero() { dx } else { T::zero() - dx };
        if d >= eps {
            (y[i] - y[half + i]) / dx
        } else if x[i] >= T::zero() {
            T::one()
        } else {
            T::zero()
        }
    }));
    m.extend_from_within(..half);
    m
}

impl CustomOp2 for ReluRescale {
    fn name(&self) -> &'static str {
        "lumen-relu-rescale"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(relu_rescale(slice(x, l1)?, slice(y, l2)?, self.eps as f32)),
            (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(relu_rescale(slice(x, l1)?, slice(y, l2)?, self.eps)),
            _ => candle::bail!("lumen-relu-rescale: f32 or f64, both alike"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// ReLU Rescale multipliers `[2n, ...]` from the layer's input and output batches.
pub fn relu_rescale_multiplier(x: &Tensor, y: &Tensor, eps: f64) -> Result<Tensor> {
    let (x, y) = (x.detach().contiguous()?, y.detach().contiguous()?);
    Ok(x.apply_op2_no_bwd(&y, &ReluRescale { eps })?)
}

// ---------------------------------------------------------------- max-pool routing

/// Geometry of a max-pool over `[b, c, h, w]` (1-D pools as `h = 1`).
#[derive(Clone, Copy, Debug)]
pub struct PoolGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
}

impl PoolGeom {
    pub fn out(&self) -> (usize, usize) {
        ((self.h - self.kh) / self.sh + 1, (self.w - self.kw) / self.sw + 1)
    }
}

/// `None`: winner-take-all; `Some((n, eps))`: DeepLIFT routing over `n` input rows
/// followed by their `n` references.
struct MaxRouteOp {
    g: PoolGeom,
    deeplift: Option<(usize, f32)>,
}

/// The first index of the largest value (NaNs never win; all NaN: 0), as the tensor
/// form's `max` + `first` pick it.
fn first_max(v: impl Iterator<Item = f32>) -> (usize, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut seen = false;
    for (k, x) in v.enumerate() {
        if !seen || x > best.1 {
            if !x.is_nan() {
                best = (k, x);
                seen = true;
            }
        }
    }
    best
}

/// One (row, channel) plane's routing: positions and multipliers of its `nout`
/// outputs. `pr`: the reference plane (DeepLIFT) or `None` (winner-take-all).
fn route_plane(win: &[usize], kk: usize, pi: &[f32], pr: Option<&[f32]>, e: f32, pos: &mut [f32], mult: &mut [f32]) {
    for (o, wo) in win.chunks_exact(kk).enumerate() {
        let Some(pr) = pr else {
            let (kmax, _) = first_max(wo.iter().map(|&q| pi[q]));
            pos[o] = wo[kmax] as f32;
            mult[o] = 1.0;
            continue;
        };
        // One scan for the three `first_max`es: of the input, of the reference and of
        // |δx| (the same picks as three separate scans).
        let mut best = [(0usize, f32::NEG_INFINITY, false); 3];
        for (k, &q) in wo.iter().enumerate() {
            let (a, r) = (pi[q], pr[q]);
            for (b, v) in best.iter_mut().zip([a, r, (a - r).abs()]) {
                if !v.is_nan() && (!b.2 || v > b.1) {
                    *b = (k, v, true);
                }
            }
        }
        let [(_, xmax, _), (_, rmax, _), (slot2, dmax, _)] = best;
        // Among the input's argmaxes, the first whose reference is largest.
        let (mut slot1, mut rbest, mut found) = (0usize, f32::NEG_INFINITY, false);
        for (k, &q) in wo.iter().enumerate() {
            if pi[q] == xmax && (!found || pr[q] > rbest) {
                (slot1, rbest, found) = (k, pr[q], true);
            }
        }
        let (dy, dx1) = (xmax - rmax, xmax - rbest);
        let fallback = dx1.abs() < e && dmax > dx1.abs();
        let (slot, dx) = if fallback { (slot2, pi[wo[slot2]] - pr[wo[slot2]]) } else { (slot1, dx1) };
        pos[o] = wo[slot] as f32;
        mult[o] = if dx.abs() < e { 1.0 } else { dy / dx };
    }
}

fn route(op: &MaxRouteOp, x: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let g = op.g;
    let (oh, ow) = g.out();
    let (plane, nout, kk) = (g.h * g.w, oh * ow, g.kh * g.kw);
    let rows = g.b * g.c;
    // Each output's window as plane positions, `[nout, kk]`.
    let win: Vec<usize> = (0..nout)
        .flat_map(|o| {
            let (i, j) = (o / ow, o % ow);
            (0..kk).map(move |k| (i * g.sh + k / g.kw) * g.w + j * g.sw + k % g.kw)
        })
        .collect();
    // [positions of rows·nout; multipliers of rows·nout]
    let mut out = vec![0f32; 2 * rows * nout];
    let (pos, mult) = out.split_at_mut(rows * nout);
    let half = op.deeplift.map_or(rows, |(n, _)| n * g.c);
    let e = op.deeplift.map_or(0.0, |(_, e)| e);
    let (pos_in, pos_ref) = pos.split_at_mut(half * nout);
    let (mult_in, mult_ref) = mult.split_at_mut(half * nout);
    pos_in.par_chunks_mut(nout).zip(mult_in.par_chunks_mut(nout)).enumerate().with_min_len(8).for_each(|(r, (p, m))| {
        let pi = &x[r * plane..(r + 1) * plane];
        let pr = op.deeplift.map(|_| &x[(half + r) * plane..(half + r + 1) * plane]);
        route_plane(&win, kk, pi, pr, e, p, m);
    });
    // DeepLIFT: the references' rows take their inputs' routes.
    if op.deeplift.is_some() {
        pos_ref.copy_from_slice(pos_in);
        mult_ref.copy_from_slice(mult_in);
    }
    out
}

impl CustomOp1 for MaxRouteOp {
    fn name(&self) -> &'static str {
        "lumen-max-route"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let x: Vec<f32> = match s {
            CpuStorage::F32(v) => route(self, slice(v, l)?),
            CpuStorage::F64(v) => route(self, &slice(v, l)?.iter().map(|&a| a as f32).collect::<Vec<_>>()),
            _ => candle::bail!("lumen-max-route: f32 or f64 only"),
        };
        let (oh, ow) = self.g.out();
        Ok((CpuStorage::F32(x), Shape::from((2, self.g.b, self.g.c, oh * ow))))
    }
}

/// The routed input position (`[b, c, nout]`, u32) and multiplier (`[b, c, nout]`,
/// f32) of every max-pool output; `deeplift = Some((n, eps))` for DeepLIFT's routing.
pub fn max_route(x: &Tensor, g: PoolGeom, deeplift: Option<(usize, f64)>) -> Result<(Tensor, Tensor)> {
    let x = x.detach().contiguous()?;
    let op = MaxRouteOp { g, deeplift: deeplift.map(|(n, e)| (n, e as f32)) };
    let out = x.apply_op1_no_bwd(&op)?;
    Ok((out.get(0)?.to_dtype(candle::DType::U32)?, out.get(1)?))
}

/// The fused paths against the tensor-op forms they replace, on random nets whose
/// activations have ties (zeros after ReLU, quantised inputs, equal references).
#[cfg(test)]
mod tests {
    use super::FORCE_TENSOR_OPS;
    use crate::deeplift::{DeepLift, DeepLiftConfig, DeepLiftRule, DeepLiftRules, Reference, SoftmaxMode};
    use crate::lrp::{Lrp, LrpConfig};
    use lumen_core::candle::{DType, Device, Tensor};
    use lumen_core::candle_nn::VarBuilder;
    use lumen_core::model::network::{init_params, Network};
    use lumen_core::model::{LayerKind as K, LayerSpec as L, ModelInfo, NetworkModel};
    use lumen_core::{Attributor, Target};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn net(seed: u64, pool: (usize, usize)) -> NetworkModel {
        let d = Device::Cpu;
        let (k, st) = pool;
        let side = (12 - k) / st + 1;
        let s = vec![
            L::new("conv1", K::Conv2d { in_channels: 1, out_channels: 4, kernel: 3, stride: 1, padding: 1, bias: true }),
            L::new("relu1", K::Relu),
            L::new("pool1", K::MaxPool2d { kernel: k, stride: st }),
            L::new("flatten", K::Flatten),
            L::new("fc1", K::Linear { in_features: 4 * side * side, out_features: 8, bias: true }),
            L::new("relu2", K::Relu),
            L::new("fc2", K::Linear { in_features: 8, out_features: 3, bias: true }),
        ];
        let p = init_params(&s, seed, &d).unwrap();
        let net = Network::from_spec(&s, VarBuilder::from_tensors(p, DType::F32, &d)).unwrap();
        let info = ModelInfo { name: "t".into(), input_shape: vec![1, 12, 12], labels: vec!["0".into(), "1".into(), "2".into()], input_range: (0.0, 1.0), card: None };
        NetworkModel::new(info, net, &d).unwrap()
    }

    /// Inputs on a coarse grid of levels, so windows and references tie.
    fn inputs(n: usize, seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * 144).map(|_| rng.gen_range(0..4) as f32 / 3.0).collect();
        Tensor::from_vec(v, (n, 1, 12, 12), &Device::Cpu).unwrap()
    }

    fn both(f: impl Fn() -> Vec<f32>) -> (Vec<f32>, Vec<f32>) {
        let fused = f();
        FORCE_TENSOR_OPS.with(|c| c.set(true));
        let tensor = f();
        FORCE_TENSOR_OPS.with(|c| c.set(false));
        (fused, tensor)
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-6 * scale, "{what}: element {i}: fused {x} vs tensor ops {y}");
        }
    }

    #[test]
    fn deeplift_fused_equals_tensor_ops() {
        for (seed, pool) in [(1, (2, 2)), (2, (3, 2)), (3, (2, 1))] {
            let m = net(seed, pool);
            let x = inputs(5, seed + 7);
            for rule in [DeepLiftRule::Rescale, DeepLiftRule::RevealCancel] {
                // zero reference, and a reference that ties with the inputs in places
                for reference_level in [0.0, 1.0 / 3.0] {
                    let cfg = DeepLiftConfig {
                        reference: Reference::Constant(reference_level),
                        rules: DeepLiftRules { rule, softmax: SoftmaxMode::Off, batch_size: 5, ..Default::default() },
                        ..Default::default()
                    };
                    let dl = DeepLift::new(cfg);
                    let (a, b) = both(|| {
                        let e = dl.attribute(&m, &x, &Target::Class(1)).unwrap();
                        e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    });
                    close(&a, &b, &format!("seed {seed} pool {pool:?} {rule:?} ref {reference_level}"));
                }
            }
        }
    }

    /// The one-pass LRP-0/ε rules refuse a non-affine layer, naming it.
    #[test]
    fn one_pass_lrp_rules_refuse_other_layers() {
        use crate::rules::lrp::{Epsilon, Zero};
        use lumen_core::rules::{Rule, RuleCtx};
        let s = vec![L::new("relu1", K::Relu)];
        let net = Network::from_spec(&s, VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap();
        let (_, relu) = net.node("relu1").unwrap();
        let x = inputs(1, 0);
        let rules: [Box<dyn Rule>; 2] = [Box::new(Zero), Box::new(Epsilon { epsilon: 1e-6 })];
        for r in rules {
            let e = r.forward(relu, &[&x], &RuleCtx::default()).unwrap_err().to_string();
            assert!(e.contains(r.name()) && e.contains("'relu1'") && e.contains("conv and linear"), "{e}");
        }
    }

    #[test]
    fn lrp_winner_routing_fused_equals_tensor_ops() {
        for (seed, pool) in [(4, (2, 2)), (5, (3, 2))] {
            let m = net(seed, pool);
            let x = inputs(4, seed);
            let lrp = Lrp::new(LrpConfig::default());
            let (a, b) = both(|| {
                let e = lrp.attribute(&m, &x, &Target::Class(2)).unwrap();
                e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
            });
            close(&a, &b, &format!("seed {seed} pool {pool:?}"));
        }
    }
}
