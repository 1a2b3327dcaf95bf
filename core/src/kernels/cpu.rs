//! CPU kernels on contiguous slices: im2col + GEMM convolution and its two adjoints,
//! and window pooling. Images of a batch run in parallel on rayon's pool (the one
//! candle's own CPU kernels use), each with a single-threaded GEMM; a batch smaller
//! than the thread count instead gives its threads to the GEMM.

use candle_core::WithDType;
use gemm::Parallelism;
use rayon::prelude::*;

pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

fn gemm_par(nt: usize) -> Parallelism {
    if nt > 1 {
        Parallelism::Rayon(nt)
    } else {
        Parallelism::None
    }
}

/// A matrix operand: the slice and its (row, column) strides.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major `[cols_t, rows_t]` matrix.
    pub fn t(data: &'a [T], rows_t_cols: usize) -> Self {
        Mat { data, rs: 1, cs: rows_t_cols }
    }
    fn fits(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rs + (n - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`, `dst` row-major.
pub(crate) fn matmul<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    // The bounds the raw-pointer GEMM relies on.
    assert!(dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n), "lumen kernel: GEMM operands out of bounds");
    // SAFETY: every index the GEMM touches is inside the slices (checked above), and
    // `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// Runs `f(image, out_chunk, gemm parallelism)` for each of `b` images.
fn for_images<T: WithDType, F>(out: &mut [T], stride: usize, b: usize, f: F)
where
    F: Fn(usize, &mut [T], Parallelism) + Sync + Send,
{
    if stride == 0 {
        return;
    }
    let nt = threads();
    if nt > 1 && b >= nt {
        out.par_chunks_mut(stride).enumerate().for_each(|(i, o)| f(i, o, Parallelism::None));
    } else {
        for (i, o) in out.chunks_mut(stride).enumerate() {
            f(i, o, gemm_par(nt));
        }
    }
}

thread_local! {
    /// Per-thread scratch (im2col matrices, padded images, pre-pool maps) kept between
    /// calls: a fresh buffer per image or per rayon job was zeroed and often
    /// page-faulted in.
    static SCRATCH: std::cell::Cell<[Vec<u64>; 3]> = const { std::cell::Cell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` on three scratch slices of `lens` elements. Their contents are arbitrary:
/// `f` writes before it reads. Re-entrant (a nested call, e.g. from a rayon job run
/// while this thread waits, finds the buffers taken and allocates its own).
fn with_scratch<T: WithDType, R>(lens: [usize; 3], f: impl FnOnce([&mut [T]; 3]) -> R) -> R {
    const { assert!(std::mem::align_of::<T>() <= 8) };
    let mut bufs = SCRATCH.take();
    let views = {
        let mut it = bufs.iter_mut().zip(lens).map(|(buf, len)| {
            let words = (len * std::mem::size_of::<T>()).div_ceil(8);
            if buf.len() < words {
                buf.resize(words, 0);
            }
            // SAFETY: the buffer is initialised, 8-byte aligned (u64) and at least
            // `len` elements of T long; T is a plain number type (every bit pattern is
            // a value); the buffers are distinct allocations, so the slices do not alias.
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), len) }
        });
        [(); 3].map(|_| it.next().unwrap_or_default())
    };
    let r = f(views);
    SCRATCH.set(bufs);
    r
}

/// A vector of `len` elements for a kernel that writes every element before any is
/// read (a GEMM with `accumulate = false`, a pool over every window): it skips the
/// zero fill, a full extra pass over the output.
fn overwritten<T: WithDType>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: T is a plain number type, and the callers write all `len` elements
    // before reading any (each call site says which kernel does).
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(len)
    };
    v
}

/// Geometry of a 2-D convolution (no dilation: the layer vocabulary has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Conv {
    /// Rows of the im2col matrix (`c·kh·kw`, the weight's row length).
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output positions per image.
    pub fn n(&self) -> usize {
        self.ho * self.wo
    }
    pub fn x_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.o * self.n()
    }
    /// Scratch for [`im2col`]'s zero-padded image.
    fn padded_len(&self) -> usize {
        if self.sw == 1 && (self.ph > 0 || self.pw > 0) {
            self.c * (self.h + 2 * self.ph) * (self.w + 2 * self.pw)
        } else {
            0
        }
    }
    /// A 1×1 convolution with stride 1 and no padding: the image is its own im2col.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// The outputs `[lo, hi)` whose input index `o·s + off` lies in `[0, len)`.
fn span(out: usize, s: usize, off: isize, len: usize) -> (usize, usize) {
    let lo = if off >= 0 { 0 } else { (off.unsigned_abs()).div_ceil(s) };
    let hi = if off >= len as isize { 0 } else { ((len as isize - off) as usize).div_ceil(s) };
    let lo = lo.min(out);
    (lo, hi.min(out).max(lo))
}

/// One image `[c, h, w]` to its patch matrix `[c·kh·kw, ho·wo]` (zeros for padding),
/// rows `ld ≥ ho·wo` apart (what lies between is left as it was). `pad` is scratch for the zero-padded image (`c·(h + 2ph)·(w + 2pw)` elements) when
/// the width stride is 1: then every patch row is a run of `wo` contiguous pixels.
fn im2col<T: WithDType>(g: &Conv, x: &[T], col: &mut [T], pad: &mut [T], ld: usize) {
    if g.sw != 1 {
        return im2col_strided(g, x, col, ld);
    }
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let p: &[T] = if g.ph == 0 && g.pw == 0 {
        x
    } else {
        let pad = &mut pad[..g.c * hp * wp];
        pad.fill(T::zero());
        for (pc, xc) in pad.chunks_mut(hp * wp).zip(x.chunks(g.h * g.w)) {
            for (prow, xrow) in pc[g.ph * wp..].chunks_mut(wp).zip(xc.chunks(g.w)) {
                prow[g.pw..g.pw + g.w].copy_from_slice(xrow);
            }
        }
        pad
    };
    let mut r = 0;
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let base = c * hp * wp + ki * wp + kj;
                for oy in 0..g.ho {
                    let at = r * ld + oy * g.wo;
                    copy_run(&mut col[at..], &p[base + oy * g.sh * wp..], g.wo);
                }
                r += 1;
            }
        }
    }
}

/// `dst[..len] = src[..len]` for the short runs of im2col, in constant-size blocks
/// that compile to vector moves (a `memcpy` call per run of ~14 pixels cost more than
/// the copy). The last block may write past `len` where both slices have room: the
/// caller fills its runs in increasing order, so the next run overwrites the excess.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T], len: usize) {
    const B: usize = 8;
    let mut i = 0;
    while i + B <= len {
        dst[i..i + B].copy_from_slice(&src[i..i + B]);
        i += B;
    }
    if i < len {
        if dst.len() >= i + B && src.len() >= i + B {
            dst[i..i + B].copy_from_slice(&src[i..i + B]);
        } else {
            dst[i..len].copy_from_slice(&src[i..len]);
        }
    }
}

/// [`im2col`] for a width stride above 1: clipped runs, zeros outside the image.
fn im2col_strided<T: WithDType>(g: &Conv, x: &[T], col: &mut [T], ld: usize) {
    let n = g.n();
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * ld..][..n];
                let off = kj as isize - g.pw as isize;
                let (lo, hi) = span(g.wo, g.sw, off, g.w);
                for oy in 0..g.ho {
                    let dst = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * g.sh + ki) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.h as isize || lo == hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &x[(c * g.h + iy as usize) * g.w..][..g.w];
                    dst[..lo].fill(T::zero());
                    dst[hi..].fill(T::zero());
                    let base = (lo * g.sw) as isize + off;
                    let base = base as usize;
                    if g.sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[base..base + (hi - lo)]);
                    } else {
                        for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[base + i * g.sw];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each patch entry back onto its pixel. `x` (one
/// image) is overwritten, not added to. With a width stride of 1 the runs are added
/// into the zero-padded image in `pad` (no clipping per run) and its interior is
/// copied out.
fn col2im<T: WithDType>(g: &Conv, col: &[T], x: &mut [T], pad: &mut [T]) {
    if g.sw != 1 {
        x.fill(T::zero());
        return col2im_strided(g, col, x);
    }
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let padded = g.ph > 0 || g.pw > 0;
    let p: &mut [T] = if padded { &mut pad[..g.c * hp * wp] } else { &mut *x };
    p.fill(T::zero());
    let n = g.n();
    let mut r = 0;
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let base = c * hp * wp + ki * wp + kj;
                let row = &col[r * n..][..n];
                for (oy, src) in row.chunks_exact(g.wo).enumerate() {
                    let dst = &mut p[base + oy * g.sh * wp..][..g.wo];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += *s;
                    }
                }
                r += 1;
            }
        }
    }
    if padded {
        for (pc, xc) in pad.chunks(hp * wp).zip(x.chunks_mut(g.h * g.w)) {
            for (prow, xrow) in pc[g.ph * wp..].chunks(wp).zip(xc.chunks_mut(g.w)) {
                xrow.copy_from_slice(&prow[g.pw..g.pw + g.w]);
            }
        }
    }
}

/// [`col2im`] for a width stride above 1: clipped runs added onto `x`.
fn col2im_strided<T: WithDType>(g: &Conv, col: &[T], x: &mut [T]) {
    let n = g.n();
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((c * g.kh + ki) * g.kw + kj) * n..][..n];
                let off = kj as isize - g.pw as isize;
                let (lo, hi) = span(g.wo, g.sw, off, g.w);
                if lo == hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * g.sh + ki) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &row[oy * g.wo..(oy + 1) * g.wo];
                    let dst = &mut x[(c * g.h + iy as usize) * g.w..][..g.w];
                    let base = ((lo * g.sw) as isize + off) as usize;
                    if g.sw == 1 {
                        // Contiguous: a zip the compiler vectorises.
                        for (d, s) in dst[base..base + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        for (i, s) in src[lo..hi].iter().enumerate() {
                            dst[base + i * g.sw] += *s;
                        }
                    }
                }
            }
        }
    }
}

/// What a convolution's output goes through, per image while it is in cache, before
/// it is stored: the bias, then a ReLU, then a max-pool (`planes` = output channels).
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue {
    pub relu: bool,
    pub pool: Option<Pool>,
}

/// `y = conv(x, w) + bias` (per image `[o, n] = w[o, k] · im2col(x)[k, n]`), then the
/// epilogue's ReLU and max-pool in the same pass per image (the same values as the ops
/// in turn).
pub(crate) fn conv2d_then<T: WithDType>(g: &Conv, x: &[T], w: &[T], bias: Option<&[T]>, ep: Epilogue) -> Vec<T> {
    let (k, n) = (g.k(), g.n());
    let out_len = ep.pool.map_or(g.y_len(), |p| p.planes * p.y_len());
    let spans = ep.pool.map(|p| p.spans());
    // The patch matrix's rows are padded to whole SIMD registers (64 bytes): then the
    // GEMM reads them in place instead of packing a copy. The padding columns give
    // output columns that are never read. (A 1×1 conv reads the image itself.)
    let lanes = 64 / std::mem::size_of::<T>();
    let ld = if g.pointwise() { n } else { n.next_multiple_of(lanes) };
    // The GEMM writes to scratch when a pool follows or the rows are padded.
    let staged = ep.pool.is_some() || ld != n;
    // Every element is written: by the GEMM (accumulate = false), the copy from the
    // scratch map, or the pool.
    let mut y = overwritten::<T>(g.b * out_len);
    for_images(&mut y, out_len, g.b, |i, yi, par| {
        let xi = &x[i * g.x_len()..][..g.x_len()];
        let col_len = if g.pointwise() { 0 } else { k * ld };
        let map_len = if staged { g.o * ld } else { 0 };
        with_scratch::<T, _>([col_len, map_len, g.padded_len()], |[col, map, pad]| {
            let src: &[T] = if g.pointwise() {
                xi
            } else {
                im2col(g, xi, col, pad, ld);
                col
            };
            let dst: &mut [T] = if staged { map } else { &mut *yi };
            matmul((g.o, ld, k), dst, false, Mat::rows(w, k), Mat::rows(src, ld), par);
            for (c, row) in dst.chunks_mut(ld).enumerate() {
                let row = &mut row[..n];
                let b = bias.map_or(T::zero(), |b| b[c]);
                if ep.relu {
                    for v in row.iter_mut() {
                        let s = *v + b;
                        *v = if s >= T::zero() { s } else { T::zero() };
                    }
                } else if bias.is_some() {
                    for v in row.iter_mut() {
                        *v += b;
                    }
                }
            }
            match (&ep.pool, &spans) {
                (Some(p), Some(sp)) => {
                    for (xp, yp) in map.chunks(ld).zip(yi.chunks_mut(p.y_len())) {
                        p.max_plane(sp, &xp[..n], yp);
                    }
                }
                _ if staged => {
                    for (src, dst) in map.chunks(ld).zip(yi.chunks_mut(n)) {
                        dst.copy_from_slice(&src[..n]);
                    }
                }
                _ => {}
            }
        })
    });
    y
}

/// The input gradient: per image `col2im(wᵀ[k, o] · gy[o, n])`.
pub(crate) fn conv2d_input_grad<T: WithDType>(g: &Conv, gy: &[T], w: &[T]) -> Vec<T> {
    let (k, n) = (g.k(), g.n());
    // Every element is written: by the GEMM (accumulate = false) or by col2im.
    let mut dx = overwritten::<T>(g.b * g.x_len());
    for_images(&mut dx, g.x_len(), g.b, |i, dxi, par| {
        let gi = &gy[i * g.y_len()..][..g.y_len()];
        if g.pointwise() {
            matmul((k, n, g.o), dxi, false, Mat::t(w, k), Mat::rows(gi, n), par);
        } else {
            with_scratch::<T, _>([k * n, 0, g.padded_len()], |[col, _, pad]| {
                matmul((k, n, g.o), col, false, Mat::t(w, k), Mat::rows(gi, n), par);
                col2im(g, col, dxi, pad);
            });
        }
    });
    dx
}

/// The weight gradient: `Σ_images gy[o, n] · im2col(x)ᵀ[n, k]`, one partial sum per
/// thread.
pub(crate) fn conv2d_weight_grad<T: WithDType>(g: &Conv, gy: &[T], x: &[T]) -> Vec<T> {
    let (k, n) = (g.k(), g.n());
    let nt = threads();
    let chunks = if nt > 1 && g.b >= nt { nt } else { 1 };
    let per = g.b.div_ceil(chunks.max(1)).max(1);
    let par = if chunks == 1 { gemm_par(nt) } else { Parallelism::None };
    let part = |t: usize| {
        let mut dw = vec![T::zero(); g.o * k];
        let mut col = Vec::new();
        let mut pad = vec![T::zero(); g.padded_len()];
        for i in t * per..((t + 1) * per).min(g.b) {
            let xi = &x[i * g.x_len()..][..g.x_len()];
            let gi = &gy[i * g.y_len()..][..g.y_len()];
            let src: &[T] = if g.pointwise() {
                xi
            } else {
                col.resize(k * n, T::zero());
                im2col(g, xi, &mut col, &mut pad, n);
                &col
            };
            matmul((g.o, k, n), &mut dw, true, Mat::rows(gi, n), Mat::t(src, n), par);
        }
        dw
    };
    let parts: Vec<Vec<T>> = if chunks == 1 { vec![part(0)] } else { (0..chunks).into_par_iter().map(part).collect() };
    let mut it = parts.into_iter();
    let mut dw = it.next().unwrap_or_else(|| vec![T::zero(); g.o * k]);
    for p in it {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

/// `y[b, o] = x[b, f] · w[o, f]ᵀ + bias[o]`.
pub(crate) fn linear<T: WithDType>((b, f, o): (usize, usize, usize), x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let mut y = vec![T::zero(); b * o];
    if let Some(bias) = bias {
        for row in y.chunks_mut(o) {
            row.copy_from_slice(bias);
        }
    }
    matmul((b, o, f), &mut y, bias.is_some(), Mat::rows(x, f), Mat::t(w, f), gemm_par(threads()));
    y
}

/// Geometry of a 2-D pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

/// One window: rows `[y0, y1)`, columns `[x0, x1)` of the input, and the
/// average's divisor (the window clipped to the padded input, padding included).
struct Window {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
    div: usize,
}

fn clip(o: usize, s: usize, k: usize, p: usize, len: usize) -> (usize, usize, usize) {
    let start = (o * s) as isize - p as isize;
    let end = (start + k as isize).min((len + p) as isize);
    let div = (end - start) as usize;
    (start.max(0) as usize, end.min(len as isize).max(0) as usize, div)
}

impl Pool {
    pub fn x_len(&self) -> usize {
        self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.ho * self.wo
    }
    /// The clipped input ranges of every output row and column, computed once per
    /// call rather than once per window.
    pub(crate) fn spans(&self) -> Spans {
        let ys = (0..self.ho).map(|o| clip(o, self.sh, self.kh, self.ph, self.h)).collect();
        let xs = (0..self.wo).map(|o| clip(o, self.sw, self.kw, self.pw, self.w)).collect();
        Spans { ys, xs }
    }
}

/// Per output row (column): the input rows (columns) `[start, end)` and the
/// divisor's factor.
pub(crate) struct Spans {
    ys: Vec<(usize, usize, usize)>,
    xs: Vec<(usize, usize, usize)>,
}

impl Spans {
    fn window(&self, oy: usize, ox: usize) -> Window {
        let ((y0, y1, dh), (x0, x1, dw)) = (self.ys[oy], self.xs[ox]);
        Window { y0, y1, x0, x1, div: dh * dw }
    }

    /// Index in the plane (row length `w`) of the window's first maximum (row-major;
    /// a NaN wins, as in PyTorch).
    #[inline]
    fn argmax<T: WithDType>(&self, plane: &[T], w: usize, oy: usize, ox: usize) -> usize {
        let ((y0, y1, _), (x0, x1, _)) = (self.ys[oy], self.xs[ox]);
        let mut best = y0 * w + x0;
        let mut m = plane[best];
        #[allow(clippy::eq_op)]
        let mut m_nan = m != m;
        for y in y0..y1 {
            if m_nan {
                break;
            }
            let row = &plane[y * w..];
            for (x, &v) in row[x0..x1].iter().enumerate() {
                #[allow(clippy::eq_op)]
                let v_nan = v != v;
                if v > m || v_nan {
                    best = y * w + x0 + x;
                    m = v;
                    m_nan = v_nan;
                    if m_nan {
                        break;
                    }
                }
            }
        }
        best
    }
}

impl Pool {
    /// Calls `f(output index, index of the window's first maximum)` for every window
    /// of one plane. 2×2 windows with stride 2 and no padding (the common case) take
    /// a straight-line path.
    #[inline]
    fn for_each_max<T: WithDType>(&self, sp: &Spans, xp: &[T], mut f: impl FnMut(usize, usize)) {
        let full = self.ph == 0 && self.pw == 0 && 2 * self.ho <= self.h && 2 * self.wo <= self.w;
        if (self.kh, self.kw, self.sh, self.sw) == (2, 2, 2, 2) && full {
            for oy in 0..self.ho {
                let (r0, r1) = (2 * oy * self.w, (2 * oy + 1) * self.w);
                let (row0, row1) = (&xp[r0..r0 + 2 * self.wo], &xp[r1..r1 + 2 * self.wo]);
                for ox in 0..self.wo {
                    let c = 2 * ox;
                    // The same order and NaN rule as `Spans::argmax`.
                    let cand = [(row0[c], r0 + c), (row0[c + 1], r0 + c + 1), (row1[c], r1 + c), (row1[c + 1], r1 + c + 1)];
                    let (mut m, mut best) = cand[0];
                    for &(v, i) in &cand[1..] {
                        #[allow(clippy::eq_op)]
                        if m == m && (v > m || v != v) {
                            m = v;
                            best = i;
                        }
                    }
                    f(oy * self.wo + ox, best);
                }
            }
            return;
        }
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                f(oy * self.wo + ox, sp.argmax(xp, self.w, oy, ox));
            }
        }
    }
}

pub(crate) fn max_pool<T: WithDType>(g: &Pool, x: &[T]) -> Vec<T> {
    let sp = g.spans();
    // Every window is written by `max_plane`.
    let mut y = overwritten::<T>(g.planes * g.y_len());
    y.par_chunks_mut(g.y_len().max(1)).enumerate().for_each(|(p, yp)| {
        g.max_plane(&sp, &x[p * g.x_len()..][..g.x_len()], yp);
    });
    y
}

/// The later of `a`, `b` only if it is larger or NaN: the first maximum's value, with
/// a NaN winning (the rule of `Spans::argmax`).
#[inline(always)]
fn first_max<T: WithDType>(a: T, b: T) -> T {
    #[allow(clippy::eq_op)]
    if b > a || b != b {
        b
    } else {
        a
    }
}

impl Pool {
    /// One plane's window maxima: the value at each window's first maximum. 2×2
    /// windows with stride 2 (the common case) take a branch-free path of pair maxima
    /// in row-major order, so ties and NaNs resolve as in `Spans::argmax`.
    pub(crate) fn max_plane<T: WithDType>(&self, sp: &Spans, xp: &[T], yp: &mut [T]) {
        let full = self.ph == 0 && self.pw == 0 && 2 * self.ho <= self.h && 2 * self.wo <= self.w;
        if (self.kh, self.kw, self.sh, self.sw) == (2, 2, 2, 2) && full {
            for (oy, yr) in yp.chunks_mut(self.wo).enumerate().take(self.ho) {
                let r0 = &xp[2 * oy * self.w..][..2 * self.wo];
                let r1 = &xp[(2 * oy + 1) * self.w..][..2 * self.wo];
                for ((y, a), b) in yr.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                    *y = first_max(first_max(a[0], a[1]), first_max(b[0], b[1]));
                }
            }
            return;
        }
        self.for_each_max(sp, xp, |o, i| yp[o] = xp[i]);
    }
}

/// The max-pool gradient: each window's `gy` goes whole to its first maximum.
pub(crate) fn max_pool_scatter<T: WithDType>(g: &Pool, x: &[T], gy: &[T]) -> Vec<T> {
    let sp = g.spans();
    // Every element is written by `scatter_plane`.
    let mut dx = overwritten::<T>(g.planes * g.x_len());
    dx.par_chunks_mut(g.x_len().max(1)).enumerate().for_each(|(p, dxp)| {
        let xp = &x[p * g.x_len()..][..g.x_len()];
        let gp = &gy[p * g.y_len()..][..g.y_len()];
        g.scatter_plane(&sp, xp, gp, dxp);
    });
    dx
}

/// The gradient at `pre` of `max_pool(relu(pre))` (`x` = relu(pre), the pool's
/// input): [`max_pool_scatter`] and then the ReLU's `g · [pre ≥ 0]` per plane while
/// it is in cache, the same values as the two ops in turn.
pub(crate) fn max_pool_relu_scatter<T: WithDType>(g: &Pool, x: &[T], gy: &[T], pre: &[T]) -> Vec<T> {
    let sp = g.spans();
    let mut dx = overwritten::<T>(g.planes * g.x_len());
    dx.par_chunks_mut(g.x_len().max(1)).enumerate().for_each(|(p, dxp)| {
        let at = p * g.x_len();
        g.scatter_plane(&sp, &x[at..][..g.x_len()], &gy[p * g.y_len()..][..g.y_len()], dxp);
        for (d, &v) in dxp.iter_mut().zip(&pre[at..][..g.x_len()]) {
            *d = *d * if v >= T::zero() { T::one() } else { T::zero() };
        }
    });
    dx
}

impl Pool {
    /// One plane of [`max_pool_scatter`], writing all of `dxp`. 2×2 windows with
    /// stride 2 write each window's four cells at once (the gradient at the first
    /// maximum by the rule of `Spans::argmax`, zeros elsewhere) instead of zeroing the
    /// plane and adding.
    fn scatter_plane<T: WithDType>(&self, sp: &Spans, xp: &[T], gp: &[T], dxp: &mut [T]) {
        let full = self.ph == 0 && self.pw == 0 && 2 * self.ho <= self.h && 2 * self.wo <= self.w;
        if !((self.kh, self.kw, self.sh, self.sw) == (2, 2, 2, 2) && full) {
            dxp.fill(T::zero());
            self.for_each_max(sp, xp, |o, i| dxp[i] += gp[o]);
            return;
        }
        if 2 * self.ho != self.h || 2 * self.wo != self.w {
            dxp.fill(T::zero()); // the cropped last row or column
        }
        let (w, z) = (self.w, T::zero());
        for (oy, g) in gp.chunks_exact(self.wo).enumerate().take(self.ho) {
            let (r0, r1) = (&xp[2 * oy * w..][..2 * self.wo], &xp[(2 * oy + 1) * w..][..2 * self.wo]);
            let (top, bottom) = dxp[2 * oy * w..][..2 * w].split_at_mut(w);
            let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
            let outs = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
            for (((a, b), (d0, d1)), &gv) in pairs.zip(outs).zip(g) {
                #[allow(clippy::eq_op)]
                let step = |m: T, v: T| m == m && (v > m || v != v);
                let t1 = step(a[0], a[1]);
                let m1 = if t1 { a[1] } else { a[0] };
                let t2 = step(m1, b[0]);
                let m2 = if t2 { b[0] } else { m1 };
                let t3 = step(m2, b[1]);
                // `z + g`, not `g`: the sum the general path forms (a −0 gradient
                // lands as +0 there too).
                let at = |hit: bool| if hit { z + gv } else { z };
                d0[0] = at(!(t1 || t2 || t3));
                d0[1] = at(t1 && !t2 && !t3);
                d1[0] = at(t2 && !t3);
                d1[1] = at(t3);
            }
        }
    }
}

/// The adjoint of [`max_pool_scatter`] in `gy`: `v` read at each window's maximum.
pub(crate) fn max_pool_gather<T: WithDType>(g: &Pool, x: &[T], v: &[T]) -> Vec<T> {
    let sp = g.spans();
    let mut y = vec![T::zero(); g.planes * g.y_len()];
    y.par_chunks_mut(g.y_len().max(1)).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * g.x_len()..][..g.x_len()];
        let vp = &v[p * g.x_len()..][..g.x_len()];
        g.for_each_max(&sp, xp, |o, i| yp[o] = vp[i]);
    });
    y
}

