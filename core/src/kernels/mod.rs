//! lumen's own kernels for the explainable layer vocabulary: conv2d (conv1d goes
//! through it), linear, max-pool and avg-pool as candle custom ops.
//!
//! Why not candle's ops: candle's backward computes the kernel gradient of every conv
//! and matmul even when the weight is a constant, and on the CPU it takes the conv
//! input gradient through a direct-loop `conv_transpose2d`. Here the backward returns
//! only the gradients of tracked arguments (a `Var` or something derived from one, as
//! candle's `track_op` says), and every product is an im2col + GEMM.
//!
//! The gradients are themselves custom ops with backwards (each op's adjoint is
//! another op of the set), so a gradient stays differentiable, as with candle's ops.
//!
//! Two fused passes serve the common conv block: [`conv2d_relu_pool`] (the plain
//! forward of conv → ReLU → max-pool, per image while the maps are in cache; the
//! network's forward uses it where no tap, stop or rule sees the inner maps) and
//! [`max_pool2d_relu_grad`] (both backwards in one pass, for the native reverse pass).
//!
//! On other devices and dtypes than CPU f32/f64, and inside [`with_candle_ops`], the
//! same functions run candle's own ops.

mod cpu;

use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, WithDType, D};
use std::cell::Cell;

thread_local! {
    static CANDLE_PATH: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with candle's own ops instead of lumen's kernels on this thread (the
/// reference path for tests and comparisons).
pub fn with_candle_ops<R>(f: impl FnOnce() -> R) -> R {
    with_flag(&CANDLE_PATH, f)
}

/// Runs `f` with the thread-local `flag` set, restoring it afterwards (also on a
/// panic): the switches that select a reference path in tests.
pub(crate) fn with_flag<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, f: impl FnOnce() -> R) -> R {
    struct Restore(&'static std::thread::LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|c| c.replace(true)));
    f()
}

/// Whether lumen's kernels take these tensors: CPU, one dtype, f32 or f64.
fn native(ts: &[&Tensor]) -> bool {
    !CANDLE_PATH.with(|c| c.get())
        && ts.iter().all(|t| {
            t.device().is_cpu() && t.dtype() == ts[0].dtype() && matches!(t.dtype(), DType::F32 | DType::F64)
        })
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("lumen kernel: expected a contiguous tensor")
    };
    Ok(&T::cpu_storage_as_slice(s)?[a..b])
}

/// Calls `$f::<T>` for the storage's dtype.
macro_rules! by_dtype {
    ($s:expr, $f:ident ( $($a:expr),* )) => {
        match $s {
            CpuStorage::F32(_) => $f::<f32>($($a),*),
            CpuStorage::F64(_) => $f::<f64>($($a),*),
            _ => candle_core::bail!("lumen kernel: only f32 and f64 are supported"),
        }
    };
}

fn out<T: WithDType>(v: Vec<T>, shape: impl Into<Shape>) -> candle_core::Result<(CpuStorage, Shape)> {
    Ok((T::to_cpu_storage_owned(v), shape.into()))
}

// ---------------------------------------------------------------- convolution

/// Stride and zero padding of a 2-D convolution, per axis (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

fn conv_len(len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    (s > 0 && k > 0 && len + 2 * p >= k).then(|| (len + 2 * p - k) / s + 1)
}

impl ConvParams {
    /// The geometry of `x [b, c, h, w]` convolved with `w [o, c, kh, kw]`.
    fn geom(&self, x: &[usize], w: &[usize]) -> candle_core::Result<cpu::Conv> {
        let (&[b, c, h, wd], &[o, c2, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected [B, C, H, W] input and [O, C, kH, kW] weight, got {x:?} and {w:?}")
        };
        if c != c2 {
            candle_core::bail!("conv2d: input has {c} channels, the weight expects {c2}");
        }
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        let (Some(ho), Some(wo)) = (conv_len(h, kh, sh, ph), conv_len(wd, kw, sw, pw)) else {
            candle_core::bail!("conv2d: kernel {kh}×{kw} (stride {sh}×{sw}, padding {ph}×{pw}) does not fit input {h}×{wd}")
        };
        Ok(cpu::Conv { b, c, h, w: wd, o, kh, kw, sh, sw, ph, pw, ho, wo })
    }
}

/// A convolution, optionally followed (plain forward only) by a ReLU and a max-pool
/// applied per image while the output is in cache.
struct ConvOp {
    p: ConvParams,
    relu: bool,
    pool: Option<PoolParams>,
}

impl ConvOp {
    fn plain(p: ConvParams) -> Self {
        ConvOp { p, relu: false, pool: None }
    }

    fn fwd<T: WithDType>(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.p.geom(l1.dims(), l2.dims())?;
        let bias = match bias {
            Some((s, l)) if l.dims() == [g.o] => Some(slice::<T>(s, l)?),
            Some((_, l)) => candle_core::bail!("conv2d: bias of shape {:?} for {} output channels", l.dims(), g.o),
            None => None,
        };
        let conv_dims = [g.b, g.o, g.ho, g.wo];
        let pool = self.pool.map(|p| p.geom(&[1, g.o, g.ho, g.wo])).transpose()?;
        let shape = match &pool {
            Some(pg) => pool_shape(pg, &conv_dims, true),
            None => Shape::from(&conv_dims[..]),
        };
        let ep = cpu::Epilogue { relu: self.relu, pool };
        out(cpu::conv2d_then(&g, slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, bias, ep), shape)
    }

    fn grads(&self, x: &Tensor, w: &Tensor, gy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if self.relu || self.pool.is_some() {
            candle_core::bail!("lumen kernel: the fused conv → relu → pool forward has no backward");
        }
        let (_, _, h, wd) = x.dims4()?;
        let dx = if x.track_op() { Some(conv_input_grad(gy, w, (h, wd), self.p)?) } else { None };
        let (_, _, kh, kw) = w.dims4()?;
        let dw = if w.track_op() { Some(conv_weight_grad(gy, x, (kh, kw), self.p)?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "lumen-conv2d"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(op: &ConvOp, a: (&CpuStorage, &Layout), b: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            op.fwd::<T>(a, b, None)
        }
        by_dtype!(s1, f(self, (s1, l1), (s2, l2)))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _: &Tensor, gy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, gy)
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "lumen-conv2d-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        type Arg<'a> = (&'a CpuStorage, &'a Layout);
        fn f<T: WithDType>(op: &ConvOp, a: Arg, b: Arg, c: Arg) -> candle_core::Result<(CpuStorage, Shape)> {
            op.fwd::<T>(a, b, Some(c))
        }
        by_dtype!(s1, f(self, (s1, l1), (s2, l2), (s3, l3)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.grads(x, w, gy)?;
        let db = if b.track_op() { Some(gy.sum((0, 2, 3))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `dx = col2im(wᵀ · gy)`, the adjoint of the convolution in its input.
struct ConvInputGrad {
    p: ConvParams,
    hw: (usize, usize),
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "lumen-conv2d-input-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(op: &ConvInputGrad, gy: (&CpuStorage, &Layout), w: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            let (b, o, ho, wo) = gy.1.shape().dims4()?;
            let wd = w.1.dims();
            let g = op.p.geom(&[b, *wd.get(1).unwrap_or(&0), op.hw.0, op.hw.1], wd)?;
            if (g.o, g.ho, g.wo) != (o, ho, wo) {
                candle_core::bail!("conv2d input gradient: gradient {:?} does not match the output {:?}", gy.1.dims(), (b, g.o, g.ho, g.wo));
            }
            out(cpu::conv2d_input_grad(&g, slice::<T>(gy.0, gy.1)?, slice::<T>(w.0, w.1)?), (g.b, g.c, g.h, g.w))
        }
        by_dtype!(s1, f(self, (s1, l1), (s2, l2)))
    }
    fn bwd(&self, gy: &Tensor, w: &Tensor, _: &Tensor, ddx: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // ⟨ddx, dx(gy, w)⟩ = ⟨conv(ddx, w), gy⟩ = ⟨wgrad(gy, ddx), w⟩.
        let dgy = if gy.track_op() { Some(conv_fwd(ddx, w, None, ConvOp::plain(self.p))?) } else { None };
        let (_, _, kh, kw) = w.dims4()?;
        let dw = if w.track_op() { Some(conv_weight_grad(gy, ddx, (kh, kw), self.p)?) } else { None };
        Ok((dgy, dw))
    }
}

/// `dw = Σ gy · im2col(x)ᵀ`, the adjoint of the convolution in its weight.
struct ConvWeightGrad {
    p: ConvParams,
    k: (usize, usize),
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "lumen-conv2d-weight-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(op: &ConvWeightGrad, gy: (&CpuStorage, &Layout), x: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            let (b, o, ho, wo) = gy.1.shape().dims4()?;
            let xd = x.1.dims();
            let g = op.p.geom(xd, &[o, *xd.get(1).unwrap_or(&0), op.k.0, op.k.1])?;
            if (g.b, g.ho, g.wo) != (b, ho, wo) {
                candle_core::bail!("conv2d weight gradient: gradient {:?} does not match the output {:?}", gy.1.dims(), (g.b, o, g.ho, g.wo));
            }
            out(cpu::conv2d_weight_grad(&g, slice::<T>(gy.0, gy.1)?, slice::<T>(x.0, x.1)?), (g.o, g.c, g.kh, g.kw))
        }
        by_dtype!(s1, f(self, (s1, l1), (s2, l2)))
    }
    fn bwd(&self, gy: &Tensor, x: &Tensor, _: &Tensor, ddw: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // ⟨ddw, dw(gy, x)⟩ = ⟨conv(x, ddw), gy⟩ = ⟨dx(gy, ddw), x⟩.
        let dgy = if gy.track_op() { Some(conv_fwd(x, ddw, None, ConvOp::plain(self.p))?) } else { None };
        let (_, _, h, w) = x.dims4()?;
        let dx = if x.track_op() { Some(conv_input_grad(gy, ddw, (h, w), self.p)?) } else { None };
        Ok((dgy, dx))
    }
}

fn conv_fwd(x: &Tensor, w: &Tensor, b: Option<&Tensor>, op: ConvOp) -> candle_core::Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

fn conv_input_grad(gy: &Tensor, w: &Tensor, hw: (usize, usize), p: ConvParams) -> candle_core::Result<Tensor> {
    gy.contiguous()?.apply_op2(&w.contiguous()?, ConvInputGrad { p, hw })
}

fn conv_weight_grad(gy: &Tensor, x: &Tensor, k: (usize, usize), p: ConvParams) -> candle_core::Result<Tensor> {
    gy.contiguous()?.apply_op2(&x.contiguous()?, ConvWeightGrad { p, k })
}

/// `[B, C, H, W]` convolved with `w [O, C, kH, kW]`, plus `b [O]` per channel.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvParams) -> Result<Tensor> {
    // A bias of another shape is broadcast after the op, as the candle path does.
    let fused = b.filter(|b| w.rank() == 4 && b.dims() == [w.dims()[0]]);
    let mut args = vec![x, w];
    args.extend(fused);
    if native(&args) {
        let y = conv_fwd(x, w, fused, ConvOp::plain(p))?;
        return Ok(match (b, fused) {
            (Some(b), None) => y.broadcast_add(&crate::model::network::per_channel(b, y.rank())?)?,
            _ => y,
        });
    }
    if p.stride.0 != p.stride.1 || p.padding.0 != p.padding.1 {
        return Err(Error::msg(format!(
            "conv2d with stride {:?} and padding {:?} needs lumen's CPU kernels (f32/f64 on the CPU)",
            p.stride, p.padding
        )));
    }
    let y = x.conv2d(w, p.padding.0, p.stride.0, 1, 1)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&crate::model::network::per_channel(b, y.rank())?)?,
        None => y,
    })
}

/// `max_pool(relu(conv2d(x, w) + b))` (the pool optional) in one pass per image, for
/// the plain forward of a conv block: the same values as the ops in turn, without
/// storing the two intermediate maps. `None` where lumen's kernels do not take the
/// tensors or a gradient is tracked (the fused op has no backward).
pub fn conv2d_relu_pool(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvParams, pool: Option<PoolParams>) -> Result<Option<Tensor>> {
    let mut args = vec![x, w];
    args.extend(b);
    if !native(&args) || args.iter().any(|t| t.track_op()) || w.rank() != 4 || b.is_some_and(|b| b.dims() != [w.dims()[0]]) {
        return Ok(None);
    }
    Ok(Some(conv_fwd(x, w, b, ConvOp { p, relu: true, pool })?))
}

/// `[B, C, L]` convolved with `w [O, C, k]`, as a conv2d of height 1.
pub fn conv1d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, padding: usize) -> Result<Tensor> {
    if native(&[x, w]) {
        let p = ConvParams { stride: (1, stride), padding: (0, padding) };
        return Ok(conv2d(&x.unsqueeze(2)?, &w.unsqueeze(2)?, b, p)?.squeeze(2)?);
    }
    // candle 0.11's conv1d backward (conv_transpose1d) mixes up the rows of a batch, so
    // its conv2d is used. The tail that no window reaches is cropped: conv2d's
    // backward sizes its output padding from the height only.
    let x = if padding > 0 { x.pad_with_zeros(D::Minus1, padding, padding)? } else { x.clone() };
    let (len, k) = (x.dim(D::Minus1)?, w.dim(D::Minus1)?);
    let x = if len >= k && stride > 1 { x.narrow(D::Minus1, 0, (len - k) / stride * stride + k)? } else { x };
    let y = x.unsqueeze(2)?.conv2d(&w.unsqueeze(2)?, 0, stride, 1, 1)?.squeeze(2)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&crate::model::network::per_channel(b, y.rank())?)?,
        None => y,
    })
}

