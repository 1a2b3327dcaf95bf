//! PDA speed: `cargo bench -p lumen-std-perturbation`. Prints figures; asserts
//! nothing about time.
//!
//! 1. The target: one 28×28 image on `mnist-cnn`, k = 4, l = 2, S = 10,
//!    conditional sampler (goal < 10 s on a 2-core CPU), at several batch sizes.
//! 2. Growth with k on `mnist-cnn`, and with image size on the all-conv
//!    architecture (which takes any size).
//! 3. A FLOP-count projection for the paper's ImageNet setting (VGG-16, k = 10,
//!    S = 10) on one GPU.

use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::data::{Mnist, Split};
use lumen_core::model::{ForwardOptions, LayerKind, LayerSpec, ModelInfo, Network, NetworkModel, Taps};
use lumen_core::{Attributor, Classifier, Target};
use lumen_std_perturbation::{ConditionalGaussian, GaussianConfig, Pda, PdaConfig};
use std::sync::Arc;
use std::time::Instant;

fn seeded(name: &str, specs: Vec<LayerSpec>, shape: Vec<usize>, dev: &Device) -> NetworkModel {
    let params = lumen_core::model::network::init_params(&specs, 0, dev).expect("init");
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(params, DType::F32, dev)).expect("net");
    let card = lumen_core::model::ModelCard { num_train: 4000, ..Default::default() };
    let info = ModelInfo {
        name: name.into(),
        input_shape: shape,
        labels: (0..10).map(|i| i.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: Some(card),
    };
    NetworkModel::new(info, net, dev).expect("model")
}

/// Multiply-accumulates of one forward pass, from the shapes a tapped pass records.
fn macs(model: &NetworkModel, x: &Tensor) -> f64 {
    let net = model.network().expect("network");
    let fwd = net.forward_with(x, &ForwardOptions { taps: Taps::All, ..Default::default() }).expect("forward");
    let mut total = 0.0;
    for node in net.nodes() {
        let out = fwd.tap(&node.name).expect("tap").elem_count() as f64;
        total += match node.kind {
            LayerKind::Conv2d { in_channels, kernel, .. } => out * (in_channels * kernel * kernel) as f64,
            LayerKind::Linear { in_features, .. } => out * in_features as f64,
            _ => 0.0,
        };
    }
    total
}

/// Nearest-neighbour upscaling of `[B, 1, 28, 28]` by an integer-ish factor.
fn upscale(x: &Tensor, side: usize) -> Tensor {
    let (b, c, h, w) = x.dims4().unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out = Vec::with_capacity(b * c * side * side);
    for i in 0..b * c {
        for y in 0..side {
            for xx in 0..side {
                out.push(v[i * h * w + (y * h / side) * w + xx * w / side]);
            }
        }
    }
    Tensor::from_vec(out, (b, c, side, side), &Device::Cpu).unwrap()
}

fn time_pda(model: &dyn Classifier, x: &Tensor, sampler: Arc<ConditionalGaussian>, k: usize, bs: usize, s: usize) -> (f64, usize) {
    let cfg = PdaConfig { window: k, samples: s, batch_size: bs, ..Default::default() };
    let pda = Pda::new(cfg, sampler);
    let t = Instant::now();
    let e = pda.attribute(model, x, &Target::Predicted).expect("pda");
    let secs = t.elapsed().as_secs_f64();
    let d = |k: &str| e.diagnostics[k].as_f64().unwrap_or(0.0);
    println!("      (sampling + pasting {:.2} s, forward passes {:.2} s)", d("sampling_seconds"), d("forward_seconds"));
    (secs, e.diagnostics["forward_passes"].as_u64().unwrap_or(0) as usize)
}

