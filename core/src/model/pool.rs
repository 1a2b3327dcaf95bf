//! Max pooling with the gradient of its forward switches.
//!
//! candle 0.11's max-pool backward multiplies the gradient by (number of maxima in
//! the window)/k² — a unique maximum of a 2×2 window receives g/4 — so input
//! gradients through max-pools are wrong. Here the value comes from candle's kernel
//! and the gradient goes, whole, to the first maximum of each window (PyTorch's and
//! Zeiler's switches), through a value-preserving surrogate.

use crate::autograd::surrogate;
use crate::Result;
use candle_core::{Tensor, D};

/// `[B, C, H, W]` max pooling; the backward routes each window's gradient to its
/// first maximum. With kernel ≠ stride only candle's own pass is available.
pub fn max_pool2d(x: &Tensor, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
    let y = x.max_pool2d_with_stride(kernel, stride)?;
    // Nothing to differentiate, or windows that overlap or skip: plain pass.
    if !x.track_op() || kernel != stride {
        return Ok(y);
    }
    let (b, c, h, w) = x.dims4()?;
    let (kh, kw) = kernel;
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
    surrogate(&y, &s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn gradient_goes_whole_to_the_first_maximum() {
        let d = Device::Cpu;
        // 2 windows of 2×2 (plus a cropped last column): a unique max, and a tie.
        let x = Var::new(&[[[[1f32, 2., 5., 5., 9.], [3., 4., 0., 1., 9.]]]], &d).unwrap();
        let y = max_pool2d(x.as_tensor(), (2, 2), (2, 2)).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![4.0, 5.0]);
        let c = Tensor::new(&[[[[2f32, -3.]]]], &d).unwrap();
        let g = (y * c).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![0., 0., -3., 0., 0., 0., 2., 0., 0., 0.]);
    }
}