// ---------------------------------------------------------------- linear

struct LinearOp;

impl LinearOp {
    fn fwd<T: WithDType>(
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (&[b, f], &[o, f2]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("linear: expected [B, F] input and [O, F] weight, got {:?} and {:?}", l1.dims(), l2.dims())
        };
        if f != f2 {
            candle_core::bail!("linear: input has {f} features, the weight expects {f2}");
        }
        let bias = match bias {
            Some((s, l)) if l.dims() == [o] => Some(slice::<T>(s, l)?),
            Some((_, l)) => candle_core::bail!("linear: bias of shape {:?} for {o} outputs", l.dims()),
            None => None,
        };
        out(cpu::linear((b, f, o), slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, bias), (b, o))
    }

    // Candle's matmuls: they are GEMMs already and differentiable.
    fn grads(x: &Tensor, w: &Tensor, gy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() { Some(gy.matmul(w)?) } else { None };
        let dw = if w.track_op() { Some(gy.t()?.matmul(x)?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "lumen-linear"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(a: (&CpuStorage, &Layout), b: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            LinearOp::fwd::<T>(a, b, None)
        }
        by_dtype!(s1, f((s1, l1), (s2, l2)))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _: &Tensor, gy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        LinearOp::grads(x, w, gy)
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "lumen-linear-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        type Arg<'a> = (&'a CpuStorage, &'a Layout);
        fn f<T: WithDType>(a: Arg, b: Arg, c: Arg) -> candle_core::Result<(CpuStorage, Shape)> {
            LinearOp::fwd::<T>(a, b, Some(c))
        }
        by_dtype!(s1, f((s1, l1), (s2, l2), (s3, l3)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = LinearOp::grads(x, w, gy)?;
        let db = if b.track_op() { Some(gy.sum(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `x [B, F] · wᵀ + b`, with `w [O, F]` and `b [O]`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let fused = b.filter(|b| w.rank() == 2 && b.dims() == [w.dims()[0]]);
    let mut args = vec![x, w];
    args.extend(fused);
    let y = if native(&args) && x.rank() == 2 {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        match fused {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearOp)?,
            None => x.apply_op2(&w, LinearOp)?,
        }
    } else {
        let y = x.matmul(&w.t()?)?;
        return Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    };
    Ok(match (b, fused) {
        (Some(b), None) => y.broadcast_add(b)?,
        _ => y,
    })
}

// ---------------------------------------------------------------- relu

/// `max(x, 0)`, whose backward is one pass `g · [x ≥ 0]` (candle's relu backward
/// takes five: zeros, compare, cast, multiply, add). The mask is candle's: `x ≥ 0`.
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "lumen-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            out(cpu::relu(slice::<T>(s, l)?), l.shape().clone())
        }
        by_dtype!(s, f(s, l))
    }
    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(relu_mask(x, g)?))
    }
}

/// `g · [x ≥ 0]`: linear in `g` (its own adjoint), piecewise constant in `x`.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "lumen-relu-mask"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(x: (&CpuStorage, &Layout), g: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            if x.1.shape() != g.1.shape() {
                candle_core::bail!("relu gradient of shape {:?} for input {:?}", g.1.dims(), x.1.dims());
            }
            out(cpu::relu_mask(slice::<T>(x.0, x.1)?, slice::<T>(g.0, g.1)?), x.1.shape().clone())
        }
        by_dtype!(s1, f((s1, l1), (s2, l2)))
    }
    fn bwd(&self, x: &Tensor, g: &Tensor, _: &Tensor, dd: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dg = if g.track_op() { Some(relu_mask(x, dd)?) } else { None };
        Ok((None, dg))
    }
}

