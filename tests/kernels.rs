//! lumen's kernels against candle's own ops on every shipped classifier: the same
//! logits to 1e-5 relative and the same input gradients to 1e-10 (in f64).

use lumen_core::candle::{Device, Tensor, Var};
use lumen_core::kernels::with_candle_ops;
use lumen_core::Registry;
use crate::util::in_f64;

/// The shipped classifiers called `names`, from the registry.
fn shipped(names: &[&str]) -> Vec<(String, std::sync::Arc<dyn lumen_core::Classifier>)> {
    let _ = lumen_models::load_shipped; // keeps the zoo's registrations linked
    lumen_std_relevance::link(); // genomics-cnn
    let registry = Registry::from_inventory().unwrap();
    names.iter().map(|n| (n.to_string(), registry.load_model(n, &Device::Cpu).unwrap())).collect()
}

/// `n` uniform random inputs in the model's input range, from a seed so that a
/// failure can be replayed.
fn inputs(m: &dyn lumen_core::Classifier, n: usize) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut shape = vec![n];
    shape.extend(&m.info().input_shape);
    let (lo, hi) = m.info().input_range;
    let mut rng = rand::rngs::StdRng::seed_from_u64(shape.iter().product::<usize>() as u64);
    let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(lo..hi)).collect();
    Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap()
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| t.to_dtype(lumen_core::candle::DType::F64).unwrap();
    let (a, b) = (f(a), f(b));
    let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    d / b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1e-30)
}

#[test]
fn shipped_models_give_candles_logits_and_input_gradients() {
    use lumen_core::candle::DType;
    let dev = Device::Cpu;
    for (name, m) in shipped(&["mnist-cnn", "mnist-allcnn", "mnist-cnn-noise", "mnist-cnn-biased", "genomics-cnn"]) {
        let net = m.network().unwrap_or_else(|| panic!("{name} is built from the layer vocabulary"));
        let x = inputs(m.as_ref(), 5);
        let y = m.forward(&x).unwrap();
        let y0 = with_candle_ops(|| m.forward(&x)).unwrap();
        let ey = rel(&y, &y0);
        assert!(ey < 1e-5, "{name}: logits differ by {ey} (relative)");
        // Gradients in f64: in f32 the two paths' different summation orders can
        // flip a ReLU or a max-pool's winner that sits within rounding of a tie,
        // and that moves whole gradient paths; in f64 such a near-tie does not occur.
        let net = in_f64(net);
        let (x, c) = (x.to_dtype(DType::F64).unwrap(), Tensor::randn(0f64, 1., y.dims(), &dev).unwrap());
        let run = || {
            let xv = Var::from_tensor(&x).unwrap();
            let y = net.forward(xv.as_tensor()).unwrap();
            let g = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(xv.as_tensor()).unwrap().clone()
        };
        let eg = rel(&run(), &with_candle_ops(run));
        assert!(eg < 1e-10, "{name}: input gradients differ by {eg} (relative, f64)");
    }
}

