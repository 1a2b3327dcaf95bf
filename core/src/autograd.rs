//! The two autograd building blocks every modified backward pass is made of.
//!
//! Candle has no module hooks, so a rule replaces a layer's forward call with one
//! that computes the same value but carries a different backward:
//!
//! * [`surrogate`]: `value.detach() + (s - s.detach())` has the value of `value` and
//!   the gradient of `s`;
//! * [`grad_hook`]: an identity op whose backward applies a closure to the incoming
//!   gradient.

use crate::Result;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use std::sync::Arc;

/// Value-preserving surrogate: the value of `value`, the gradient of `s`.
pub fn surrogate(value: &Tensor, s: &Tensor) -> Result<Tensor> {
    Ok((value.detach() + (s - s.detach())?)?)
}

type HookFn = dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync;

struct GradHook {
    f: Arc<HookFn>,
}

impl CustomOp1 for GradHook {
    fn name(&self) -> &'static str {
        "lumen-grad-hook"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        // Identity: copy the (possibly strided) input into a fresh contiguous buffer.
        // `grad_hook` makes its input contiguous, so the offsets always exist.
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("grad hook: expected a contiguous input")
        };
        fn copy<T: Copy>(v: &[T], a: usize, b: usize) -> Vec<T> {
            v[a..b].to_vec()
        }
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(copy(v, a, b)),
            CpuStorage::F64(v) => CpuStorage::F64(copy(v, a, b)),
            CpuStorage::F16(v) => CpuStorage::F16(copy(v, a, b)),
            CpuStorage::BF16(v) => CpuStorage::BF16(copy(v, a, b)),
            _ => candle_core::bail!("grad hook: unsupported dtype"),
        };
        Ok((out, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        // `grad_hook` makes its input contiguous first, so a clone is the identity.
        if !layout.is_contiguous() || layout.start_offset() != 0 {
            candle_core::bail!("grad hook: expected a contiguous input");
        }
        Ok((storage.try_clone(layout)?, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((self.f)(grad_res)?))
    }
}

/// Returns `x` unchanged in the forward pass; in the backward pass the gradient
/// flowing into `x` is `f(gradient flowing out)`.
pub fn grad_hook(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(x.apply_op1(GradHook { f: Arc::new(f) })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn surrogate_keeps_value_and_swaps_gradient() {
        let x = Var::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let value = x.as_tensor().sqr().unwrap(); // gradient would be 2x
        let s = (x.as_tensor() * 5.0).unwrap(); // gradient 5
        let y = surrogate(&value, &s).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![1.0, 4.0, 9.0]);
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![5.0; 3]);
    }

    #[test]
    fn hook_is_identity_forward_and_transforms_backward() {
        let x = Var::new(&[[1f32, -2.], [3., 4.]], &Device::Cpu).unwrap();
        let xt = x.as_tensor().t().unwrap(); // strided input
        let h = grad_hook(&xt, |g| g * 3.0).unwrap();
        assert_eq!(h.to_vec2::<f32>().unwrap(), vec![vec![1.0, 3.0], vec![-2.0, 4.0]]);
        let y = (h * 2.0).unwrap().sum_all().unwrap();
        let g = y.backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap(), vec![vec![6.0; 2]; 2]);
    }
}