fn relu_mask(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&g.contiguous()?, ReluMask)
}

/// `max(x, 0)`; on the CPU with lumen's one-pass backward, elsewhere candle's relu.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if native(&[x]) {
        return Ok(x.contiguous()?.apply_op1(Relu)?);
    }
    Ok(x.relu()?)
}

// ---------------------------------------------------------------- pooling

/// Window, stride and padding (height, width) of a 2-D pooling; `ceil_mode` as in
/// PyTorch (a last, partial window when it starts inside the input or left padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub ceil_mode: bool,
}

impl PoolParams {
    /// Kernel = stride, no padding, floor mode.
    pub fn square(kernel: usize, stride: usize) -> Self {
        PoolParams { kernel: (kernel, kernel), stride: (stride, stride), padding: (0, 0), ceil_mode: false }
    }

    fn out_len(&self, len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
        if k == 0 || s == 0 || p > k / 2 || len + 2 * p < k {
            return None;
        }
        let span = len + 2 * p - k;
        let mut o = if self.ceil_mode { span.div_ceil(s) } else { span / s } + 1;
        if self.ceil_mode && (o - 1) * s >= len + p {
            o -= 1;
        }
        Some(o)
    }

    fn geom(&self, dims: &[usize]) -> candle_core::Result<cpu::Pool> {
        let &[b, c, h, w] = dims else { candle_core::bail!("pool2d: expected a [B, C, H, W] input, got {dims:?}") };
        let ((kh, kw), (sh, sw), (ph, pw)) = (self.kernel, self.stride, self.padding);
        let (Some(ho), Some(wo)) = (self.out_len(h, kh, sh, ph), self.out_len(w, kw, sw, pw)) else {
            candle_core::bail!(
                "pool2d: kernel {kh}×{kw}, stride {sh}×{sw}, padding {ph}×{pw} (at most half the kernel) do not fit input {h}×{w}"
            )
        };
        Ok(cpu::Pool { planes: b * c, h, w, kh, kw, sh, sw, ph, pw, ho, wo })
    }
}