/// lumen's native reverse pass (`Network::reverse`) against candle's autograd through
/// the same kernels, on every shipped classifier, for class and contrast targets,
/// plain and through the Guided Backprop and Deconvnet rules, and with input
/// normalisation: the same gradients and objectives, to 1e-5 relative.
#[test]
fn native_reverse_pass_gives_autogradients() {
    use lumen_core::method::gradient;
    use lumen_core::model::{with_autograd, ForwardOptions, ModelCard, Normalization, NetworkModel};
    use lumen_core::Target;
    use std::sync::Arc;
    let dev = Device::Cpu;
    let mut models = shipped(&["mnist-cnn", "mnist-allcnn", "mnist-cnn-noise", "mnist-cnn-biased", "genomics-cnn"]);
    // mnist-cnn behind a normalisation, which the gradient must pass through.
    let card_path = lumen_models::card_path("mnist-cnn").unwrap();
    let mut card = ModelCard::load(&card_path).unwrap();
    let weights = card.checked_weights_path(&card_path).unwrap();
    card.normalization = Some(Normalization { mean: vec![0.13], std: vec![0.31] });
    models.push(("mnist-cnn normalised".into(), Arc::new(NetworkModel::from_card_and_weights(card, &weights, &dev).unwrap())));
    let guided = lumen_std_propagation::rules::guided_backprop();
    let deconv = lumen_std_propagation::rules::deconvnet();
    for (name, m) in &models {
        let x = inputs(m.as_ref(), 4);
        let k = m.info().num_classes();
        let targets = [
            Target::Classes(vec![0, 1 % k, k - 1, 2 % k]),
            Target::Contrast { a: vec![1 % k, 0, 0, k - 1], b: vec![0, 1 % k, 0, 0] },
        ];
        for (rules, comp) in [("plain", None), ("guided_backprop", Some(&guided)), ("deconvnet", Some(&deconv))] {
            let opts = || ForwardOptions { composite: comp.map(|c| c as &dyn lumen_core::model::rule::Composite), ..Default::default() };
            // The native pass must apply here, or the comparison proves nothing.
            let seed = Tensor::ones((4, k), lumen_core::candle::DType::F32, &dev).unwrap();
            assert!(m.input_gradient(&x, &seed, &opts()).unwrap().is_some(), "{name} ({rules}): no native pass");
            for t in &targets {
                let fast = gradient(m.as_ref(), &x, t, opts()).unwrap();
                let slow = with_autograd(|| gradient(m.as_ref(), &x, t, opts())).unwrap();
                let (eg, eo) = (rel(&fast.grad, &slow.grad), rel(&fast.objective, &slow.objective));
                assert!(eg < 1e-5, "{name} ({rules}, {t:?}): gradients differ by {eg} (relative)");
                assert!(eo < 1e-6, "{name} ({rules}, {t:?}): objectives differ by {eo} (relative)");
                assert_eq!(fast.output.dims(), slow.output.dims());
            }
        }
    }
}

/// DeepLIFT (Rescale, with and without logit normalisation, class and contrast
/// targets, zero and constant references) through the native split reverse pass
/// against candle's autograd through the same rules, on every shipped classifier.
#[test]
fn deeplift_native_pass_gives_autograds_contributions() {
    use lumen_core::model::with_autograd;
    use lumen_core::{Attributor, Target};
    use lumen_std_relevance::deeplift::{DeepLift, DeepLiftConfig, DeepLiftRules, Reference, SoftmaxMode};
    for (name, m) in shipped(&["mnist-cnn", "mnist-allcnn", "genomics-cnn"]) {
        let x = inputs(m.as_ref(), 3);
        let k = m.info().num_classes();
        let targets = [Target::Classes(vec![0, 1, k - 1]), Target::Contrast { a: vec![1, 0, k - 1], b: vec![0, 1, 0] }];
        for (reference, softmax) in [(Reference::Zero, SoftmaxMode::Off), (Reference::Constant(0.3), SoftmaxMode::On)] {
            let cfg = DeepLiftConfig {
                reference,
                rules: DeepLiftRules { softmax, batch_size: 3, ..Default::default() },
                ..Default::default()
            };
            let dl = DeepLift::new(cfg);
            for t in &targets {
                let fast = dl.attribute(m.as_ref(), &x, t).unwrap();
                let slow = with_autograd(|| dl.attribute(m.as_ref(), &x, t)).unwrap();
                let e = rel(fast.attribution(), slow.attribution());
                assert!(e < 1e-5, "{name} ({t:?}, {softmax:?}): contributions differ by {e} (relative)");
            }
        }
    }
}

/// LRP-0 and LRP-ε (one-pass rules, pass-through activations, winner max-pools,
/// the output layer's start rule) through the native reverse pass against candle's
/// autograd through the same rules, on every shipped classifier.
#[test]
fn lrp_native_pass_gives_autograds_relevance() {
    use lumen_core::model::with_autograd;
    use lumen_core::{Attributor, Target};
    use lumen_std_relevance::lrp::{Lrp, LrpConfig};
    for (name, m) in shipped(&["mnist-cnn", "mnist-allcnn", "genomics-cnn"]) {
        let x = inputs(m.as_ref(), 3);
        for composite in ["lrp_zero", "lrp_epsilon"] {
            let lrp = Lrp::new(LrpConfig { composite: composite.into(), epsilon: 0.01, ..Default::default() });
            let t = Target::Classes(vec![0, 1, 1]);
            let fast = lrp.attribute(m.as_ref(), &x, &t).unwrap();
            let slow = with_autograd(|| lrp.attribute(m.as_ref(), &x, &t)).unwrap();
            let e = rel(fast.attribution(), slow.attribution());
            assert!(e < 1e-5, "{name} ({composite}): relevance differs by {e} (relative)");
        }
    }
}
