//! Max pooling with the gradient of its forward switches.
//!
//! candle 0.11's max-pool backward multiplies the gradient by (number of maxima in
//! the window)/k² — a unique maximum of a 2×2 window receives g/4 — so input
//! gradients through max-pools would be wrong. lumen's kernel ([`crate::kernels`])
//! sends each window's gradient, whole, to its first maximum (PyTorch's and Zeiler's
//! switches), for any kernel, stride, padding and ceil mode.

use crate::kernels::{self, PoolParams};
use crate::Result;
use candle_core::Tensor;

/// `[B, C, H, W]` max pooling without padding (floor mode); the backward routes each
/// window's gradient to its first maximum.
pub fn max_pool2d(x: &Tensor, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
    kernels::max_pool2d(x, PoolParams { kernel, stride, padding: (0, 0), ceil_mode: false })
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