fn pool_shape(g: &cpu::Pool, dims: &[usize], out_hw: bool) -> Shape {
    let (h, w) = if out_hw { (g.ho, g.wo) } else { (g.h, g.w) };
    (dims[0], dims[1], h, w).into()
}

struct MaxPool(PoolParams);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "lumen-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(p: &PoolParams, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = p.geom(l.dims())?;
            out(cpu::max_pool(&g, slice::<T>(s, l)?), pool_shape(&g, l.dims(), true))
        }
        by_dtype!(s, f(&self.0, s, l))
    }
    fn bwd(&self, x: &Tensor, _: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(max_scatter(x, gy, self.0)?))
    }
}

/// The max-pool gradient `gy` routed to each window's first maximum of `x`.
struct MaxScatter(PoolParams);

impl CustomOp2 for MaxScatter {
    fn name(&self) -> &'static str {
        "lumen-max-pool2d-scatter"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(p: &PoolParams, x: (&CpuStorage, &Layout), gy: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = p.geom(x.1.dims())?;
            if gy.1.shape() != &pool_shape(&g, x.1.dims(), true) {
                candle_core::bail!("max-pool gradient of shape {:?} for input {:?}", gy.1.dims(), x.1.dims());
            }
            out(cpu::max_pool_scatter(&g, slice::<T>(x.0, x.1)?, slice::<T>(gy.0, gy.1)?), x.1.shape().clone())
        }
        by_dtype!(s1, f(&self.0, (s1, l1), (s2, l2)))
    }
    fn bwd(&self, x: &Tensor, gy: &Tensor, _: &Tensor, dd: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Piecewise constant in x; linear in gy with adjoint `gather`.
        let dgy = if gy.track_op() { Some(max_gather(x, dd, self.0)?) } else { None };
        Ok((None, dgy))
    }
}

