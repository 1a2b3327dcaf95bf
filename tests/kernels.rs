//! lumen's kernels against candle's own ops on every shipped classifier: the same
//! logits and the same input gradients, to 1e-5 relative.

use lumen_core::candle::{Device, Tensor, Var};
use lumen_core::kernels::with_candle_ops;
use lumen_core::Registry;

fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    d / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-30)
}

#[test]
fn shipped_models_give_candles_logits_and_input_gradients() {
    let _ = lumen_models::load_shipped; // keeps the zoo's registrations linked
    lumen_std_relevance::link(); // genomics-cnn
    let registry = Registry::from_inventory().unwrap();
    let dev = Device::Cpu;
    for name in ["mnist-cnn", "mnist-allcnn", "mnist-cnn-noise", "mnist-cnn-biased", "genomics-cnn"] {
        let m = registry.load_model(name, &dev).unwrap();
        assert!(m.network().is_some(), "{name} is built from the layer vocabulary");
        let mut shape = vec![5];
        shape.extend(&m.info().input_shape);
        let (lo, hi) = m.info().input_range;
        let x = Tensor::rand(lo, hi, shape.as_slice(), &dev).unwrap();
        let c = Tensor::randn(0f32, 1., (5, m.info().num_classes()), &dev).unwrap();
        let run = || {
            let xv = Var::from_tensor(&x).unwrap();
            let y = m.forward(xv.as_tensor()).unwrap();
            let g = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(xv.as_tensor()).unwrap().clone())
        };
        let (y, gx) = run();
        let (y0, gx0) = with_candle_ops(run);
        let (ey, eg) = (rel(&y, &y0), rel(&gx, &gx0));
        assert!(ey < 1e-5, "{name}: logits differ by {ey} (relative)");
        assert!(eg < 1e-5, "{name}: input gradients differ by {eg} (relative)");
    }
}