/// Average pooling; padding counts towards the divisor (PyTorch's default).
pub(crate) fn avg_pool<T: WithDType>(g: &Pool, x: &[T]) -> Vec<T> {
    let sp = g.spans();
    let mut y = vec![T::zero(); g.planes * g.y_len()];
    y.par_chunks_mut(g.y_len().max(1)).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * g.x_len()..][..g.x_len()];
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let win = sp.window(oy, ox);
                let mut s = T::zero();
                for y in win.y0..win.y1 {
                    for v in &xp[y * g.w + win.x0..y * g.w + win.x1] {
                        s += *v;
                    }
                }
                yp[oy * g.wo + ox] = s / T::from_f64(win.div as f64);
            }
        }
    });
    y
}

/// The adjoint of [`avg_pool`]: each window's `gy / divisor` added to its pixels.
pub(crate) fn avg_pool_adjoint<T: WithDType>(g: &Pool, gy: &[T]) -> Vec<T> {
    let sp = g.spans();
    let mut dx = vec![T::zero(); g.planes * g.x_len()];
    dx.par_chunks_mut(g.x_len().max(1)).enumerate().for_each(|(p, dxp)| {
        let gp = &gy[p * g.y_len()..][..g.y_len()];
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let win = sp.window(oy, ox);
                let v = gp[oy * g.wo + ox] / T::from_f64(win.div as f64);
                for y in win.y0..win.y1 {
                    for d in &mut dxp[y * g.w + win.x0..y * g.w + win.x1] {
                        *d += v;
                    }
                }
            }
        }
    });
    dx
}

/// Elementwise, in parallel over runs big enough to be worth a thread; collected
/// straight into the output (no zero fill first).
fn zip_map<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    const RUN: usize = 1 << 14;
    if a.len() <= RUN || threads() == 1 {
        return a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect();
    }
    let mut y = Vec::with_capacity(a.len());
    a.par_iter().zip(b).with_min_len(RUN).map(|(&a, &b)| f(a, b)).collect_into_vec(&mut y);
    y
}

/// `max(x, 0)` as candle computes it (a NaN gives 0).
pub(crate) fn relu<T: WithDType>(x: &[T]) -> Vec<T> {
    zip_map(x, x, |v, _| if v >= T::zero() { v } else { T::zero() })
}

/// `g · [x ≥ 0]`, the product candle's relu backward forms (so `0 · ∞` stays NaN).
pub(crate) fn relu_mask<T: WithDType>(x: &[T], g: &[T]) -> Vec<T> {
    zip_map(x, g, |x, g| g * if x >= T::zero() { T::one() } else { T::zero() })
}