/// `v` read at each window's first maximum of `x`.
struct MaxGather(PoolParams);

impl CustomOp2 for MaxGather {
    fn name(&self) -> &'static str {
        "lumen-max-pool2d-gather"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(p: &PoolParams, x: (&CpuStorage, &Layout), v: (&CpuStorage, &Layout)) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = p.geom(x.1.dims())?;
            if v.1.shape() != x.1.shape() {
                candle_core::bail!("max-pool gather: values {:?} for input {:?}", v.1.dims(), x.1.dims());
            }
            out(cpu::max_pool_gather(&g, slice::<T>(x.0, x.1)?, slice::<T>(v.0, v.1)?), pool_shape(&g, x.1.dims(), true))
        }
        by_dtype!(s1, f(&self.0, (s1, l1), (s2, l2)))
    }
    fn bwd(&self, x: &Tensor, v: &Tensor, _: &Tensor, dd: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dv = if v.track_op() { Some(max_scatter(x, dd, self.0)?) } else { None };
        Ok((None, dv))
    }
}

fn max_scatter(x: &Tensor, gy: &Tensor, p: PoolParams) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&gy.contiguous()?, MaxScatter(p))
}

fn max_gather(x: &Tensor, v: &Tensor, p: PoolParams) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&v.contiguous()?, MaxGather(p))
}