fn main() {
    // The machine may be shared; the load says how much of it this run had.
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    }
    let dev = Device::Cpu;
    let data = Mnist::load().expect("mnist");
    let (train, _) = data.all(Split::Train, &dev).expect("train");
    let (x, _) = data.batch(Split::Test, &[3], &dev).expect("test image");

    let t = Instant::now();
    let g = Arc::new(ConditionalGaussian::fit(GaussianConfig::default(), &train).expect("fit"));
    println!("fit conditional Gaussian (20,000 patches of 12×12): {:.2} s", t.elapsed().as_secs_f64());

    let (model, which): (Arc<dyn Classifier>, &str) = match lumen_models::load_shipped("mnist-cnn", &dev) {
        Ok(m) => (m, "shipped weights"),
        Err(_) => (
            Arc::new(seeded("mnist-cnn", lumen_models::arch::mnist_cnn(), vec![1, 28, 28], &dev)),
            "seeded weights (no shipped weights found; timing does not depend on them)",
        ),
    };
    let cnn = seeded("mnist-cnn", lumen_models::arch::mnist_cnn(), vec![1, 28, 28], &dev);
    let cnn_macs = macs(&cnn, &x);
    println!("mnist-cnn ({which}): {:.2} MMAC per forward pass", cnn_macs / 1e6);

    println!("\n[1] target: 28×28, k=4, l=2, S=10, conditional sampler (goal < 10 s)");
    let mut best = f64::INFINITY;
    for bs in [128, 256, 512, 1024] {
        let (s, n) = time_pda(model.as_ref(), &x, g.clone(), 4, bs, 10);
        best = best.min(s);
        println!(
            "  batch_size {bs:>5}: {s:6.2} s  ({n} forward passes, {:.0} passes/s, {:.1} GFLOP/s)",
            n as f64 / s,
            2.0 * cnn_macs * n as f64 / s / 1e9
        );
    }
    println!("  best: {best:.2} s -> {}", if best < 10.0 { "meets the 10 s goal" } else { "MISSES the 10 s goal" });

    println!("\n[2a] growth with k (mnist-cnn, 28×28, S=10, batch 256)");
    for k in [1, 2, 4, 8] {
        let (s, n) = time_pda(model.as_ref(), &x, g.clone(), k, 256, 10);
        println!("  k={k}: {s:6.2} s  ({} windows, {n} passes)", (29 - k) * (29 - k));
    }

    println!("\n[2b] growth with image size (all-conv architecture, k=4, S=2 to keep the bench short; S=10 is 5× the passes)");
        for side in [28usize, 42, 56] {
        let m = seeded("allcnn", lumen_models::arch::mnist_allcnn(), vec![1, side, side], &dev);
        let xi = upscale(&x, side);
        let mm = macs(&m, &xi);
        let (s, n) = time_pda(&m, &xi, g.clone(), 4, 256, 2);
        println!(
            "  {side}×{side}: {s:7.2} s  ({} windows, {n} passes, {:.1} MMAC/pass, {:.1} GFLOP/s; ≈{:.0} s at S=10)",
            (side - 3) * (side - 3),
            mm / 1e6,
            2.0 * mm * n as f64 / s / 1e9,
            5.0 * s
        );
    }
    println!("  windows grow as (H−k+1)² and each pass as H², so time grows about as H⁴");

    // VGG-16 on 224×224: 15.47 GMAC per image (conv 15.35 + fc 0.12).
    let vgg_macs = 15.47e9;
    let passes = (224.0f64 - 10.0 + 1.0).powi(2) * 10.0;
    let flop = 2.0 * vgg_macs * passes;
    println!("\n[3] projection: VGG-16, 224×224, k=10, S=10, stride 1");
    println!("  {passes:.0} forward passes × {:.2} GFLOP = {:.2e} FLOP", 2.0 * vgg_macs / 1e9, flop);
    for (gpu, peak) in [("A100 FP32 (19.5 TFLOP/s)", 19.5e12), ("A100 TF32/BF16 tensor (156/312 TFLOP/s), at 312", 312e12), ("H100 SXM BF16 dense (989 TFLOP/s)", 989e12)] {
        println!(
            "  {gpu}: {:.0} s at peak, {:.0} s at 40% utilisation",
            flop / peak,
            flop / (0.4 * peak)
        );
    }
    println!("  (the paper reports 1–12 h per image on a GPU with batch 20)");
}