/// `[B, C, H, W]` max pooling, padding never winning (`-∞`). The gradient of each
/// window goes whole to its first maximum in row-major order (PyTorch's switches).
pub fn max_pool2d(x: &Tensor, p: PoolParams) -> Result<Tensor> {
    if native(&[x]) {
        return Ok(x.contiguous()?.apply_op1(MaxPool(p))?);
    }
    candle_max_pool2d(x, p)
}

/// The candle path: candle's kernel for the value; for kernel = stride a surrogate
/// sends the gradient to the first maximum (candle's own backward scales it by the
/// number of maxima / k²).
fn candle_max_pool2d(x: &Tensor, p: PoolParams) -> Result<Tensor> {
    if p.padding != (0, 0) || p.ceil_mode {
        return Err(Error::msg("max_pool2d with padding or ceil_mode needs lumen's CPU kernels (f32/f64 on the CPU)"));
    }
    let y = x.max_pool2d_with_stride(p.kernel, p.stride)?;
    if !x.track_op() || p.kernel != p.stride {
        return Ok(y);
    }
    let (b, c, h, w) = x.dims4()?;
    let (kh, kw) = p.kernel;
    let (ho, wo) = (h / kh, w / kw);
    let win = x
        .narrow(2, 0, ho * kh)?
        .narrow(3, 0, wo * kw)?
        .reshape((b, c, ho, kh, wo, kw))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((b, c, ho, wo, kh * kw))?;
    let switch = win.detach().argmax_keepdim(D::Minus1)?;
    let pos = Tensor::arange(0u32, (kh * kw) as u32, x.device())?;
    let onehot = switch.broadcast_eq(&pos)?.to_dtype(x.dtype())?;
    let s = (win * onehot)?.sum(D::Minus1)?;
    crate::autograd::surrogate(&y, &s)
}

struct AvgPool(PoolParams);

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "lumen-avg-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(p: &PoolParams, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = p.geom(l.dims())?;
            out(cpu::avg_pool(&g, slice::<T>(s, l)?), pool_shape(&g, l.dims(), true))
        }
        by_dtype!(s, f(&self.0, s, l))
    }
    fn bwd(&self, x: &Tensor, _: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(gy.contiguous()?.apply_op1(AvgAdjoint { p: self.0, hw: (h, w) })?))
    }
}

/// The avg-pool gradient: each window's value spread over its pixels.
struct AvgAdjoint {
    p: PoolParams,
    hw: (usize, usize),
}

impl CustomOp1 for AvgAdjoint {
    fn name(&self) -> &'static str {
        "lumen-avg-pool2d-adjoint"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn f<T: WithDType>(op: &AvgAdjoint, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let (b, c, ho, wo) = l.shape().dims4()?;
            let xd = [b, c, op.hw.0, op.hw.1];
            let g = op.p.geom(&xd)?;
            if (g.ho, g.wo) != (ho, wo) {
                candle_core::bail!("avg-pool gradient of shape {:?} for input {xd:?}", l.dims());
            }
            out(cpu::avg_pool_adjoint(&g, slice::<T>(s, l)?), xd.to_vec())
        }
        by_dtype!(s, f(self, s, l))
    }
    fn bwd(&self, gy: &Tensor, _: &Tensor, dd: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let _ = gy;
        Ok(Some(dd.contiguous()?.apply_op1(AvgPool(self.p))?))
    }
}

/// `[B, C, H, W]` average pooling; zero padding counts towards the divisor
/// (PyTorch's `count_include_pad`), a ceil-mode window past the padding does not.
pub fn avg_pool2d(x: &Tensor, p: PoolParams) -> Result<Tensor> {
    if native(&[x]) {
        return Ok(x.contiguous()?.apply_op1(AvgPool(p))?);
    }
    if p.padding != (0, 0) || p.ceil_mode {
        return Err(Error::msg("avg_pool2d with padding or ceil_mode needs lumen's CPU kernels (f32/f64 on the CPU)"));
    }
    Ok(x.avg_pool2d_with_stride(p.kernel, p.stride)?)
}

// ---------------------------------------------------------------- reverse pass

// The adjoints on their own, for the network's native reverse pass
// (`Network::reverse`), which calls them without candle's autograd. They exist
// only where the kernels run (see [`takes`]).

/// Whether lumen's kernels, and so the native reverse pass, take these tensors.
pub fn takes(ts: &[&Tensor]) -> bool {
    native(ts)
}

fn need_native(what: &str, ts: &[&Tensor]) -> Result<()> {
    if native(ts) {
        Ok(())
    } else {
        Err(Error::msg(format!("{what} needs lumen's CPU kernels (f32/f64 on the CPU)")))
    }
}

/// The input gradient of [`conv2d`] for an input of height and width `hw`.
pub fn conv2d_input_grad(gy: &Tensor, w: &Tensor, hw: (usize, usize), p: ConvParams) -> Result<Tensor> {
    need_native("conv2d input gradient", &[gy, w])?;
    Ok(conv_input_grad(gy, w, hw, p)?)
}

/// The gradient of [`relu`]: `g · [x ≥ 0]`.
pub fn relu_grad(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    need_native("relu gradient", &[x, g])?;
    Ok(relu_mask(x, g)?)
}

/// The gradient of [`max_pool2d`]: `gy` routed to each window's first maximum of `x`.
pub fn max_pool2d_grad(x: &Tensor, gy: &Tensor, p: PoolParams) -> Result<Tensor> {
    need_native("max-pool gradient", &[x, gy])?;
    Ok(max_scatter(x, gy, p)?)
}

/// The gradient at `pre` of `max_pool2d(relu(pre))`, given `x = relu(pre)`: one pass
/// for [`max_pool2d_grad`] and [`relu_grad`] in turn (the same values). For the native
/// reverse pass; it has no backward of its own.
pub fn max_pool2d_relu_grad(pre: &Tensor, x: &Tensor, gy: &Tensor, p: PoolParams) -> Result<Tensor> {
    need_native("max-pool and relu gradient", &[pre, x, gy])?;
    if pre.shape() != x.shape() {
        return Err(Error::msg(format!("relu input {:?} for a pool input {:?}", pre.dims(), x.dims())));
    }
    Ok(pre.contiguous()?.apply_op3(&x.contiguous()?, &gy.contiguous()?, MaxReluScatter(p))?)
}

struct MaxReluScatter(PoolParams);

impl CustomOp3 for MaxReluScatter {
    fn name(&self) -> &'static str {
        "lumen-max-pool2d-relu-scatter"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        type Arg<'a> = (&'a CpuStorage, &'a Layout);
        fn f<T: WithDType>(p: &PoolParams, pre: Arg, x: Arg, gy: Arg) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = p.geom(x.1.dims())?;
            if gy.1.shape() != &pool_shape(&g, x.1.dims(), true) {
                candle_core::bail!("max-pool gradient of shape {:?} for input {:?}", gy.1.dims(), x.1.dims());
            }
            let (pre_s, x_s, gy_s) = (slice::<T>(pre.0, pre.1)?, slice::<T>(x.0, x.1)?, slice::<T>(gy.0, gy.1)?);
            out(cpu::max_pool_relu_scatter(&g, x_s, gy_s, pre_s), x.1.shape().clone())
        }
        by_dtype!(s1, f(&self.0, (s1, l1), (s2, l2), (s3, l3)))
    }
}

/// The gradient of [`avg_pool2d`] for an input of height and width `hw`.
pub fn avg_pool2d_grad(gy: &Tensor, hw: (usize, usize), p: PoolParams) -> Result<Tensor> {
    need_native("avg-pool gradient", &[gy])?;
    Ok(gy.contiguous()?.apply_op1(AvgAdjoint { p, hw })?)
}

#[cfg(test)]
mod tests;
